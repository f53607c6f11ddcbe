//! POP3 commands: one client line in, one [`Command`] out. Pure, so every odd input a
//! client can send is tested here without a socket.
//!
//! RFC 1939 §3: a command is a case-insensitive keyword, possibly followed by arguments
//! separated by single spaces, ending in CRLF. We also accept a bare LF and runs of
//! spaces, since being strict about them helps no one.

use std::fmt;

/// A message number: 1-based over the maildrop as it was at login (RFC 1939 §5).
pub type MessageNumber = u32;

/// What a client asked for.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 2449 §5.
    Capa,
    /// RFC 1939 §7.
    User(String),
    /// RFC 1939 §7. The password is everything after `PASS `, spaces included.
    Pass(String),
    /// RFC 5034 §4. `mechanism` is `None` for a bare `AUTH`, which lists mechanisms
    /// (the RFC 1734 draft behaviour some clients still probe with).
    Auth {
        mechanism: Option<String>,
        initial_response: Option<String>,
    },
    /// RFC 2595 §4.
    Stls,
    /// RFC 1939 §5.
    Stat,
    /// RFC 1939 §5.
    List(Option<MessageNumber>),
    /// RFC 1939 §5.
    Retr(MessageNumber),
    /// RFC 1939 §5.
    Dele(MessageNumber),
    /// RFC 1939 §5.
    Noop,
    /// RFC 1939 §5.
    Rset,
    /// RFC 1939 §7.
    Top { message: MessageNumber, lines: u64 },
    /// RFC 1939 §7.
    Uidl(Option<MessageNumber>),
    /// RFC 1939 §4 (AUTHORIZATION), §6 (UPDATE).
    Quit,
}

impl Command {
    /// The keyword, for logs (never the arguments: they may hold a password).
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } => "AUTH",
            Command::Stls => "STLS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Quit => "QUIT",
        }
    }
}

/// Debug without secrets: a command may end up in a log or a test failure message.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::Auth {
                mechanism,
                initial_response,
            } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial_response", &initial_response.as_ref().map(|_| "<redacted>"))
                .finish(),
            Command::User(user) => f.debug_tuple("User").field(user).finish(),
            Command::List(n) => f.debug_tuple("List").field(n).finish(),
            Command::Retr(n) => f.debug_tuple("Retr").field(n).finish(),
            Command::Dele(n) => f.debug_tuple("Dele").field(n).finish(),
            Command::Top { message, lines } => f
                .debug_struct("Top")
                .field("message", message)
                .field("lines", lines)
                .finish(),
            Command::Uidl(n) => f.debug_tuple("Uidl").field(n).finish(),
            other => f.write_str(other.keyword()),
        }
    }
}

/// Why a line is not a command. The `Display` text goes to the client after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command")]
    Unknown,
    #[error("{0}")]
    BadArguments(&'static str),
}

