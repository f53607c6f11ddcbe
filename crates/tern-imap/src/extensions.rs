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
//! - SAVEDATE (RFC 8514): the FETCH item `SAVEDATE` (read as UID, flagged in
//!   [`Extra::savedate`]) and the SEARCH keys `SAVEDBEFORE`/`SAVEDON`/`SAVEDSINCE
//!   <date>` and `SAVEDATESUPPORTED`, rewritten to `HEADER "<KEY> " <date>`: a header
//!   name with a space, which no real header field can have (RFC 5322 §3.6.8), so
//!   search.rs can tell them apart ([`SAVED_KEY_PREFIXES`]).
//! - SEARCHRES (RFC 5182): `$` is replaced by the saved result in [`substitute_saved`].
//! - UTF8=ACCEPT's APPEND form (RFC 6855 §4): `APPEND box UTF8 (~{n}…)` becomes
//!   `APPEND box ~{n}…`, the same message as a literal8.
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
    /// FETCH asked for SAVEDATE (RFC 8514 §4).
    pub savedate: bool,
}

/// The SAVEDATE search keys, as the header names they are rewritten to.
pub const SAVED_KEY_PREFIXES: [&str; 4] = ["SAVEDBEFORE ", "SAVEDON ", "SAVEDSINCE ", "SAVEDATESUPPORTED "];

