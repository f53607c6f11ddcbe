//! SMTP replies: a code (RFC 5321 §4.2), an enhanced status code (RFC 3463, announced
//! by ENHANCEDSTATUSCODES, RFC 2034) and a text for humans.

use std::fmt;

/// One reply. Multi-line replies (EHLO) are written by the session itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `class.subject.detail`, e.g. "5.1.1"; empty for the greeting and replies that
    /// RFC 2034 §3 exempts (220, 221, 354 are sent without one here too).
    pub status: &'static str,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status,
            text: text.into(),
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The reply as sent, CRLF included. A text with line breaks (an error message
    /// passed on) is folded onto one line: a reply line must not contain CR or LF.
    pub fn to_wire(&self) -> String {
        let text: String = self
            .text
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        if self.status.is_empty() {
            format!("{} {}\r\n", self.code, text)
        } else {
            format!("{} {} {}\r\n", self.code, self.status, text)
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_wire().trim_end())
    }
}

// The replies every session uses, with the codes RFC 5321 §4.2.2 and RFC 3463 give them.

pub fn ok(text: impl Into<String>) -> Reply {
    Reply::new(250, "2.0.0", text)
}

/// 500 5.5.2: a line that is not a command (RFC 5321 §4.2.4).
pub fn syntax(text: impl Into<String>) -> Reply {
    Reply::new(500, "5.5.2", text)
}

/// 501 5.5.4: a command with bad arguments.
pub fn bad_arguments(text: impl Into<String>) -> Reply {
    Reply::new(501, "5.5.4", text)
}

/// 503 5.5.1: a command out of order (RCPT before MAIL, DATA without recipients).
pub fn bad_sequence(text: impl Into<String>) -> Reply {
    Reply::new(503, "5.5.1", text)
}

/// 502 5.5.1: a command Tern does not implement.
pub fn not_implemented(text: impl Into<String>) -> Reply {
    Reply::new(502, "5.5.1", text)
}

/// 421 4.3.2: closing the connection (shutdown, too many errors, timeout).
pub fn closing(text: impl Into<String>) -> Reply {
    Reply::new(421, "4.3.2", text)
}

/// 451 4.3.0: something on Tern's side failed; the sender keeps the message and retries.
pub fn local_error(text: impl Into<String>) -> Reply {
    Reply::new(451, "4.3.0", text)
}

/// 552 5.3.4: larger than the server takes (RFC 1870 §6).
pub fn too_big(limit: u64) -> Reply {
    Reply::new(
        552,
        "5.3.4",
        format!("message larger than the {limit} bytes this server accepts"),
    )
}

/// 530 5.7.0: log in first (RFC 4954 §6).
pub fn auth_required() -> Reply {
    Reply::new(530, "5.7.0", "authentication required")
}
