//! What the store derives from a message once, at ingest, and keeps beside it: the IMAP
//! envelope and body structure (RFC 9051 §7.5.2), the header fields that SEARCH, SORT
//! (RFC 5256) and threading need, and the text for the full-text index.
//!
//! FETCH ENVELOPE / BODYSTRUCTURE answer from this record and never re-parse the blob.
//! Parsing never fails: a message with broken MIME still gets whatever could be derived
//! (mail-parser recovers from most damage), and its bytes are stored untouched anyway.

use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// Bytes of decoded body text indexed per message: enough for any real letter, bounded
/// so a 50 MB log file attached as text/plain does not bloat the index.
const MAX_INDEXED_BODY: usize = 1 << 20;
/// Characters kept for a message list's preview line.
const PREVIEW_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MessageMetadata {
    pub envelope: Envelope,
    pub body: BodyPart,
    /// The Date header as unix seconds (SORT DATE, SEARCH SENTBEFORE…), if parseable.
    pub sent_date: Option<i64>,
    /// The decoded Subject.
    pub subject: Option<String>,
    /// The base subject for SORT SUBJECT and THREAD=ORDEREDSUBJECT (RFC 5256 §2.1):
    /// the decoded subject without reply/forward markers.
    pub base_subject: String,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Octets of the header block including the blank line that ends it (BODY[HEADER]).
    pub header_size: u32,
    pub has_attachments: bool,
    /// The start of the text, for message lists.
    pub preview: String,
    /// Decoded header text and body text for the full-text index; not serialised.
    #[serde(skip)]
    pub index_headers: String,
    #[serde(skip)]
    pub index_body: String,
}

/// The IMAP envelope (RFC 9051 §7.5.2). Strings are as in the header (date, subject,
/// message ids raw, so IMAP can return them unchanged); address display names decoded.
/// Sender and Reply-To are stored as written: the IMAP layer fills them from From when
/// absent, as §7.5.2 requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<AddressItem>,
    pub sender: Vec<AddressItem>,
    pub reply_to: Vec<AddressItem>,
    pub to: Vec<AddressItem>,
    pub cc: Vec<AddressItem>,
    pub bcc: Vec<AddressItem>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

impl Envelope {
    /// What a message list sorts "From" by: the first sender's display name, or its
    /// address, lowercased.
    pub fn sort_from(&self) -> String {
        let first = self.from.iter().find_map(|a| match a {
            AddressItem::Mailbox { name, address } => name.as_deref().filter(|n| !n.is_empty()).or(address.as_deref()),
            AddressItem::Group { .. } => None,
        });
        first.unwrap_or("").trim().to_lowercase()
    }
}

/// One entry of an address header: a mailbox, or an RFC 5322 §3.4 group of mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddressItem {
    Mailbox {
        name: Option<String>,
        address: Option<String>,
    },
    Group {
        name: Option<String>,
        members: Vec<(Option<String>, Option<String>)>,
    },
}

/// One MIME part of the body structure (RFC 9051 §7.5.2 BODYSTRUCTURE), with the byte
/// offsets of its header and body in the stored message, so BODY[1.2] is a range read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BodyPart {
    /// Lower-case media type and subtype; `text/plain` when the part declares none.
    pub media_type: String,
    pub media_subtype: String,
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    /// Content-Transfer-Encoding as written, upper-cased; `7BIT` when absent.
    pub encoding: String,
    /// Octets of the encoded body.
    pub size: u32,
    /// Lines of the encoded body (reported for text/* and message/rfc822).
    pub lines: u32,
    pub md5: Option<String>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    pub header_offset: u32,
    pub body_offset: u32,
    pub end_offset: u32,
    pub children: PartChildren,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PartChildren {
    #[default]
    None,
    /// A multipart's parts.
    Multipart(Vec<BodyPart>),
    /// A message/rfc822 (or message/global) part's envelope and body.
    Message(Box<Envelope>, Box<BodyPart>),
}

