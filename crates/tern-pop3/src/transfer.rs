//! Sending a message as a POP3 multi-line response (RETR, TOP).
//!
//! RFC 1939 §3: each line of a multi-line response ends in CRLF; a line that begins with
//! the termination octet "." gets another "." in front ("byte-stuffing"); the response
//! ends with ".CRLF" on a line of its own. Tern keeps messages byte for byte as they
//! arrived, so a message may hold bare LF line ends (from an mbox or Maildir import) or
//! lack a final line end. On the wire each bare LF becomes CRLF, and a missing final CRLF
//! is added, so the terminator is always recognised. Bare CRs are sent as they are: they
//! do not end a line, and a "." after one cannot be mistaken for the terminator.
//!
//! [`Transfer`] does this a chunk at a time, so a message of any size is streamed from
//! its file in bounded memory.

use tokio::io::AsyncReadExt;

/// How much of a message file is read at a time.
pub const CHUNK: usize = 64 * 1024;

/// Rewrites a message's bytes for the wire, chunk by chunk.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// `Some(k)` for TOP: stop after the header, the blank line and k body lines
    /// (RFC 1939 §7).
    body_lines: Option<u64>,
    /// The next byte begins a line (byte-stuffing applies to it).
    at_line_start: bool,
    /// The last byte passed on was a CR (a CRLF may be split across chunks).
    after_cr: bool,
    /// Bytes of the current line so far, not counting a CR just before its LF.
    line_len: usize,
    in_header: bool,
    body_lines_sent: u64,
    done: bool,
}

impl Transfer {
    /// The whole message (RETR).
    pub fn whole() -> Self {
        Self::new(None)
    }

    /// The header, the blank line and the first `lines` lines of the body (TOP).
    pub fn top(lines: u64) -> Self {
        Self::new(Some(lines))
    }

    fn new(body_lines: Option<u64>) -> Self {
        Transfer {
            body_lines,
            at_line_start: true,
            after_cr: false,
            line_len: 0,
            in_header: true,
            body_lines_sent: 0,
            done: false,
        }
    }

    /// Whether this sends only the top of the message (TOP).
    pub fn is_top(&self) -> bool {
        self.body_lines.is_some()
    }

    /// Whether TOP has sent all it should; further input is ignored.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the wire form of the next chunk of the message to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() && !self.done {
            if self.at_line_start {
                // RFC 1939 §3: byte-stuff a line that begins with ".".
                if input[0] == b'.' {
                    out.push(b'.');
                }
                self.at_line_start = false;
            }
            let Some(lf) = input.iter().position(|&b| b == b'\n') else {
                out.extend_from_slice(input);
                self.line_len += input.len();
                self.after_cr = input.last() == Some(&b'\r');
                return;
            };
            let content = &input[..lf];
            out.extend_from_slice(content);
            let had_cr = match content.last() {
                Some(&last) => last == b'\r',
                None => self.after_cr,
            };
            if !had_cr {
                // A bare LF: POP3 lines end in CRLF (RFC 1939 §3).
                out.push(b'\r');
            }
            out.push(b'\n');
            let line_len = (self.line_len + content.len()).saturating_sub(usize::from(had_cr));
            self.end_of_line(line_len == 0);
            input = &input[lf + 1..];
        }
    }

    /// Completes the line in progress if the message did not end with one, and appends
    /// the terminating ".CRLF".
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
        out.extend_from_slice(b".\r\n");
        self.done = true;
    }

    fn end_of_line(&mut self, empty: bool) {
        self.at_line_start = true;
        self.after_cr = false;
        self.line_len = 0;
        let Some(wanted) = self.body_lines else { return };
        if self.in_header {
            // The first empty line separates header and body (RFC 5322 §2.1).
            if empty {
                self.in_header = false;
                self.done = wanted == 0;
            }
        } else {
            self.body_lines_sent += 1;
            self.done = self.body_lines_sent >= wanted;
        }
    }
}

/// Where a message's bytes come from.
#[derive(Debug)]
pub enum Source {
    /// Small messages, read whole from the store.
    Bytes(Vec<u8>),
    /// Large messages, streamed from their blob file.
    File(tokio::fs::File),
}