/// Parses one line (with or without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = strip_line_end(line);
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    // Keywords are ASCII; anything else is simply not one we know (no UTF-8 needed).
    let keyword = keyword.to_ascii_uppercase();
    let args = Args::new(rest);
    match keyword.as_slice() {
        b"CAPA" => args.none(Command::Capa),
        b"USER" => {
            // RFC 1939 §7: exactly one argument, the mailbox name.
            let [user] = args.exactly::<1>("USER needs a user name")?;
            Ok(Command::User(utf8(user, "the user name is not valid UTF-8")?))
        }
        b"PASS" => {
            // RFC 1939 §7: "a POP3 server may treat spaces in the argument as part of
            // the password" — so the password is the rest of the line, unsplit.
            if rest.is_empty() {
                return Err(CommandError::BadArguments("PASS needs a password"));
            }
            Ok(Command::Pass(utf8(rest, "the password is not valid UTF-8")?))
        }
        b"AUTH" => {
            let words = args.words();
            if words.len() > 2 {
                return Err(CommandError::BadArguments(
                    "AUTH takes a mechanism and an initial response",
                ));
            }
            let mut words = words.into_iter();
            let mechanism = words
                .next()
                .map(|m| utf8(m, "the mechanism name is not valid UTF-8"))
                .transpose()?
                .map(|m| m.to_ascii_uppercase());
            let initial_response = words
                .next()
                .map(|r| utf8(r, "the initial response is not base64"))
                .transpose()?;
            Ok(Command::Auth {
                mechanism,
                initial_response,
            })
        }
        b"STLS" => args.none(Command::Stls),
        b"STAT" => args.none(Command::Stat),
        b"LIST" => Ok(Command::List(args.optional_message()?)),
        b"RETR" => Ok(Command::Retr(args.one_message("RETR needs a message number")?)),
        b"DELE" => Ok(Command::Dele(args.one_message("DELE needs a message number")?)),
        b"NOOP" => args.none(Command::Noop),
        b"RSET" => args.none(Command::Rset),
        b"TOP" => {
            let [message, lines] = args.exactly::<2>("TOP needs a message number and a line count")?;
            let message = message_number(message)?;
            // RFC 1939 §7: "n" must be non-negative; a huge count just means "all".
            let lines = decimal(lines).ok_or(CommandError::BadArguments(
                "the line count must be a non-negative number",
            ))?;
            Ok(Command::Top { message, lines })
        }
        b"UIDL" => Ok(Command::Uidl(args.optional_message()?)),
        b"QUIT" => args.none(Command::Quit),
        _ => Err(CommandError::Unknown),
    }
}

/// The line without its CRLF (or bare LF, or a stray trailing CR).
pub fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The space-separated arguments after the keyword.
struct Args<'a>(Vec<&'a [u8]>);

impl<'a> Args<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Args(rest.split(|&b| b == b' ').filter(|w| !w.is_empty()).collect())
    }

    fn words(self) -> Vec<&'a [u8]> {
        self.0
    }

    fn none(self, command: Command) -> Result<Command, CommandError> {
        if self.0.is_empty() {
            Ok(command)
        } else {
            Err(CommandError::BadArguments("this command takes no arguments"))
        }
    }

    fn exactly<const N: usize>(self, message: &'static str) -> Result<[&'a [u8]; N], CommandError> {
        self.0.try_into().map_err(|_| CommandError::BadArguments(message))
    }

    fn one_message(self, message: &'static str) -> Result<MessageNumber, CommandError> {
        let [n] = self.exactly::<1>(message)?;
        message_number(n)
    }

    fn optional_message(self) -> Result<Option<MessageNumber>, CommandError> {
        match self.0.as_slice() {
            [] => Ok(None),
            [n] => message_number(n).map(Some),
            _ => Err(CommandError::BadArguments("give at most one message number")),
        }
    }
}

/// A message number: decimal digits only, at least 1 (RFC 1939 §5: message-numbers
/// start at 1).
fn message_number(word: &[u8]) -> Result<MessageNumber, CommandError> {
    decimal(word)
        .and_then(|n| MessageNumber::try_from(n).ok())
        .filter(|&n| n >= 1)
        .ok_or(CommandError::BadArguments("invalid message number"))
}

/// Plain decimal digits (no sign, no spaces), saturating at u64::MAX: "TOP 1
/// 99999999999999999999999" asks for every line and gets them.
fn decimal(word: &[u8]) -> Option<u64> {
    if word.is_empty() || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        word.iter()
            .fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))),
    )
}