impl MessageMetadata {
    /// Derives the metadata of a raw message. Never fails.
    pub fn parse(raw: &[u8]) -> MessageMetadata {
        let Some(msg) = MessageParser::default().parse(raw) else {
            // Not even a header could be found: keep the size so IMAP still answers.
            return MessageMetadata {
                body: BodyPart {
                    media_type: "text".into(),
                    media_subtype: "plain".into(),
                    encoding: "7BIT".into(),
                    size: raw.len() as u32,
                    lines: count_lines(raw),
                    end_offset: raw.len() as u32,
                    ..Default::default()
                },
                ..Default::default()
            };
        };
        let root = msg.root_part();
        let subject = msg.subject().map(str::to_string);
        let mut index_headers = String::new();
        if let Some(s) = &subject {
            index_headers.push_str(s);
            index_headers.push('\n');
        }
        for header in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::Cc,
            HeaderName::Bcc,
            HeaderName::ReplyTo,
        ] {
            if let Some(HeaderValue::Address(a)) = msg.header(header) {
                for addr in a.iter() {
                    for s in [&addr.name, &addr.address].into_iter().flatten() {
                        index_headers.push_str(s);
                        index_headers.push(' ');
                    }
                }
                index_headers.push('\n');
            }
        }
        let mut index_body = String::new();
        for i in 0..msg.text_body_count().max(msg.html_body_count()) {
            if index_body.len() >= MAX_INDEXED_BODY {
                break;
            }
            if let Some(text) = msg.body_text(i) {
                index_body.push_str(&text);
                index_body.push('\n');
            }
        }
        truncate_at_char(&mut index_body, MAX_INDEXED_BODY);
        let preview = preview(&index_body);
        MessageMetadata {
            envelope: envelope(&msg),
            body: body_part(&msg, root, 0),
            sent_date: msg.date().map(|d| d.to_timestamp()),
            base_subject: msg.thread_name().unwrap_or_default().trim().to_string(),
            subject,
            message_id: msg.message_id().map(str::to_string),
            in_reply_to: id_list(msg.in_reply_to()),
            references: id_list(msg.references()),
            header_size: root.offset_body.min(raw.len() as u32),
            has_attachments: msg.attachment_count() > 0,
            preview,
            index_headers,
            index_body,
        }
    }
}

/// The first words of the text, whitespace folded, for a message list.
fn preview(text: &str) -> String {
    let mut out = String::with_capacity(PREVIEW_CHARS + 16);
    for word in text.split_whitespace() {
        if out.chars().count() >= PREVIEW_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.chars().take(PREVIEW_CHARS).collect()
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn id_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn raw_header(msg: &Message<'_>, name: HeaderName<'_>) -> Option<String> {
    msg.header_raw(name).map(|v| v.trim().to_string())
}

fn envelope(msg: &Message<'_>) -> Envelope {
    let addresses = |name: HeaderName<'_>| match msg.header(name) {
        Some(HeaderValue::Address(a)) => address_items(a),
        _ => Vec::new(),
    };
    Envelope {
        date: raw_header(msg, HeaderName::Date),
        subject: raw_header(msg, HeaderName::Subject),
        from: addresses(HeaderName::From),
        sender: addresses(HeaderName::Sender),
        reply_to: addresses(HeaderName::ReplyTo),
        to: addresses(HeaderName::To),
        cc: addresses(HeaderName::Cc),
        bcc: addresses(HeaderName::Bcc),
        in_reply_to: raw_header(msg, HeaderName::InReplyTo),
        message_id: raw_header(msg, HeaderName::MessageId),
    }
}

fn address_items(a: &Address<'_>) -> Vec<AddressItem> {
    let s = |c: &Option<std::borrow::Cow<'_, str>>| c.as_ref().map(|c| c.to_string());
    match a {
        Address::List(list) => list
            .iter()
            .map(|m| AddressItem::Mailbox {
                name: s(&m.name),
                address: s(&m.address),
            })
            .collect(),
        Address::Group(groups) => groups
            .iter()
            .map(|g| {
                let members = g.addresses.iter().map(|m| (s(&m.name), s(&m.address))).collect();
                // Mail-parser puts ungrouped mailboxes of a mixed list in a nameless group.
                AddressItem::Group {
                    name: s(&g.name),
                    members,
                }
            })
            .collect(),
    }
}

fn count_lines(bytes: &[u8]) -> u32 {
    let lf = bytes.iter().filter(|&&b| b == b'\n').count();
    // A last line without a line ending still counts as a line.
    (lf + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))) as u32
}