impl Source {
    /// Reads the next chunk into `buf` (replacing its contents); an empty `buf` means
    /// the end. `offset` tracks progress through an in-memory message.
    pub async fn next_chunk(&mut self, offset: &mut usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        match self {
            Source::Bytes(bytes) => {
                let start = (*offset).min(bytes.len());
                let end = start.saturating_add(CHUNK).min(bytes.len());
                buf.extend_from_slice(&bytes[start..end]);
                *offset = end;
            }
            Source::File(file) => {
                buf.resize(CHUNK, 0);
                let n = file.read(buf).await?;
                buf.truncate(n);
                *offset += n;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form of a message sent in one piece.
    fn wire(transfer: Transfer, message: &[u8]) -> Vec<u8> {
        wire_in_chunks(transfer, message, message.len().max(1))
    }

    fn wire_in_chunks(mut transfer: Transfer, message: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in message.chunks(chunk) {
            transfer.push(piece, &mut out);
        }
        transfer.finish(&mut out);
        out
    }

    fn s(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn crlf_message_is_sent_as_is_with_the_terminator() {
        let m = b"Subject: hi\r\n\r\nbody\r\n";
        assert_eq!(s(&wire(Transfer::whole(), m)), "Subject: hi\r\n\r\nbody\r\n.\r\n");
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        let m = b"Subject: dots\r\n\r\n.\r\n..two\r\n.x\r\nmid.dle\r\n.";
        assert_eq!(
            s(&wire(Transfer::whole(), m)),
            "Subject: dots\r\n\r\n..\r\n...two\r\n..x\r\nmid.dle\r\n..\r\n.\r\n"
        );
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        let m = b"Subject: lf\n\nline one\n.dot\nline three\n";
        assert_eq!(
            s(&wire(Transfer::whole(), m)),
            "Subject: lf\r\n\r\nline one\r\n..dot\r\nline three\r\n.\r\n"
        );
    }

    #[test]
    fn a_message_without_a_final_newline_gets_one() {
        assert_eq!(
            s(&wire(Transfer::whole(), b"Subject: x\r\n\r\nno end")),
            "Subject: x\r\n\r\nno end\r\n.\r\n"
        );
        // A trailing bare CR is not a line end: CRLF still follows before the terminator.
        assert_eq!(s(&wire(Transfer::whole(), b"a\r\n\r\nb\r")), "a\r\n\r\nb\r\r\n.\r\n");
    }

    #[test]
    fn bare_cr_is_left_alone() {
        assert_eq!(
            s(&wire(Transfer::whole(), b"a\rb\r\n\r.c\r\n")),
            "a\rb\r\n\r.c\r\n.\r\n"
        );
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let m = b"Subject: t\r\nX: y\n\r\n.a\r\n\n..\rb\nlast.\r\n.\n.end";
        let expected = wire(Transfer::whole(), m);
        for chunk in 1..m.len() {
            assert_eq!(
                s(&wire_in_chunks(Transfer::whole(), m, chunk)),
                s(&expected),
                "chunk {chunk}"
            );
        }
        for lines in 0..6 {
            let expected = wire(Transfer::top(lines), m);
            for chunk in 1..m.len() {
                assert_eq!(
                    s(&wire_in_chunks(Transfer::top(lines), m, chunk)),
                    s(&expected),
                    "TOP {lines}, chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn top_sends_header_blank_line_and_k_body_lines() {
        let m = b"A: 1\r\nB: 2\r\n\r\none\r\n.two\r\nthree\r\n";
        assert_eq!(s(&wire(Transfer::top(0), m)), "A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(s(&wire(Transfer::top(1), m)), "A: 1\r\nB: 2\r\n\r\none\r\n.\r\n");
        assert_eq!(
            s(&wire(Transfer::top(2), m)),
            "A: 1\r\nB: 2\r\n\r\none\r\n..two\r\n.\r\n"
        );
        assert_eq!(s(&wire(Transfer::top(3), m)), s(&wire(Transfer::whole(), m)));
        assert_eq!(s(&wire(Transfer::top(u64::MAX), m)), s(&wire(Transfer::whole(), m)));
    }

    #[test]
    fn top_with_bare_lf_and_without_a_body() {
        let m = b"A: 1\nB: 2\n\none\ntwo\n";
        assert_eq!(s(&wire(Transfer::top(1), m)), "A: 1\r\nB: 2\r\n\r\none\r\n.\r\n");
        // No blank line at all: the whole message is header.
        assert_eq!(s(&wire(Transfer::top(0), b"A: 1\r\nB: 2")), "A: 1\r\nB: 2\r\n.\r\n");
    }

    #[test]
    fn a_lone_cr_line_is_not_the_header_end() {
        // "\r\r\n" is a line holding one CR, not an empty line.
        let m = b"A: 1\r\r\nB: 2\r\n\r\nbody\r\n";
        assert_eq!(s(&wire(Transfer::top(0), m)), "A: 1\r\r\nB: 2\r\n\r\n.\r\n");
    }

    #[tokio::test]
    async fn sources_yield_every_byte_in_chunks() {
        let big: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, &big).expect("write");
        let file = tokio::fs::File::open(&path).await.expect("open");
        for mut source in [Source::Bytes(big.clone()), Source::File(file)] {
            let (mut offset, mut buf, mut all) = (0, Vec::new(), Vec::new());
            loop {
                source.next_chunk(&mut offset, &mut buf).await.expect("read");
                if buf.is_empty() {
                    break;
                }
                assert!(buf.len() <= CHUNK);
                all.extend_from_slice(&buf);
            }
            assert_eq!(all, big);
        }
    }
}