/// Calls `f` on every atom outside quoted strings and literals, with the byte offset
/// where it starts; `f` returns a replacement or `None`. Returns the new command if
/// anything was replaced.
fn rewrite_atoms(command: &[u8], mut f: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(command.len() + 32);
    let mut changed = false;
    let mut i = 0;
    let n = command.len();
    while i < n {
        match command[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < n && command[i] != b'"' {
                    i += if command[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(n);
                out.extend_from_slice(&command[start..i]);
            }
            b'{' => {
                // A literal: copy its announcement and its bytes untouched.
                let start = i;
                let Some(close) = command[i..].iter().position(|&b| b == b'}') else {
                    out.extend_from_slice(&command[i..]);
                    break;
                };
                let digits: String = command[i..i + close]
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .map(|&b| b as char)
                    .collect();
                let len: usize = digits.parse().unwrap_or(0);
                let mut end = i + close + 1;
                if command.get(end) == Some(&b'\r') {
                    end += 1;
                }
                if command.get(end) == Some(&b'\n') {
                    end += 1;
                }
                end = (end + len).min(n);
                out.extend_from_slice(&command[start..end]);
                i = end;
            }
            b' ' | b'(' | b')' | b'\r' | b'\n' => {
                out.push(command[i]);
                i += 1;
            }
            _ => {
                let start = i;
                while i < n && !b" ()\"\r\n{".contains(&command[i]) {
                    i += 1;
                }
                match f(&command[start..i]) {
                    Some(replacement) => {
                        changed = true;
                        out.extend_from_slice(&replacement);
                    }
                    None => out.extend_from_slice(&command[start..i]),
                }
            }
        }
    }
    changed.then_some(out)
}

/// The verb of a command (after the tag and an optional `UID`), upper-cased, and
/// whether it is a UID command.
pub fn verb_of(command: &[u8]) -> (String, bool) {
    let mut words = command
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .filter(|w| !w.is_empty())
        .skip(1);
    let first = words.next().unwrap_or_default();
    if first.eq_ignore_ascii_case(b"UID") {
        (upper(words.next().unwrap_or_default()), true)
    } else {
        (upper(first), false)
    }
}

/// SEARCHRES (RFC 5182 §2.1): replaces `$` with the saved search result. In SEARCH it
/// becomes the criterion `UID <set>`; elsewhere the UID set, turning a sequence-number
/// command into its UID form so expunges in between cannot shift what `$` means.
/// `saved` is the saved UIDs still in the mailbox.
pub fn substitute_saved(command: &[u8], saved: &[u32]) -> Option<Vec<u8>> {
    let (verb, uid) = verb_of(command);
    // An empty result matches nothing; no message has UID 4294967295 in practice
    // (UIDs are assigned from 1 upwards, RFC 9051 §2.3.1.1).
    let set = if saved.is_empty() {
        "4294967295".to_string()
    } else {
        crate::response::sequence_set(saved)
    };
    let searching = matches!(verb.as_str(), "SEARCH" | "SORT" | "THREAD");
    let replaced = rewrite_atoms(command, |atom| {
        (atom == b"$").then(|| if searching { format!("UID {set}") } else { set.clone() }.into_bytes())
    })?;
    if searching || uid {
        return Some(replaced);
    }
    let tag_end = replaced.iter().position(|&b| b == b' ')?;
    let mut with_uid = replaced[..tag_end].to_vec();
    with_uid.extend_from_slice(b" UID");
    with_uid.extend_from_slice(&replaced[tag_end..]);
    Some(with_uid)
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
    if verb.eq_ignore_ascii_case(b"SEARCH")
        || verb.eq_ignore_ascii_case(b"SORT")
        || verb.eq_ignore_ascii_case(b"THREAD")
    {
        let saved_keys = rewrite_atoms(command, |atom| {
            let key = upper(atom);
            match key.as_str() {
                "SAVEDBEFORE" | "SAVEDON" | "SAVEDSINCE" => Some(format!("HEADER \"{key} \"").into_bytes()),
                "SAVEDATESUPPORTED" => Some(b"HEADER \"SAVEDATESUPPORTED \" \"\"".to_vec()),
                _ => None,
            }
        });
        if let Some(rewritten) = saved_keys {
            let (rest, more) = lift(&rewritten);
            return (Cow::Owned(rest.into_owned()), more);
        }
    }
    if verb.eq_ignore_ascii_case(b"APPEND")
        && let Some(unwrapped) = unwrap_utf8_append(command)
    {
        return (Cow::Owned(unwrapped), extra);
    }
    if verb.eq_ignore_ascii_case(b"FETCH") {
        if let Some(rewritten) = rewrite_atoms(command, |atom| {
            atom.eq_ignore_ascii_case(b"SAVEDATE").then(|| b"UID".to_vec())
        }) {
            extra.savedate = true;
            return (Cow::Owned(rewritten), extra);
        }
    } else if verb.eq_ignore_ascii_case(b"SEARCH") {
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

/// `… UTF8 (~{n}\r\n<n bytes>)` → `… ~{n}\r\n<n bytes>` (RFC 6855 §4 `append-data`).
fn unwrap_utf8_append(command: &[u8]) -> Option<Vec<u8>> {
    let line_end = command.iter().position(|&b| b == b'\n')?;
    let start = find_ci(&command[..line_end], b" UTF8 (~{")?;
    let open = start + b" UTF8 (".len();
    let close = open + command[open..line_end].iter().position(|&b| b == b'}')?;
    let digits: String = command[open..close]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    let length: usize = digits.parse().ok()?;
    let data_end = line_end + 1 + length;
    if command.get(data_end) != Some(&b')') {
        return None;
    }
    let mut out = command[..start + 1].to_vec();
    out.extend_from_slice(&command[open..data_end]);
    out.extend_from_slice(&command[data_end + 1..]);
    Some(out)
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
    fn savedate_and_searchres_syntax() {
        let (rest, extra) = lift(b"a UID FETCH 1:* (FLAGS SAVEDATE)\r\n");
        assert_eq!(&*rest, b"a UID FETCH 1:* (FLAGS UID)\r\n");
        assert!(extra.savedate);
        let (rest, _) = lift(b"a SEARCH SAVEDSINCE 1-Feb-2026 SUBJECT \"savedon\"\r\n");
        assert_eq!(
            &*rest,
            b"a SEARCH HEADER \"SAVEDSINCE \" 1-Feb-2026 SUBJECT \"savedon\"\r\n"
        );
        let (rest, extra) = lift(b"a SEARCH RETURN (SAVE) SAVEDATESUPPORTED\r\n");
        assert_eq!(&*rest, b"a SEARCH HEADER \"SAVEDATESUPPORTED \" \"\"\r\n");
        assert_eq!(extra.search_return, Some(vec!["SAVE".to_string()]));
        assert_eq!(
            substitute_saved(b"a FETCH $ FLAGS\r\n", &[3, 4, 9]).as_deref(),
            Some(&b"a UID FETCH 3:4,9 FLAGS\r\n"[..])
        );
        assert_eq!(
            substitute_saved(b"a SEARCH $ UNSEEN\r\n", &[]).as_deref(),
            Some(&b"a SEARCH UID 4294967295 UNSEEN\r\n"[..])
        );
        assert_eq!(substitute_saved(b"a STORE 1 +FLAGS ($x \"$\")\r\n", &[1]), None);
    }

    #[test]
    fn utf8_append_is_unwrapped() {
        let (rest, _) = lift("a APPEND INBOX (\\Seen) UTF8 (~{6+}\r\nGrüß)\r\n".as_bytes());
        assert_eq!(&*rest, "a APPEND INBOX (\\Seen) ~{6+}\r\nGrüß\r\n".as_bytes());
        let (rest, _) = lift(b"a APPEND INBOX {3}\r\nabc\r\n");
        assert_eq!(&*rest, b"a APPEND INBOX {3}\r\nabc\r\n");
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
