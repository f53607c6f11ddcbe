//! [`Replayed`]: a stream that first gives back bytes already read from it.
//!
//! A client that negotiates POP3's STLS (RFC 2595 §4) or reads a greeting itself, then
//! hands the connection to a library that expects to read the greeting too (async-pop),
//! wraps the stream so the library sees it from the first byte. Used by the migration's
//! POP3 source and by `tern doctor`.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose reads return `prefix` first, then what `inner` gives.
#[derive(Debug)]
pub struct Replayed<S> {
    prefix: Vec<u8>,
    inner: S,
}

impl<S> Replayed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Replayed<S> {
        Replayed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_prefix_comes_first_and_writes_go_through() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = super::Replayed::new(b"+OK hello\r\n".to_vec(), b);
        a.write_all(b"rest").await.unwrap();
        drop(a);
        let mut all = String::new();
        r.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "+OK hello\r\nrest");
    }
}
