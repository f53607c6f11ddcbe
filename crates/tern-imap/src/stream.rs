//! The session's byte stream: the client connection, and once the client has sent
//! COMPRESS DEFLATE (RFC 4978), raw DEFLATE (RFC 1951) in both directions.
//!
//! Each response batch is compressed and then flushed with a sync flush (RFC 4978 §4:
//! the client must be able to decompress everything it has been sent so far), so a
//! compressed session answers as promptly as a plain one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tern_net::listeners::Connection;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

pub struct Stream {
    pub conn: Connection,
    deflate: Option<Box<Deflate>>,
}

struct Deflate {
    compress: Compress,
    decompress: Decompress,
    /// Compressed bytes read from the client, not yet inflated.
    input: Vec<u8>,
    consumed: usize,
    /// Scratch space for compressed output.
    output: Vec<u8>,
}

impl Stream {
    pub fn new(conn: Connection) -> Stream {
        Stream { conn, deflate: None }
    }

    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Starts DEFLATE in both directions. `pending` is what the client already sent
    /// after its COMPRESS command: compressed data.
    pub fn start_deflate(&mut self, pending: Vec<u8>) {
        self.deflate = Some(Box::new(Deflate {
            compress: Compress::new(Compression::fast(), false),
            decompress: Decompress::new(false),
            input: pending,
            consumed: 0,
            output: Vec::with_capacity(64 * 1024),
        }));
    }

    /// Writes bytes to the client, compressed when COMPRESS is active.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(d) = self.deflate.as_mut() else {
            return self.conn.write_all(bytes).await;
        };
        d.output.clear();
        let mut rest = bytes;
        loop {
            if d.output.capacity() - d.output.len() < 1024 {
                d.output.reserve(64 * 1024);
            }
            let before_in = d.compress.total_in();
            d.compress
                .compress_vec(rest, &mut d.output, FlushCompress::Sync)
                .map_err(io::Error::other)?;
            rest = &rest[(d.compress.total_in() - before_in) as usize..];
            // Done when all input is taken and the sync flush fitted in the space left.
            if rest.is_empty() && d.output.len() < d.output.capacity() {
                break;
            }
        }
        self.conn.write_all(&d.output).await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.conn.flush().await
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.shutdown().await
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(d) = this.deflate.as_mut() else {
            return Pin::new(&mut this.conn).poll_read(cx, buf);
        };
        loop {
            if d.consumed < d.input.len() {
                let before_in = d.decompress.total_in();
                let before_out = d.decompress.total_out();
                let status = d
                    .decompress
                    .decompress(&d.input[d.consumed..], buf.initialize_unfilled(), FlushDecompress::Sync)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                d.consumed += (d.decompress.total_in() - before_in) as usize;
                let produced = (d.decompress.total_out() - before_out) as usize;
                buf.advance(produced);
                if d.consumed == d.input.len() {
                    d.input.clear();
                    d.consumed = 0;
                }
                if produced > 0 {
                    return Poll::Ready(Ok(()));
                }
                if status == Status::StreamEnd {
                    return Poll::Ready(Ok(()));
                }
                if d.consumed < d.input.len() {
                    // Input left but nothing produced: the output buffer is full.
                    continue;
                }
            }
            // Need more compressed bytes from the client.
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.conn).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        return Poll::Ready(Ok(())); // end of stream
                    }
                    d.input.extend_from_slice(read.filled());
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
