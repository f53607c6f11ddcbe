//! A small asynchronous IMAP client for benchmarks (tokio), built so that it is not the
//! bottleneck: one buffered reader per connection, every response read into one reused
//! buffer with its literals inline (read by length, never scanned), and handed to the
//! caller as bytes. It speaks exactly what the benchmarks send: one command at a time,
//! tagged `a1`, `a2`, … It is not part of Tern.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// How long one response may take before the benchmark gives up on the server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    /// The server closed the connection.
    Closed,
    /// A tagged NO or BAD (the whole line), or an unexpected greeting.
    Refused(String),
    Timeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Closed => write!(f, "the server closed the connection"),
            Error::Refused(line) => write!(f, "the server said: {}", line.trim_end()),
            Error::Timeout => write!(f, "no response within {RESPONSE_TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Closed
        } else {
            Error::Io(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    tag: u32,
    /// The response being read: its lines and literals, CRLFs included.
    response: Vec<u8>,
    out: Vec<u8>,
}

impl Client {
    /// Connects to 127.0.0.1:`port` and reads the greeting.
    pub async fn connect(port: u16) -> Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut client = Client {
            reader: BufReader::with_capacity(256 * 1024, r),
            writer: w,
            tag: 0,
            response: Vec::with_capacity(64 * 1024),
            out: Vec::with_capacity(256),
        };
        client.read_response().await?;
        if !client.response.starts_with(b"* OK") {
            return Err(Error::Refused(String::from_utf8_lossy(&client.response).into_owned()));
        }
        Ok(client)
    }

    /// Connects and logs in with LOGIN (user and password must be atoms).
    pub async fn login(port: u16, user: &str, password: &str) -> Result<Client> {
        let mut client = Client::connect(port).await?;
        client.run(&format!("LOGIN {user} {password}"), |_| {}).await?;
        Ok(client)
    }

    /// Sends one command (without tag and CRLF) and calls `each` with every untagged
    /// response (one `* …` response with its literals inline, CRLF included) until the
    /// tagged OK. A tagged NO or BAD is an error.
    pub async fn run(&mut self, command: &str, mut each: impl FnMut(&[u8])) -> Result<()> {
        self.tag += 1;
        self.out.clear();
        self.out.push(b'a');
        self.out.extend_from_slice(self.tag.to_string().as_bytes());
        let tag_len = self.out.len();
        self.out.push(b' ');
        self.out.extend_from_slice(command.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.writer.write_all(&self.out).await?;
        loop {
            self.read_response().await?;
            let r = &self.response;
            if r.len() > tag_len && r[..tag_len] == self.out[..tag_len] && r[tag_len] == b' ' {
                let status = &r[tag_len + 1..];
                if status.starts_with(b"OK") {
                    return Ok(());
                }
                return Err(Error::Refused(String::from_utf8_lossy(r).into_owned()));
            }
            each(r);
        }
    }

    /// Like [`Client::run`], keeping every untagged response.
    pub async fn collect(&mut self, command: &str) -> Result<Vec<Vec<u8>>> {
        let mut all = Vec::new();
        self.run(command, |r| all.push(r.to_vec())).await?;
        Ok(all)
    }

    /// Sends LOGOUT and waits for the server to answer; errors are ignored (the
    /// connection is done either way).
    pub async fn logout(mut self) {
        let _ = self.run("LOGOUT", |_| {}).await;
    }

    /// Reads one whole response into `self.response`.
    async fn read_response(&mut self) -> Result<()> {
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.read_response_inner()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn read_response_inner(&mut self) -> Result<()> {
        self.response.clear();
        loop {
            let start = self.response.len();
            let n = self.reader.read_until(b'\n', &mut self.response).await?;
            if n == 0 {
                return Err(Error::Closed);
            }
            match literal_length(&self.response[start..]) {
                Some(len) => {
                    // RFC 9051 §4.3: the literal's octets follow the CRLF; the
                    // response goes on after them.
                    let at = self.response.len();
                    self.response.resize(at + len, 0);
                    self.reader.read_exact(&mut self.response[at..]).await?;
                }
                None => return Ok(()),
            }
        }
    }
}

/// The length of the literal announced at the end of a line (`{123}\r\n`), if any.
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The first literal of a response (e.g. the body of `* 1 FETCH (UID 1 BODY[] {N}…`).
pub fn first_literal(response: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while let Some(nl) = response[at..].iter().position(|&b| b == b'\n') {
        let line = &response[at..at + nl + 1];
        if let Some(len) = literal_length(line) {
            let start = at + nl + 1;
            return response.get(start..start + len);
        }
        at += nl + 1;
    }
    None
}

/// The number after `name ` in a response (e.g. `UID` in a FETCH response).
pub fn number_after(response: &[u8], name: &[u8]) -> Option<u32> {
    let at = response
        .windows(name.len() + 1)
        .position(|w| w[..name.len()].eq_ignore_ascii_case(name) && w[name.len()] == b' ')?;
    let digits: Vec<u8> = response[at + name.len() + 1..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// How many numbers an untagged `* SEARCH …` response lists (0 for anything else).
pub fn search_count(response: &[u8]) -> usize {
    let Some(rest) = response.strip_prefix(b"* SEARCH") else {
        return 0;
    };
    rest.split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty() && w.iter().all(u8::is_ascii_digit))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_numbers() {
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_length(b"a1 APPEND x {5+}\r\n"), Some(5));
        assert_eq!(literal_length(b"* 1 FETCH (FLAGS ())\r\n"), None);
        assert_eq!(literal_length(b"* OK {x}\r\n"), None);
        let r = b"* 3 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n";
        assert_eq!(first_literal(r), Some(&b"hello"[..]));
        assert_eq!(number_after(r, b"UID"), Some(7));
        assert_eq!(search_count(b"* SEARCH 1 2 3\r\n"), 3);
        assert_eq!(search_count(b"* SEARCH\r\n"), 0);
    }
}
