//! What FETCH says about a message's content, from the metadata the store derived at
//! ingest: ENVELOPE and BODYSTRUCTURE (RFC 9051 §7.5.2), and the byte ranges of body
//! sections (RFC 9051 §6.4.5 `BODY[section]`).

use base64::Engine as _;
use tern_store::metadata::{AddressItem, BodyPart, Envelope, PartChildren};

use crate::response::Out;

/// Writes an ENVELOPE. Sender and Reply-To default to From when absent (RFC 9051
/// §7.5.2). Names were decoded at ingest; a client that has not enabled UTF-8 gets
/// them back as RFC 2047 encoded words.
pub fn envelope(out: &mut Out, env: &Envelope, utf8: bool) {
    out.raw(b"(");
    out.nstring(env.date.as_deref().map(str::as_bytes), utf8).raw(b" ");
    out.nstring(env.subject.as_deref().map(str::as_bytes), utf8).raw(b" ");
    addresses(out, &env.from, utf8);
    out.raw(b" ");
    addresses(out, if env.sender.is_empty() { &env.from } else { &env.sender }, utf8);
    out.raw(b" ");
    addresses(
        out,
        if env.reply_to.is_empty() {
            &env.from
        } else {
            &env.reply_to
        },
        utf8,
    );
    for list in [&env.to, &env.cc, &env.bcc] {
        out.raw(b" ");
        addresses(out, list, utf8);
    }
    out.raw(b" ");
    out.nstring(env.in_reply_to.as_deref().map(str::as_bytes), utf8)
        .raw(b" ");
    out.nstring(env.message_id.as_deref().map(str::as_bytes), utf8);
    out.raw(b")");
}

fn addresses(out: &mut Out, list: &[AddressItem], utf8: bool) {
    if list.is_empty() {
        out.raw(b"NIL");
        return;
    }
    out.raw(b"(");
    for item in list {
        match item {
            AddressItem::Mailbox { name, address: addr } => address(out, name.as_deref(), addr.as_deref(), utf8),
            AddressItem::Group { name, members } => {
                // RFC 9051 §7.5.2: a group is a start marker with the group name in
                // the mailbox field, its members, and an all-NIL end marker.
                out.raw(b"(NIL NIL ");
                out.nstring(Some(name.as_deref().unwrap_or("").as_bytes()), utf8);
                out.raw(b" NIL)");
                for (n, a) in members {
                    address(out, n.as_deref(), a.as_deref(), utf8);
                }
                out.raw(b"(NIL NIL NIL NIL)");
            }
        }
    }
    out.raw(b")");
}

fn address(out: &mut Out, name: Option<&str>, addr: Option<&str>, utf8: bool) {
    out.raw(b"(");
    match name.filter(|n| !n.is_empty()) {
        Some(n) if !utf8 && !n.is_ascii() => {
            // RFC 2047 §4.1 "B" encoding; each encoded word at most 75 characters.
            let mut encoded = String::new();
            let mut chunk = String::new();
            for c in n.chars() {
                if chunk.len() + c.len_utf8() > 45 {
                    push_word(&mut encoded, &chunk);
                    chunk.clear();
                }
                chunk.push(c);
            }
            push_word(&mut encoded, &chunk);
            out.string(encoded.as_bytes(), false);
        }
        Some(n) => {
            out.string(n.as_bytes(), utf8);
        }
        None => {
            out.raw(b"NIL");
        }
    }
    out.raw(b" NIL ");
    let (local, domain) = match addr {
        Some(a) => match a.rsplit_once('@') {
            Some((l, d)) => (Some(l), Some(d)),
            None => (Some(a), None),
        },
        None => (None, None),
    };
    // RFC 9051 §7.5.2: a missing host is sent as an empty string when there is a local
    // part, so it is not read as a group marker.
    out.nstring(local.map(str::as_bytes), utf8).raw(b" ");
    match (local, domain) {
        (Some(_), None) => out.raw(b"\"\""),
        _ => out.nstring(domain.map(str::as_bytes), utf8),
    };
    out.raw(b")");
}

