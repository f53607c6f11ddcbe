//! A stored message taken apart for reading: its people, its body (HTML or text, as the
//! sender wrote it), and its attachments and inline parts, each addressed by its index
//! in mail-parser's part list so a download can find it again.
//!
//! Nothing here changes the stored bytes: the message is parsed from them on every view
//! (a message is read far less often than it is listed).

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

/// A person in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: Option<String>,
    pub address: String,
}

impl Person {
    /// `Name <address>` or the address alone.
    pub fn display(&self) -> String {
        match &self.name {
            Some(name) if !name.trim().is_empty() => format!("{name} <{}>", self.address),
            _ => self.address.clone(),
        }
    }
}

/// The text of a message, as the sender sent it.
#[derive(Debug, Clone)]
pub enum Body {
    /// HTML, not yet sanitised.
    Html(String),
    Text(String),
}

/// An attachment or inline part.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Index in the parsed message's part list.
    pub part: u32,
    pub name: String,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    pub size: u64,
    /// The Content-ID without angle brackets.
    pub content_id: Option<String>,
    /// Shown in the body (referenced by `cid:`) rather than listed.
    pub inline: bool,
}

/// A message ready to show.
#[derive(Debug, Clone)]
pub struct View {
    pub from: Vec<Person>,
    pub to: Vec<Person>,
    pub cc: Vec<Person>,
    pub reply_to: Vec<Person>,
    pub subject: String,
    /// The Date header, unix seconds.
    pub date: Option<i64>,
    pub message_id: Option<String>,
    pub references: Vec<String>,
    /// From a mailing list or bulk sender (List-Id, Precedence: bulk/list).
    pub list: bool,
    pub body: Body,
    pub attachments: Vec<Attachment>,
}

fn people(address: Option<&Address<'_>>) -> Vec<Person> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|a| {
            Some(Person {
                name: a.name.as_deref().map(str::to_string),
                address: a.address.as_deref()?.to_string(),
            })
        })
        .collect()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Parses a stored message. Never fails: broken MIME shows what could be recovered.
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse(raw)
}

/// Takes a message apart for reading.
pub fn view(raw: &[u8]) -> View {
    let Some(message) = parse(raw) else {
        return View {
            from: Vec::new(),
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: Vec::new(),
            subject: String::new(),
            date: None,
            message_id: None,
            references: Vec::new(),
            list: false,
            body: Body::Text(String::from_utf8_lossy(raw).into_owned()),
            attachments: Vec::new(),
        };
    };
    let list = message.header_raw("List-Id").is_some()
        || message
            .header_raw("Precedence")
            .is_some_and(|p| matches!(p.trim().to_ascii_lowercase().as_str(), "bulk" | "list" | "junk"));
    View {
        from: people(message.from()),
        to: people(message.to()),
        cc: people(message.cc()),
        reply_to: people(message.reply_to()),
        subject: message.subject().unwrap_or("").to_string(),
        date: message.date().map(|d| d.to_timestamp()),
        message_id: message.message_id().map(str::to_string),
        references: ids(message.references()),
        list,
        body: body(&message),
        attachments: attachments(&message),
    }
}

/// The HTML body when the sender sent one, else the text.
fn body(message: &Message<'_>) -> Body {
    let html_parts: Vec<&PartType<'_>> = message.html_bodies().map(|p| &p.body).collect();
    if html_parts.iter().any(|p| matches!(p, PartType::Html(_))) {
        let mut html = String::new();
        for part in html_parts {
            match part {
                PartType::Html(h) => html.push_str(h),
                // A text part between HTML parts (multipart/mixed): shown as text.
                PartType::Text(t) => html.push_str(&crate::sanitize::text_to_html(t)),
                _ => {}
            }
        }
        return Body::Html(html);
    }
    let text: Vec<String> = message
        .text_bodies()
        .filter_map(|p| match &p.body {
            PartType::Text(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    Body::Text(text.join("\n\n"))
}

fn attachments(message: &Message<'_>) -> Vec<Attachment> {
    let mut out = Vec::new();
    for (index, part) in message.parts.iter().enumerate() {
        let index = index as u32;
        if index == 0 || matches!(part.body, PartType::Multipart(_)) {
            continue;
        }
        let is_body = message.text_body.contains(&index) || message.html_body.contains(&index);
        let content_id = part
            .content_id()
            .map(|c| c.trim().trim_start_matches('<').trim_end_matches('>').to_string());
        if is_body && part.attachment_name().is_none() {
            continue;
        }
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| {
                if part.is_message() {
                    "message/rfc822".into()
                } else {
                    "application/octet-stream".into()
                }
            })
            .to_ascii_lowercase();
        let inline = content_id.is_some()
            && content_type.starts_with("image/")
            && part.content_disposition().is_none_or(|d| !d.is_attachment());
        let name = part.attachment_name().map(str::to_string).unwrap_or_else(|| {
            match part.message().and_then(|m| m.subject()) {
                Some(subject) => format!("{subject}.eml"),
                None => format!("part-{index}{}", extension_for(&content_type)),
            }
        });
        out.push(Attachment {
            part: index,
            name,
            content_type,
            size: part.len() as u64,
            content_id,
            inline,
        });
    }
    out
}

/// A file name ending for a part without a name.
fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "message/rfc822" => ".eml",
        "text/plain" => ".txt",
        "text/html" => ".html",
        "text/calendar" => ".ics",
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "image/gif" => ".gif",
        "application/pdf" => ".pdf",
        _ => "",
    }
}

/// One part's decoded bytes and its type, for a download.
pub fn part_bytes(raw: &[u8], index: u32) -> Option<(String, Vec<u8>)> {
    let message = parse(raw)?;
    let attachment = attachments(&message).into_iter().find(|a| a.part == index)?;
    let part = message.parts.get(index as usize)?;
    Some((attachment.content_type, part.contents().to_vec()))
}
