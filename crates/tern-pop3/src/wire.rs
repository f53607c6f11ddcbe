//! The connection as the session sees it: command lines in, replies out.
//!
//! Reading keeps at most one line (plus one read's worth) in memory, however long the
//! line a client sends: a line over the limit is thrown away as it arrives and reported
//! once its end comes. Replies are gathered and written together when the client has
//! no further command waiting (RFC 2449 §6.6 PIPELINING), and every write has a
//! deadline, so a client that stops reading is dropped instead of holding its task
//! forever.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long one write may wait for the client to take the data.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// One read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, with its line end.
    Complete(Vec<u8>),
    /// A line longer than the limit, now discarded up to and including its LF.
    TooLong,
    /// The client closed the connection (a partial last line is dropped).
    Closed,
}

/// The connection plus what has been read from it but not yet used, and replies not
/// yet sent.
#[derive(Debug)]
pub struct Wire<S> {
    stream: S,
    /// Bytes received and not yet returned as lines.
    input: Vec<u8>,
    /// Discarding the rest of an over-long line.
    discarding: bool,
    /// Replies waiting to be written.
    output: Vec<u8>,
    max_line: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S, max_line: usize) -> Self {
        Wire {
            stream,
            input: Vec::new(),
            discarding: false,
            output: Vec::new(),
            // A limit below a few octets would refuse every command; keep it usable.
            max_line: max_line.max(16),
        }
    }

    /// Gives back the connection, dropping anything read but not yet parsed. STLS needs
    /// exactly this: plaintext a client (or an attacker in the path) pipelined after
    /// STLS must not be taken as if it came over TLS (RFC 2595 §4 STLS; the
    /// CVE-2011-0411 command-injection flaw).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Whether a complete line is already waiting (the client pipelined commands).
    pub fn has_line(&self) -> bool {
        self.input.contains(&b'\n')
    }

    /// Reads the next line. Cancel-safe: bytes already read stay buffered.
    pub async fn read_line(&mut self) -> io::Result<Line> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(lf) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=lf).collect();
                if self.discarding || line.len() > self.max_line {
                    self.discarding = false;
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(line));
            }
            if self.input.len() > self.max_line {
                // No end in sight: forget what we have and keep only the fact.
                self.input.clear();
                self.discarding = true;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(Line::Closed);
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    /// Queues a reply line; `line` is given without its CRLF.
    pub fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// The queue itself, for a response body built in place.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.output.len()
    }

    /// Writes everything queued, within [`WRITE_TIMEOUT`].
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading replies",
                ));
            }
        }
        self.output.clear();
        Ok(())
    }

    /// Flushes, then closes the sending side (best effort: the session is over).
    pub async fn close(&mut self) {
        if self.flush().await.is_ok() {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, self.stream.shutdown()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max_line: usize) -> Vec<Line> {
        let (mut client, server) = tokio::io::duplex(64);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            client.write_all(&input).await.expect("write");
            client.shutdown().await.expect("shutdown");
            // Keep the client half open until the reader has seen the end.
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        });
        let mut wire = Wire::new(server, max_line);
        let mut out = Vec::new();
        loop {
            let line = wire.read_line().await.expect("read");
            assert!(wire.input.len() <= max_line.max(16) + 4096, "bounded buffer");
            let closed = line == Line::Closed;
            out.push(line);
            if closed {
                break;
            }
        }
        drop(wire);
        writer.await.expect("writer");
        out
    }

    fn complete(s: &str) -> Line {
        Line::Complete(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_pipelined_ones() {
        let lines = lines_of(b"USER a\r\nPASS b\r\nSTAT\nQUI", 100).await;
        assert_eq!(
            lines,
            [
                complete("USER a\r\n"),
                complete("PASS b\r\n"),
                complete("STAT\n"),
                Line::Closed
            ]
        );
    }

    #[tokio::test]
    async fn an_over_long_line_is_reported_once_and_the_next_line_is_read() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let lines = lines_of(&input, 512).await;
        assert_eq!(lines, [Line::TooLong, complete("NOOP\r\n"), Line::Closed]);

        // Just over the limit with its end in the same read.
        let mut input = vec![b'y'; 40];
        input.extend_from_slice(b"\r\nSTAT\r\n");
        let lines = lines_of(&input, 20).await;
        assert_eq!(lines, [Line::TooLong, complete("STAT\r\n"), Line::Closed]);

        // Exactly the limit is fine.
        let lines = lines_of(b"0123456789ABCDEFGH\r\n", 20).await;
        assert_eq!(lines, [complete("0123456789ABCDEFGH\r\n"), Line::Closed]);
    }
}