fn push_word(encoded: &mut String, chunk: &str) {
    if chunk.is_empty() {
        return;
    }
    if !encoded.is_empty() {
        encoded.push(' ');
    }
    encoded.push_str("=?utf-8?b?");
    encoded.push_str(&base64::engine::general_purpose::STANDARD.encode(chunk));
    encoded.push_str("?=");
}

/// Writes BODYSTRUCTURE (`extended`) or BODY (RFC 9051 §7.5.2).
pub fn structure(out: &mut Out, part: &BodyPart, extended: bool, utf8: bool) {
    out.raw(b"(");
    match &part.children {
        PartChildren::Multipart(children) if !children.is_empty() => {
            for child in children {
                structure(out, child, extended, utf8);
            }
            out.raw(b" ")
                .string(part.media_subtype.to_ascii_uppercase().as_bytes(), false);
            if extended {
                out.raw(b" ");
                params(out, &part.params, utf8);
                out.raw(b" ");
                disposition_language_location(out, part, utf8);
            }
        }
        _ => {
            let (media_type, subtype) = if matches!(part.children, PartChildren::Multipart(_)) {
                // A multipart without parts cannot be described as one; say text/plain.
                ("TEXT".to_string(), "PLAIN".to_string())
            } else {
                (
                    part.media_type.to_ascii_uppercase(),
                    part.media_subtype.to_ascii_uppercase(),
                )
            };
            out.string(media_type.as_bytes(), false).raw(b" ");
            out.string(subtype.as_bytes(), false).raw(b" ");
            params(out, &part.params, utf8);
            out.raw(b" ");
            out.nstring(part.id.as_deref().map(str::as_bytes), utf8).raw(b" ");
            out.nstring(part.description.as_deref().map(str::as_bytes), utf8)
                .raw(b" ");
            out.string(part.encoding.as_bytes(), false).raw(b" ");
            out.num(part.size);
            if let PartChildren::Message(env, body) = &part.children {
                out.raw(b" ");
                envelope(out, env, utf8);
                out.raw(b" ");
                structure(out, body, extended, utf8);
                out.raw(b" ").num(part.lines);
            } else if media_type == "TEXT" {
                out.raw(b" ").num(part.lines);
            }
            if extended {
                out.raw(b" ");
                out.nstring(part.md5.as_deref().map(str::as_bytes), utf8).raw(b" ");
                disposition_language_location(out, part, utf8);
            }
        }
    }
    out.raw(b")");
}

fn params(out: &mut Out, params: &[(String, String)], utf8: bool) {
    if params.is_empty() {
        out.raw(b"NIL");
        return;
    }
    out.raw(b"(");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.raw(b" ");
        }
        out.string(k.to_ascii_uppercase().as_bytes(), utf8).raw(b" ");
        out.string(v.as_bytes(), utf8);
    }
    out.raw(b")");
}

fn disposition_language_location(out: &mut Out, part: &BodyPart, utf8: bool) {
    match &part.disposition {
        Some((kind, p)) => {
            out.raw(b"(")
                .string(kind.to_ascii_uppercase().as_bytes(), false)
                .raw(b" ");
            params(out, p, utf8);
            out.raw(b")");
        }
        None => {
            out.raw(b"NIL");
        }
    }
    out.raw(b" ");
    match part.language.as_slice() {
        [] => out.raw(b"NIL"),
        [one] => out.string(one.as_bytes(), utf8),
        many => {
            out.raw(b"(");
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.raw(b" ");
                }
                out.string(l.as_bytes(), utf8);
            }
            out.raw(b")")
        }
    };
    out.raw(b" ");
    out.nstring(part.location.as_deref().map(str::as_bytes), utf8);
}

