//! Command syntax of extensions imap-codec does not parse, lifted out before the codec
//! sees the command (DESIGN.md: "add what is missing in our code, marked as such").
//!
//! - ESEARCH (RFC 4731 §3): `SEARCH RETURN (MIN MAX COUNT ALL) <criteria>`.
//! - CREATE-SPECIAL-USE (RFC 6154 §3): `CREATE <name> (USE (\Sent))`.
//! - LIST-EXTENDED (RFC 5258 §3), LIST-STATUS (RFC 5819 §2) and the SPECIAL-USE
//!   selection and return options (RFC 6154 §2): `LIST (SUBSCRIBED) "" ("a" "b")
//!   RETURN (CHILDREN STATUS (MESSAGES))`. The whole command is parsed here and the
//!   codec is given a plain `LIST "" ""`.
//!
//! Each is removed from the command bytes and returned in [`Extra`], and the rest is a
//! command the codec knows.

use std::borrow::Cow;

use tern_store::SpecialUse;

/// What was lifted out of a command.
#[derive(Debug, Default, Clone)]
pub struct Extra {
    /// `RETURN (…)` of SEARCH, upper-cased option names; `Some(empty)` means the
    /// default set (ALL), RFC 4731 §3.1.
    pub search_return: Option<Vec<String>>,
    /// `USE (\…)` of CREATE.
    pub create_use: Option<Vec<String>>,
    /// An extended LIST, parsed whole.
    pub list: Option<ListRequest>,
}

/// LIST with its extended options (RFC 5258 §3).
#[derive(Debug, Default, Clone)]
pub struct ListRequest {
    /// Upper-cased selection options: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE.
    pub selection: Vec<String>,
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    /// Upper-cased return options: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS.
    pub returns: Vec<String>,
    /// The items of `RETURN (STATUS (…))`, upper-cased.
    pub status_items: Vec<String>,
}

/// A token of command syntax: enough of RFC 9051 §9 to read LIST's arguments.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Atom(Vec<u8>),
    String(Vec<u8>),
    Open,
    Close,
}

/// Splits a command into tokens: atoms, quoted strings, literals and parentheses.
fn tokens(command: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = command.len();
    while i < n {
        match command[i] {
            b' ' | b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match *command.get(i)? {
                        b'\\' => {
                            s.push(*command.get(i + 1)?);
                            i += 2;
                        }
                        b'"' => {
                            i += 1;
                            break;
                        }
                        c => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::String(s));
            }
            b'{' | b'~' => {
                let close = i + command[i..].iter().position(|&b| b == b'}')?;
                let digits: String = command[i..close]
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .map(|&b| b as char)
                    .collect();
                let len: usize = digits.parse().ok()?;
                let start = close + 1 + if command.get(close + 1) == Some(&b'\r') { 2 } else { 1 };
                out.push(Token::String(command.get(start..start + len)?.to_vec()));
                i = start + len;
            }
            _ => {
                let start = i;
                while i < n && !b" ()\"\r\n".contains(&command[i]) {
                    i += 1;
                }
                out.push(Token::Atom(command[start..i].to_vec()));
            }
        }
    }
    Some(out)
}

fn upper(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_uppercase()
}

/// Reads `tag LIST [(opts)] reference pattern|(patterns) [RETURN (opts)]`.
fn parse_list(command: &[u8]) -> Option<ListRequest> {
    let t = tokens(command)?;
    let mut it = t.into_iter().skip(2).peekable();
    let mut req = ListRequest::default();
    if it.peek() == Some(&Token::Open) {
        it.next();
        loop {
            match it.next()? {
                Token::Close => break,
                Token::Atom(a) => req.selection.push(upper(&a)),
                _ => return None,
            }
        }
    }
    req.reference = match it.next()? {
        Token::Atom(a) | Token::String(a) => a,
        _ => return None,
    };
    match it.next()? {
        Token::Atom(a) | Token::String(a) => req.patterns.push(a),
        Token::Open => loop {
            match it.next()? {
                Token::Close => break,
                Token::Atom(a) | Token::String(a) => req.patterns.push(a),
                _ => return None,
            }
        },
        Token::Close => return None,
    }
    match it.next() {
        None => {}
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case(b"RETURN") => {
            if it.next()? != Token::Open {
                return None;
            }
            loop {
                match it.next()? {
                    Token::Close => break,
                    Token::Atom(a) => {
                        let option = upper(&a);
                        if option == "STATUS" {
                            if it.next()? != Token::Open {
                                return None;
                            }
                            loop {
                                match it.next()? {
                                    Token::Close => break,
                                    Token::Atom(item) => req.status_items.push(upper(&item)),
                                    _ => return None,
                                }
                            }
                        }
                        req.returns.push(option);
                    }
                    _ => return None,
                }
            }
        }
        Some(_) => return None,
    }
    if it.next().is_some() {
        return None;
    }
    Some(req)
}

impl Extra {
    pub fn special_use(&self) -> Result<Option<SpecialUse>, String> {
        match self.create_use.as_deref() {
            None | Some([]) => Ok(None),
            Some([one]) => SpecialUse::from_attribute(one)
                .map(Some)
                .ok_or_else(|| format!("{one} is not a special-use attribute Tern supports")),
            Some(_) => Err("one special-use attribute per mailbox".into()),
        }
    }
}