/// Builds the structure of one part. `base` is added to the offsets: 0 for parts of the
/// stored message; a message/rfc822 part that was transfer-encoded (RFC 2046 §5.2.1
/// forbids this, but it happens) is parsed from decoded bytes, so its inner offsets do
/// not point into the blob and are recorded as the outer part's body range instead.
fn body_part(msg: &Message<'_>, part: &MessagePart<'_>, depth: u32) -> BodyPart {
    // The field, not raw_message(): that method slices to the root part, while every
    // offset is relative to the whole buffer.
    let raw: &[u8] = &msg.raw_message;
    let (media_type, media_subtype, params) = match part.content_type() {
        Some(ct) => (
            ct.c_type.to_ascii_lowercase(),
            ct.c_subtype.as_deref().map(str::to_ascii_lowercase).unwrap_or_default(),
            ct.attributes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                .collect(),
        ),
        // RFC 2045 §5.2: the default is text/plain; charset=us-ascii. Inside a
        // multipart/digest it is message/rfc822 (RFC 2046 §5.1.5).
        None if matches!(part.body, PartType::Message(_)) => ("message".into(), "rfc822".into(), Vec::new()),
        None => (
            "text".into(),
            "plain".into(),
            vec![("charset".into(), "us-ascii".into())],
        ),
    };
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    let disposition = part.content_disposition().map(|d| {
        (
            d.c_type.to_ascii_lowercase(),
            d.attributes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                .collect(),
        )
    });
    let language = match part.content_language() {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    };
    let children = match &part.body {
        PartType::Multipart(ids) if depth < 64 => PartChildren::Multipart(
            ids.iter()
                .filter_map(|id| msg.parts.get(*id as usize))
                .map(|p| body_part(msg, p, depth + 1))
                .collect(),
        ),
        PartType::Message(inner) if depth < 64 => {
            let mut inner_body = body_part(inner, inner.root_part(), depth + 1);
            if !std::ptr::eq(inner.raw_message.as_ptr(), raw.as_ptr()) {
                relocate(&mut inner_body, part.offset_body, part.offset_end);
            }
            PartChildren::Message(Box::new(envelope(inner)), Box::new(inner_body))
        }
        _ => PartChildren::None,
    };
    BodyPart {
        media_type,
        media_subtype,
        params,
        id: part.content_id().map(str::to_string),
        description: part.content_description().map(str::to_string),
        encoding: part
            .content_transfer_encoding()
            .map(|e| e.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "7BIT".into()),
        size: body.len() as u32,
        lines: count_lines(body),
        md5: part.header_raw_str(raw, "Content-MD5"),
        disposition,
        language,
        location: part.content_location().map(str::to_string),
        header_offset: part.offset_header,
        body_offset: part.offset_body,
        end_offset: part.offset_end,
        children,
    }
}

/// Points a decoded nested message's parts at the encoded range that holds them.
fn relocate(part: &mut BodyPart, start: u32, end: u32) {
    part.header_offset = start;
    part.body_offset = start;
    part.end_offset = end;
    match &mut part.children {
        PartChildren::Multipart(parts) => parts.iter_mut().for_each(|p| relocate(p, start, end)),
        PartChildren::Message(_, body) => relocate(body, start, end),
        PartChildren::None => {}
    }
}

trait RawHeader {
    fn header_raw_str(&self, raw: &[u8], name: &str) -> Option<String>;
}

