//! Command syntax of extensions imap-codec does not parse, lifted out before the codec
//! sees the command (DESIGN.md: "add what is missing in our code, marked as such").
//!
//! - ESEARCH (RFC 4731 §3): `SEARCH RETURN (MIN MAX COUNT ALL) <criteria>`.
//! - CREATE-SPECIAL-USE (RFC 6154 §3): `CREATE <name> (USE (\Sent))`.
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
    fn create_use_is_lifted() {
        let (rest, extra) = lift(b"t1 CREATE \"Sent Items\" (USE (\\Sent))\r\n");
        assert_eq!(&*rest, b"t1 CREATE \"Sent Items\"\r\n");
        assert_eq!(extra.special_use(), Ok(Some(SpecialUse::Sent)));
        let (_, extra) = lift(b"t1 CREATE x (USE (\\Bogus))\r\n");
        assert!(extra.special_use().is_err());
    }
}
