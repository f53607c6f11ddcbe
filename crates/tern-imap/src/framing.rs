//! Splitting the client's byte stream into whole commands: lines, and the literals
//! they announce (RFC 9051 §4.3, §7.5 command continuation; RFC 7888 LITERAL+ and
//! LITERAL-), with every limit enforced before the bytes are buffered.
//!
//! imap-codec then parses a whole command in one go. Framing is ours rather than
//! imap-codec's `Fragmentizer` because that one has a single size limit for a whole
//! message: Tern needs a short limit for command lines (so a client cannot make a
//! session buffer megabytes of garbage) and a long one for APPEND literals, and must
//! refuse a too-large synchronising literal *before* the client sends it.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Limits on what one command may be.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Longest command line, literals not counted.
    pub max_line: usize,
    /// Largest literal (and so the largest message APPEND takes, RFC 7889 APPENDLIMIT).
    pub max_literal: u64,
    /// Largest whole command, lines and literals together (MULTIAPPEND aside, one
    /// message plus its line).
    pub max_command: u64,
}

/// What the framer produced.
#[derive(Debug)]
pub enum Frame {
    /// A complete command: its lines and literals, byte for byte.
    Command(Vec<u8>),
    /// A line announced a synchronising literal: the caller answers with a
    /// continuation request (`+ …`) and calls [`Framer::accept_literal`], or refuses
    /// with [`Framer::refuse_literal`] (then the client does not send it).
    LiteralRequest { length: u64 },
    /// A line longer than the limit, discarded up to its end; `tag` is its first word
    /// if one could be read, for the BAD reply.
    LineTooLong { tag: Option<String> },
    /// A literal over the limit that the client announced as non-synchronising
    /// (`{n+}`): it is already on its way and can't be refused, so the connection must
    /// be closed (RFC 7888 §4: the server "MUST reject" and may close).
    NonSyncLiteralTooLarge,
    /// The client closed the connection.
    Eof,
}

enum State {
    /// Reading a line; `discarding` once it has grown past the limit.
    Line {
        discarding: bool,
    },
    /// Waiting for the caller to accept or refuse a synchronising literal.
    AwaitingDecision {
        length: u64,
    },
    Literal {
        remaining: u64,
    },
}

/// Reads commands off a stream.
pub struct Framer {
    limits: FrameLimits,
    /// Bytes read from the socket and not yet framed.
    pending: Vec<u8>,
    /// The command assembled so far.
    command: Vec<u8>,
    /// Where the current line starts in `command`.
    line_start: usize,
    state: State,
    chunk: Box<[u8]>,
}