impl RawHeader for MessagePart<'_> {
    fn header_raw_str(&self, raw: &[u8], name: &str) -> Option<String> {
        let h = self
            .headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
        let v = raw.get(h.offset_start as usize..h.offset_end as usize)?;
        Some(String::from_utf8_lossy(v).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"From: Alice Example <alice@example.com>\r\nTo: bob@example.org, \"Carol\" <carol@example.net>\r\nSubject: Re: Lunch =?UTF-8?Q?caf=C3=A9?=\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\nMessage-ID: <m1@example.com>\r\nIn-Reply-To: <m0@example.com>\r\nReferences: <a@x> <m0@example.com>\r\n\r\nSee you at noon.\r\nAlice\r\n";

    #[test]
    fn simple_message() {
        let m = MessageMetadata::parse(SIMPLE);
        assert_eq!(m.subject.as_deref(), Some("Re: Lunch café"));
        assert_eq!(m.base_subject, "Lunch café");
        assert_eq!(m.envelope.subject.as_deref(), Some("Re: Lunch =?UTF-8?Q?caf=C3=A9?="));
        assert_eq!(m.message_id.as_deref(), Some("m1@example.com"));
        assert_eq!(m.in_reply_to, vec!["m0@example.com"]);
        assert_eq!(m.references, vec!["a@x", "m0@example.com"]);
        assert_eq!(m.sent_date, Some(1_795_510_800));
        assert_eq!(m.envelope.to.len(), 2);
        assert_eq!(
            m.envelope.from[0],
            AddressItem::Mailbox {
                name: Some("Alice Example".into()),
                address: Some("alice@example.com".into())
            }
        );
        assert_eq!(
            (m.body.media_type.as_str(), m.body.media_subtype.as_str()),
            ("text", "plain")
        );
        assert_eq!(m.body.size, 25);
        assert_eq!(m.body.lines, 2);
        assert_eq!(&SIMPLE[m.header_size as usize..], b"See you at noon.\r\nAlice\r\n");
        assert!(m.index_body.contains("noon"));
        assert!(m.index_headers.contains("carol@example.net"));
        assert_eq!(m.preview, "See you at noon. Alice");
    }

    #[test]
    fn multipart_offsets_point_into_the_message() {
        let raw = b"Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--b1\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=x.pdf\r\n\r\nJVBERi0=\r\n--b1--\r\n";
        let m = MessageMetadata::parse(raw);
        assert_eq!(m.body.media_type, "multipart");
        let PartChildren::Multipart(parts) = &m.body.children else {
            panic!("not multipart")
        };
        assert_eq!(parts.len(), 2);
        let text = &parts[0];
        assert_eq!(&raw[text.body_offset as usize..text.end_offset as usize], b"hello");
        let pdf = &parts[1];
        assert_eq!(pdf.encoding, "BASE64");
        assert_eq!(&raw[pdf.body_offset as usize..pdf.end_offset as usize], b"JVBERi0=");
        assert_eq!(pdf.disposition.as_ref().unwrap().0, "attachment");
        assert!(m.has_attachments);
    }

    #[test]
    fn nested_message() {
        let raw = b"Subject: fwd\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: in@example.com\r\n\r\ninner body\r\n--x--\r\n";
        let m = MessageMetadata::parse(raw);
        let PartChildren::Multipart(parts) = &m.body.children else {
            panic!()
        };
        let PartChildren::Message(env, body) = &parts[1].children else {
            panic!("not a message part")
        };
        assert_eq!(env.subject.as_deref(), Some("inner"));
        assert_eq!(&raw[body.body_offset as usize..body.end_offset as usize], b"inner body");
    }

    #[test]
    fn garbage_still_has_metadata() {
        for raw in [
            &b"\x00\x01\x02 no header at all"[..],
            b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nbroken",
            b"\n",
        ] {
            let m = MessageMetadata::parse(raw);
            assert!(m.body.end_offset as usize <= raw.len());
        }
    }
}