/// Splits the extension syntax off `command`.
pub fn lift(command: &[u8]) -> (Cow<'_, [u8]>, Extra) {
    let mut extra = Extra::default();
    let words: Vec<&[u8]> = command.splitn(5, |&b| b == b' ').collect();
    let verb_at = match words.get(1) {
        Some(w) if w.eq_ignore_ascii_case(b"UID") => 2,
        _ => 1,
    };
    let Some(verb) = words.get(verb_at) else {
        return (Cow::Borrowed(command), extra);
    };
    if verb.eq_ignore_ascii_case(b"SEARCH") {
        // The offset of what follows "SEARCH ".
        let after: usize = words[..=verb_at].iter().map(|w| w.len() + 1).sum();
        if after <= command.len() && starts_with_ci(&command[after..], b"RETURN (") {
            let open = after + b"RETURN ".len();
            if let Some(close) = command[open..].iter().position(|&b| b == b')') {
                let options = String::from_utf8_lossy(&command[open + 1..open + close]);
                extra.search_return = Some(options.split_whitespace().map(|o| o.to_ascii_uppercase()).collect());
                let mut rest = command[..after].to_vec();
                let tail = &command[open + close + 1..];
                rest.extend_from_slice(tail.strip_prefix(b" ").unwrap_or(tail));
                return (Cow::Owned(rest), extra);
            }
        }
    } else if verb.eq_ignore_ascii_case(b"LIST") && verb_at == 1 {
        if let Some(request) = parse_list(command) {
            extra.list = Some(request);
            let mut rest = words[0].to_vec();
            rest.extend_from_slice(b" LIST \"\" \"\"\r\n");
            return (Cow::Owned(rest), extra);
        }
    } else if verb.eq_ignore_ascii_case(b"CREATE") {
        let line_end = command.len() - trailing_crlf(command);
        let line = &command[..line_end];
        if line.ends_with(b"))")
            && let Some(start) = find_ci(line, b" (USE (")
        {
            let inner = &line[start + b" (USE (".len()..line.len() - 2];
            let attrs = String::from_utf8_lossy(inner);
            extra.create_use = Some(attrs.split_whitespace().map(str::to_string).collect());
            let mut rest = line[..start].to_vec();
            rest.extend_from_slice(&command[line_end..]);
            return (Cow::Owned(rest), extra);
        }
    }
    (Cow::Borrowed(command), extra)
}

fn starts_with_ci(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .rposition(|w| w.eq_ignore_ascii_case(needle))
}

fn trailing_crlf(command: &[u8]) -> usize {
    if command.ends_with(b"\r\n") {
        2
    } else if command.ends_with(b"\n") {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_return_is_lifted() {
        let (rest, extra) = lift(b"a UID SEARCH RETURN (MIN count) UNSEEN\r\n");
        assert_eq!(&*rest, b"a UID SEARCH UNSEEN\r\n");
        assert_eq!(extra.search_return, Some(vec!["MIN".to_string(), "COUNT".to_string()]));
        let (rest, extra) = lift(b"a SEARCH RETURN () ALL\r\n");
        assert_eq!(&*rest, b"a SEARCH ALL\r\n");
        assert_eq!(extra.search_return, Some(vec![]));
        let (rest, extra) = lift(b"a SEARCH UNSEEN\r\n");
        assert_eq!(&*rest, b"a SEARCH UNSEEN\r\n");
        assert!(extra.search_return.is_none());
    }

    #[test]
    fn extended_list_is_parsed_whole() {
        let (rest, extra) = lift(b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" {4}\r\nSe%t) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n");
        assert_eq!(&*rest, b"a LIST \"\" \"\"\r\n");
        let list = extra.list.expect("parsed");
        assert_eq!(list.selection, ["SUBSCRIBED", "RECURSIVEMATCH"]);
        assert_eq!(list.patterns, [b"INBOX".to_vec(), b"Se%t".to_vec()]);
        assert_eq!(list.returns, ["CHILDREN", "STATUS"]);
        assert_eq!(list.status_items, ["MESSAGES", "UNSEEN"]);
        let (_, extra) = lift(b"a LIST \"\" *\r\n");
        assert_eq!(extra.list.expect("plain").patterns, [b"*".to_vec()]);
        let (_, extra) = lift(b"a LIST \"\" * RETURN\r\n");
        assert!(extra.list.is_none(), "malformed: left to the codec, which says BAD");
    }

    #[test]
    fn create_use_is_lifted() {
        let (rest, extra) = lift(b"t1 CREATE \"Sent Items\" (USE (\\Sent))\r\n");
        assert_eq!(&*rest, b"t1 CREATE \"Sent Items\"\r\n");
        assert_eq!(extra.special_use(), Ok(Some(SpecialUse::Sent)));
        let (_, extra) = lift(b"t1 CREATE x (USE (\\Bogus))\r\n");
        assert!(extra.special_use().is_err());
    }
}