impl Framer {
    pub fn new(limits: FrameLimits) -> Framer {
        Framer {
            limits,
            pending: Vec::new(),
            command: Vec::new(),
            line_start: 0,
            state: State::Line { discarding: false },
            chunk: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Throws away everything read but not yet framed (STARTTLS: nothing the client
    /// pipelined in plaintext may be taken as if it came over TLS, RFC 9051 §6.2.1).
    pub fn discard_buffered(&mut self) {
        self.pending.clear();
        self.command.clear();
        self.line_start = 0;
        self.state = State::Line { discarding: false };
    }

    /// Hands over what was read but not framed (COMPRESS: it is compressed data, RFC
    /// 4978 §3) and starts afresh.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let pending = std::mem::take(&mut self.pending);
        self.discard_buffered();
        pending
    }

    /// Lets the announced literal come.
    pub fn accept_literal(&mut self) {
        if let State::AwaitingDecision { length } = self.state {
            self.state = State::Literal { remaining: length };
        }
    }

    /// Refuses the announced literal; the command is dropped and the next line starts a
    /// new command (the client must not send the literal without a continuation).
    pub fn refuse_literal(&mut self) -> Option<String> {
        let tag = tag_of(&self.command);
        self.command.clear();
        self.line_start = 0;
        self.state = State::Line { discarding: false };
        tag
    }

    /// Reads the next line only (AUTHENTICATE responses, IDLE's DONE), without literal
    /// handling: the line without CRLF, or `None` at end of stream. Over-long lines
    /// come back truncated to the limit, the rest discarded.
    pub async fn next_line(&mut self, stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let rest = self.pending.split_off(pos + 1);
                let mut got = std::mem::replace(&mut self.pending, rest);
                got.truncate(pos);
                if got.last() == Some(&b'\r') {
                    got.pop();
                }
                let room = self.limits.max_line.saturating_sub(line.len());
                line.extend_from_slice(&got[..got.len().min(room)]);
                return Ok(Some(line));
            }
            let room = self.limits.max_line.saturating_sub(line.len());
            line.extend_from_slice(&self.pending[..self.pending.len().min(room)]);
            self.pending.clear();
            let n = stream.read(&mut self.chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.pending.extend_from_slice(&self.chunk[..n]);
        }
    }

    /// Reads until the next frame.
    pub async fn next(&mut self, stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Frame> {
        loop {
            if let Some(frame) = self.step() {
                return Ok(frame);
            }
            let n = stream.read(&mut self.chunk).await?;
            if n == 0 {
                return Ok(Frame::Eof);
            }
            self.pending.extend_from_slice(&self.chunk[..n]);
        }
    }

    /// Frames what is buffered; `None` when more bytes are needed.
    fn step(&mut self) -> Option<Frame> {
        loop {
            match self.state {
                State::AwaitingDecision { length } => return Some(Frame::LiteralRequest { length }),
                State::Literal { remaining } => {
                    if self.pending.is_empty() {
                        return None;
                    }
                    let take = (remaining as usize).min(self.pending.len());
                    self.command.extend_from_slice(&self.pending[..take]);
                    self.pending.drain(..take);
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.state = State::Literal { remaining };
                        return None;
                    }
                    self.line_start = self.command.len();
                    self.state = State::Line { discarding: false };
                }
                State::Line { discarding } => {
                    let newline = self.pending.iter().position(|&b| b == b'\n');
                    let line_len = self.command.len() - self.line_start;
                    let Some(pos) = newline else {
                        if !discarding {
                            if line_len + self.pending.len() > self.limits.max_line {
                                // Keep the start (for the tag), drop the rest as it comes.
                                let room = self.limits.max_line.saturating_sub(line_len);
                                self.command
                                    .extend_from_slice(&self.pending[..room.min(self.pending.len())]);
                                self.state = State::Line { discarding: true };
                            } else {
                                self.command.extend_from_slice(&self.pending);
                            }
                        }
                        self.pending.clear();
                        return None;
                    };
                    if discarding || line_len + pos + 1 > self.limits.max_line {
                        if !discarding {
                            // Keep the start of the line for its tag.
                            let room = self.limits.max_line.saturating_sub(line_len).min(pos);
                            self.command.extend_from_slice(&self.pending[..room]);
                        }
                        self.pending.drain(..=pos);
                        let tag = tag_of(&self.command);
                        self.command.clear();
                        self.line_start = 0;
                        self.state = State::Line { discarding: false };
                        return Some(Frame::LineTooLong { tag });
                    }
                    self.command.extend_from_slice(&self.pending[..=pos]);
                    self.pending.drain(..=pos);
                    match literal_announcement(&self.command[self.line_start..]) {
                        None => {
                            let command = std::mem::take(&mut self.command);
                            self.line_start = 0;
                            return Some(Frame::Command(command));
                        }
                        Some((length, synchronising)) => {
                            let total = self.command.len() as u64 + length;
                            let too_large = length > self.limits.max_literal || total > self.limits.max_command;
                            match (synchronising, too_large) {
                                (true, _) => self.state = State::AwaitingDecision { length },
                                // RFC 7888 §4 (LITERAL-): a non-synchronising literal
                                // over 4096 octets is an error; with LITERAL+ any size
                                // within our limits is fine.
                                (false, false) => self.state = State::Literal { remaining: length },
                                (false, true) => {
                                    self.discard_buffered();
                                    return Some(Frame::NonSyncLiteralTooLarge);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `{123}\r\n` or `{123+}\r\n` at the end of a line (RFC 9051 §9 `literal`, RFC 7888
/// `literal` with "+"; `~{n}` of literal8 ends the same way): the length and whether the
/// client waits for a continuation.
fn literal_announcement(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let synchronising = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let length = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((length, synchronising))
}

/// The tag of a command (RFC 9051 §9 `tag`: astring characters except "+"), if it has
/// one, for replies to commands that could not be parsed.
pub fn tag_of(command: &[u8]) -> Option<String> {
    let end = command.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    let tag = &command[..end];
    let valid = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .iter()
            .all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+]".contains(&b));
    valid.then(|| String::from_utf8_lossy(tag).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer() -> Framer {
        Framer::new(FrameLimits {
            max_line: 64,
            max_literal: 100,
            max_command: 200,
        })
    }

    async fn frames(input: &[u8], accept: bool) -> Vec<Frame> {
        let mut f = framer();
        let mut stream = input;
        let mut out = Vec::new();
        loop {
            let frame = f.next(&mut stream).await.expect("read");
            match frame {
                Frame::Eof => return out,
                Frame::LiteralRequest { .. } if accept => {
                    f.accept_literal();
                    out.push(frame);
                }
                Frame::LiteralRequest { .. } => {
                    f.refuse_literal();
                    out.push(frame);
                }
                _ => out.push(frame),
            }
        }
    }

    #[tokio::test]
    async fn lines_and_literals_make_commands() {
        let got = frames(b"a NOOP\r\nb LOGIN {5}\r\nalice {3+}\r\npw!\r\n", true).await;
        assert!(matches!(&got[0], Frame::Command(c) if c == b"a NOOP\r\n"));
        assert!(matches!(got[1], Frame::LiteralRequest { length: 5 }));
        assert!(matches!(&got[2], Frame::Command(c) if c == b"b LOGIN {5}\r\nalice {3+}\r\npw!\r\n"));
        assert_eq!(got.len(), 3);
    }

    #[tokio::test]
    async fn a_long_line_is_discarded_and_the_next_command_still_works() {
        let mut input = b"x1 NOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 10_000));
        input.extend_from_slice(b"\r\nx2 NOOP\r\n");
        let got = frames(&input, true).await;
        assert!(matches!(&got[0], Frame::LineTooLong { tag: Some(t) } if t == "x1"));
        assert!(matches!(&got[1], Frame::Command(c) if c == b"x2 NOOP\r\n"));
    }

    #[tokio::test]
    async fn a_refused_literal_is_not_read() {
        let got = frames(b"a APPEND INBOX {1000}\r\nb NOOP\r\n", false).await;
        assert!(matches!(got[0], Frame::LiteralRequest { length: 1000 }));
        assert!(matches!(&got[1], Frame::Command(c) if c == b"b NOOP\r\n"));
    }

    #[tokio::test]
    async fn an_oversized_non_synchronising_literal_ends_the_connection() {
        let got = frames(b"a APPEND INBOX {1000+}\r\nxxxx", true).await;
        assert!(matches!(got[0], Frame::NonSyncLiteralTooLarge));
    }

    #[test]
    fn announcements_and_tags() {
        assert_eq!(literal_announcement(b"a APPEND x {12}\r\n"), Some((12, true)));
        assert_eq!(literal_announcement(b"a APPEND x ~{12+}\r\n"), Some((12, false)));
        assert_eq!(literal_announcement(b"a NOOP {x}\r\n"), None);
        assert_eq!(literal_announcement(b"a NOOP {}\r\n"), None);
        assert_eq!(tag_of(b"A001 NOOP\r\n").as_deref(), Some("A001"));
        assert_eq!(tag_of(b"+ x\r\n"), None);
        assert_eq!(tag_of(b"\r\n"), None);
    }
}