fn utf8(bytes: &[u8], message: &'static str) -> Result<String, CommandError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| CommandError::BadArguments(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err(line: &[u8]) -> CommandError {
        match parse(line) {
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn keywords_are_case_insensitive_and_crlf_is_optional() {
        assert_eq!(ok("stat\r\n"), Command::Stat);
        assert_eq!(ok("StAt"), Command::Stat);
        assert_eq!(ok("capa\n"), Command::Capa);
        assert_eq!(ok("QUIT\r\n"), Command::Quit);
        assert_eq!(ok("noop"), Command::Noop);
        assert_eq!(ok("rset"), Command::Rset);
        assert_eq!(ok("stls"), Command::Stls);
    }

    #[test]
    fn message_numbers() {
        assert_eq!(ok("LIST"), Command::List(None));
        assert_eq!(ok("LIST 3"), Command::List(Some(3)));
        assert_eq!(ok("list  3 "), Command::List(Some(3)));
        assert_eq!(ok("RETR 1"), Command::Retr(1));
        assert_eq!(ok("DELE 42"), Command::Dele(42));
        assert_eq!(ok("UIDL"), Command::Uidl(None));
        assert_eq!(ok("UIDL 7"), Command::Uidl(Some(7)));
        assert_eq!(ok("TOP 1 0"), Command::Top { message: 1, lines: 0 });
        assert_eq!(
            ok("TOP 2 99999999999999999999999"),
            Command::Top {
                message: 2,
                lines: u64::MAX
            }
        );
        for bad in [
            "RETR",
            "RETR 0",
            "RETR -1",
            "RETR +1",
            "RETR x",
            "RETR 1 2",
            "RETR 99999999999",
        ] {
            assert!(matches!(err(bad.as_bytes()), CommandError::BadArguments(_)), "{bad}");
        }
        for bad in [
            "TOP 1", "TOP 1 -1", "TOP 0 1", "TOP", "LIST 1 2", "UIDL a", "STAT 1", "QUIT now",
        ] {
            assert!(matches!(err(bad.as_bytes()), CommandError::BadArguments(_)), "{bad}");
        }
    }

    #[test]
    fn user_and_pass() {
        assert_eq!(
            ok("USER alice@example.test"),
            Command::User("alice@example.test".into())
        );
        assert!(matches!(err(b"USER"), CommandError::BadArguments(_)));
        assert!(matches!(err(b"USER a b"), CommandError::BadArguments(_)));
        // The password keeps its spaces, leading ones too.
        assert_eq!(ok("PASS correct horse  "), Command::Pass("correct horse  ".into()));
        assert_eq!(ok("PASS  x\r\n"), Command::Pass(" x".into()));
        assert!(matches!(err(b"PASS"), CommandError::BadArguments(_)));
        assert_eq!(ok("PASS s\u{e9}same"), Command::Pass("s\u{e9}same".into()));
    }

    #[test]
    fn auth() {
        assert_eq!(
            ok("AUTH"),
            Command::Auth {
                mechanism: None,
                initial_response: None
            }
        );
        assert_eq!(
            ok("auth plain"),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: None
            }
        );
        assert_eq!(
            ok("AUTH PLAIN AGFsaWNlAHB3"),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some("AGFsaWNlAHB3".into())
            }
        );
        assert!(matches!(err(b"AUTH PLAIN a b"), CommandError::BadArguments(_)));
    }

    #[test]
    fn garbage_is_unknown_and_never_panics() {
        assert_eq!(err(b""), CommandError::Unknown);
        assert_eq!(err(b"\r\n"), CommandError::Unknown);
        assert_eq!(err(b"APOP alice 0123"), CommandError::Unknown);
        assert_eq!(err(b"GET / HTTP/1.1\r\n"), CommandError::Unknown);
        assert_eq!(err(b"\xff\xfe\x00"), CommandError::Unknown);
        assert_eq!(err("ST\u{c4}T".as_bytes()), CommandError::Unknown);
        assert!(matches!(err(b"USER \xff"), CommandError::BadArguments(_)));
        assert!(matches!(err(b"PASS \xc3"), CommandError::BadArguments(_)));
        assert!(matches!(err(b"RETR \xd9\xa3"), CommandError::BadArguments(_)));
    }

    #[test]
    fn debug_never_shows_a_password() {
        let shown = format!("{:?} {:?}", ok("PASS hunter2"), ok("AUTH PLAIN AGFsaWNlAGh1bnRlcjI="));
        assert!(!shown.contains("hunter2") && !shown.contains("AGFsaWNl"), "{shown}");
    }
}
