//! Writing server responses (RFC 9051 §7, formal syntax §9).
//!
//! imap-codec parses our commands; responses we write ourselves: they are the hot path
//! (a FETCH of 10,000 envelopes), they must stream large bodies, and several of the
//! responses Tern sends have no type in the codec (ESEARCH, RFC 4731; the IMAP4rev2
//! capability). Everything goes into one buffer per command that the connection flushes
//! when it grows large and when the command completes.

use std::fmt::Write as _;

use tern_store::{Flags, SystemFlags};

/// The bytes waiting to be sent to the client.
#[derive(Default)]
pub struct Out {
    pub buf: Vec<u8>,
}

impl Out {
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    pub fn num(&mut self, n: impl itoa_like::Decimal) -> &mut Self {
        n.write_to(&mut self.buf);
        self
    }

    pub fn crlf(&mut self) {
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An untagged response line: `* <text>\r\n`.
    pub fn untagged(&mut self, text: &str) {
        self.raw(b"* ").text(text).crlf();
    }

    /// A tagged status response (RFC 9051 §7.1): `tag OK [CODE] text`.
    pub fn tagged(&mut self, tag: &str, status: Status, text: &str) {
        self.text(tag)
            .raw(b" ")
            .text(status.as_str())
            .raw(b" ")
            .text(text)
            .crlf();
    }

    /// A string as `astring`/`string` would parse it: quoted when it can be (RFC 9051
    /// §4.3: no CR, LF, NUL, and 8-bit only when UTF-8 is allowed), else a literal.
    pub fn string(&mut self, s: &[u8], utf8: bool) -> &mut Self {
        let quotable = s.len() < 1024
            && s.iter()
                .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (utf8 || b < 0x80));
        if quotable {
            self.buf.push(b'"');
            for &b in s {
                if b == b'"' || b == b'\\' {
                    self.buf.push(b'\\');
                }
                self.buf.push(b);
            }
            self.buf.push(b'"');
        } else {
            self.literal(s);
        }
        self
    }

    /// `nstring`: NIL or a string.
    pub fn nstring(&mut self, s: Option<&[u8]>, utf8: bool) -> &mut Self {
        match s {
            Some(s) => self.string(s, utf8),
            None => self.raw(b"NIL"),
        }
    }

    /// A literal (RFC 9051 §4.3): `{n}\r\n` and the bytes.
    pub fn literal(&mut self, s: &[u8]) -> &mut Self {
        self.buf.push(b'{');
        self.num(s.len());
        self.raw(b"}\r\n").raw(s)
    }

    /// A flag list `(\Seen $Label)`, optionally with `\Recent` for rev1 sessions.
    pub fn flags(&mut self, flags: &Flags, recent: bool) -> &mut Self {
        self.buf.push(b'(');
        let mut first = true;
        let mut put = |out: &mut Out, f: &str| {
            if !first {
                out.buf.push(b' ');
            }
            first = false;
            out.text(f);
        };
        for (bit, name) in SystemFlags::ALL {
            if flags.system.contains(bit) {
                put(self, name);
            }
        }
        if recent {
            put(self, "\\Recent");
        }
        for k in &flags.keywords {
            put(self, k);
        }
        self.buf.push(b')');
        self
    }
}

/// Tagged result kinds (RFC 9051 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }
}

/// A sequence set in its shortest form (`1:5,7,9:10`) from sorted numbers, as ESEARCH
/// ALL (RFC 4731 §3.1), COPYUID and VANISHED want it.
pub fn sequence_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

/// An IMAP date-time (RFC 9051 §9 `date-time`): `"25-Nov-2026 14:02:11 +0000"`.
pub fn date_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("\"%d-%b-%Y %H:%M:%S +0000\"")
        .to_string()
}

/// Integer formatting without going through `fmt` (the FETCH loop writes millions).
pub mod itoa_like {
    pub trait Decimal {
        fn write_to(self, buf: &mut Vec<u8>);
    }

    macro_rules! decimal {
        ($($t:ty),*) => {$(
            impl Decimal for $t {
                fn write_to(self, buf: &mut Vec<u8>) {
                    let mut digits = [0u8; 20];
                    let mut n = self as u64;
                    let mut i = digits.len();
                    loop {
                        i -= 1;
                        digits[i] = b'0' + (n % 10) as u8;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    buf.extend_from_slice(&digits[i..]);
                }
            }
        )*};
    }
    decimal!(u32, u64, usize);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Out::default();
        out.string(b"a \"b\" \\c", false);
        assert_eq!(out.buf, b"\"a \\\"b\\\" \\\\c\"");
        let mut out = Out::default();
        out.string(b"two\r\nlines", false);
        assert_eq!(out.buf, b"{10}\r\ntwo\r\nlines");
        let mut out = Out::default();
        out.string("Grüße".as_bytes(), false);
        assert!(out.buf.starts_with(b"{7}\r\n"));
        let mut out = Out::default();
        out.string("Grüße".as_bytes(), true);
        assert_eq!(out.buf, "\"Grüße\"".as_bytes());
    }

    #[test]
    fn sequence_sets_are_compact() {
        assert_eq!(sequence_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(sequence_set(&[4]), "4");
        assert_eq!(sequence_set(&[]), "");
    }

    #[test]
    fn numbers_and_dates() {
        let mut out = Out::default();
        out.num(0u32)
            .raw(b" ")
            .num(4294967295u32)
            .raw(b" ")
            .num(18446744073709551615u64);
        assert_eq!(out.buf, b"0 4294967295 18446744073709551615");
        assert_eq!(date_time(0), "\"01-Jan-1970 00:00:00 +0000\"");
    }
}