/// The part a section path names (RFC 9051 §6.4.5): in a multipart, part N is the Nth
/// child; a non-multipart message has one part, 1; inside a message/rfc822 part the
/// numbering continues in the encapsulated message.
pub fn find_part<'a>(root: &'a BodyPart, path: &[u32]) -> Option<&'a BodyPart> {
    let mut part = root;
    for &n in path {
        // Step into an encapsulated message first: its parts are the part's parts.
        let container = match &part.children {
            PartChildren::Message(_, body) => body.as_ref(),
            _ => part,
        };
        part = match &container.children {
            PartChildren::Multipart(children) => children.get(n.checked_sub(1)? as usize)?,
            _ if n == 1 => container,
            _ => return None,
        };
    }
    Some(part)
}

/// The message whose HEADER/TEXT a section means: the whole message for an empty path,
/// else the message encapsulated in a message/rfc822 part.
pub fn message_of<'a>(root: &'a BodyPart, path: &[u32]) -> Option<&'a BodyPart> {
    if path.is_empty() {
        return Some(root);
    }
    match &find_part(root, path)?.children {
        PartChildren::Message(_, body) => Some(body),
        _ => None,
    }
}

/// The header block starting at `start` up to and including its blank line.
pub fn header_block(raw: &[u8], start: usize, body_start: usize) -> &[u8] {
    raw.get(start..body_start.min(raw.len())).unwrap_or_default()
}

/// HEADER.FIELDS / HEADER.FIELDS.NOT (RFC 9051 §6.4.5): the matching header lines,
/// folded continuations included, then the blank line.
pub fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let matched = names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name.trim_ascii()));
            keep = matched != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::MessageMetadata;

    const NESTED: &[u8] = b"From: a@example.com\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.com\r\nSubject: inner\r\n\r\ninner body\r\n--b1--\r\n";

    #[test]
    fn sections_find_their_bytes() {
        let meta = MessageMetadata::parse(NESTED);
        let root = &meta.body;
        let first = find_part(root, &[1]).expect("part 1");
        assert_eq!(&NESTED[first.body_offset as usize..first.end_offset as usize], b"first");
        let inner = message_of(root, &[2]).expect("2 is a message");
        let header = header_block(NESTED, inner.header_offset as usize, inner.body_offset as usize);
        assert!(
            header.starts_with(b"From: inner@example.com"),
            "{}",
            String::from_utf8_lossy(header)
        );
        assert_eq!(
            &NESTED[inner.body_offset as usize..inner.end_offset as usize],
            b"inner body",
            "the CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1)"
        );
        assert!(find_part(root, &[3]).is_none());
        let single = MessageMetadata::parse(b"Subject: x\r\n\r\nhello\r\n");
        assert!(find_part(&single.body, &[1]).is_some());
        assert!(find_part(&single.body, &[2]).is_none());
    }

    #[test]
    fn header_field_selection() {
        let header = b"Subject: a\r\nX-Long: one\r\n two\r\nFrom: b\r\n\r\n";
        assert_eq!(
            header_fields(header, &["x-long".into()], false),
            b"X-Long: one\r\n two\r\n\r\n"
        );
        assert_eq!(
            header_fields(header, &["x-long".into()], true),
            b"Subject: a\r\nFrom: b\r\n\r\n"
        );
    }

    #[test]
    fn structures_and_envelopes() {
        let meta = MessageMetadata::parse(NESTED);
        let mut out = Out::default();
        structure(&mut out, &meta.body, true, false);
        let text = String::from_utf8_lossy(&out.buf).into_owned();
        assert!(text.starts_with("((\"TEXT\" \"PLAIN\""), "{text}");
        assert!(text.contains("\"MESSAGE\" \"RFC822\""), "{text}");
        assert!(text.contains(" \"MIXED\" (\"BOUNDARY\" \"b1\")"), "{text}");
        let meta = MessageMetadata::parse("From: Jürgen <j@example.de>\r\n\r\nx".as_bytes());
        let mut out = Out::default();
        envelope(&mut out, &meta.envelope, false);
        let text = String::from_utf8_lossy(&out.buf).into_owned();
        assert!(
            text.contains("((\"=?utf-8?b?SsO8cmdlbg==?=\" NIL \"j\" \"example.de\"))"),
            "{text}"
        );
    }
}
