//! FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9), with CHANGEDSINCE and VANISHED
//! (RFC 7162 §3.1.4, §3.2.6).
//!
//! Messages are handled in batches: summaries (flags, dates, sizes) and, when asked
//! for, metadata (ENVELOPE, BODYSTRUCTURE) come from the store a batch at a time, and
//! the response is flushed as it grows, so `FETCH 1:* (…)` on a mailbox of 100,000
//! messages neither waits for all of it nor holds it all in memory. A whole message
//! stored as a file of its own is streamed from the file.

use std::borrow::Cow;
use std::collections::HashMap;

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItemName, Part, Section};
use imap_codec::imap_types::sequence::SequenceSet;
use tern_store::{FlagOp, Flags, MessageMetadata, MessageSummary, SystemFlags, Uid};
use tokio::io::AsyncReadExt;

use super::{check_seq_range, resolve, set_contains};
use crate::body;
use crate::session::{Reply, Result, Session};

const BATCH: usize = 500;

/// Messages above this size may be files of their own, streamed rather than read (the
/// embedded store keeps bodies up to 256 KiB in its database); smaller ones are read
/// in batches.
const LARGE: u64 = 256 * 1024;

/// How many bytes of bodies one batched read brings in at most.
const BODY_BATCH_BYTES: u64 = 8 * 1024 * 1024;

/// Splits summaries into runs whose small bodies add up to at most [`BODY_BATCH_BYTES`].
fn by_size(summaries: &[MessageSummary]) -> Vec<&[MessageSummary]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, m) in summaries.iter().enumerate() {
        if m.size <= LARGE {
            if bytes + m.size > BODY_BATCH_BYTES && i > start {
                groups.push(&summaries[start..i]);
                start = i;
                bytes = 0;
            }
            bytes += m.size;
        }
    }
    if start < summaries.len() {
        groups.push(&summaries[start..]);
    }
    groups
}

/// A FETCH data item, in the form the response loop needs.
#[derive(Debug, Clone)]
enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    Envelope,
    Body,
    BodyStructure,
    ModSeq,
    Section(SectionItem),
    /// BINARY.SIZE[part] (RFC 3516 §4.2).
    BinarySize(Vec<u32>),
    SaveDate,
}

#[derive(Debug, Clone)]
struct SectionItem {
    /// How the item is named in the response, e.g. `BODY[HEADER.FIELDS (SUBJECT)]`.
    label: String,
    path: Vec<u32>,
    kind: SectionKind,
    partial: Option<(u32, u32)>,
    /// Fetching it sets \Seen (BODY[…] and RFC822 without PEEK).
    sets_seen: bool,
    /// BINARY[…]: the transfer encoding is undone (RFC 3516).
    binary: bool,
}

#[derive(Debug, Clone)]
enum SectionKind {
    /// The whole message (`BODY[]`) or a part's content (`BODY[1.2]`).
    Full,
    Header,
    HeaderFields(Vec<String>, bool),
    Text,
    Mime,
}

pub async fn fetch(
    s: &mut Session,
    set: SequenceSet,
    names: MacroOrMessageDataItemNames<'_>,
    uid: bool,
    modifiers: Vec<FetchModifier>,
    savedate: bool,
) -> Result {
    let mut items = items_of(names)?;
    if savedate {
        // RFC 8514 §4; the codec read the item as UID (extensions.rs), which stays when
        // the client asked for it too.
        items.push(Item::SaveDate);
    }
    let mut changed_since = None;
    let mut vanished = false;
    for m in modifiers {
        match m {
            FetchModifier::ChangedSince(since) => changed_since = Some(since.get()),
            FetchModifier::Vanished => vanished = true,
        }
    }
    if vanished && (!uid || !s.qresync || changed_since.is_none()) {
        // RFC 7162 §3.2.6.
        return Err(Reply::bad("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC"));
    }
    if changed_since.is_some() {
        s.condstore = true;
    }
    let mut uid_seen = false;
    items.retain(|i| !matches!(i, Item::Uid) || !std::mem::replace(&mut uid_seen, true));
    if uid && !items.iter().any(|i| matches!(i, Item::Uid)) {
        items.insert(0, Item::Uid);
    }
    if s.condstore && changed_since.is_some() && !items.iter().any(|i| matches!(i, Item::ModSeq)) {
        items.push(Item::ModSeq);
    }
    s.sync(uid, false).await?;
    let utf8 = s.utf8;
    let condstore = s.condstore;
    let (mailbox, read_only, uids) = {
        let view = s.view()?;
        if !uid {
            check_seq_range(view, &set)?;
        }
        (view.id(), view.read_only, resolve(view, &set, uid))
    };
    if let Some(since) = changed_since
        && vanished
    {
        let gone: Vec<Uid> = s
            .store
            .changes_since(mailbox, since)
            .await?
            .vanished
            .into_iter()
            .filter(|&u| set_contains(&set, u))
            .collect();
        if !gone.is_empty() {
            s.out
                .raw(b"* VANISHED (EARLIER) ")
                .text(&crate::response::sequence_set(&gone))
                .crlf();
        }
    }
    let wants_structure = items.iter().any(|i| {
        matches!(
            i,
            Item::Body | Item::BodyStructure | Item::Section(_) | Item::BinarySize(_)
        )
    });
    let wants_envelope = items.iter().any(|i| matches!(i, Item::Envelope));
    let wants_bytes = items
        .iter()
        .any(|i| matches!(i, Item::Section(_) | Item::BinarySize(_)));
    let sets_seen = !read_only && items.iter().any(|i| matches!(i, Item::Section(x) if x.sets_seen));
    let mut missing = false;
    for chunk in uids.chunks(BATCH) {
        let mut summaries: Vec<MessageSummary> = {
            let view = s.view()?;
            chunk.iter().filter_map(|u| view.summary(*u).cloned()).collect()
        };
        if summaries.len() < chunk.len() {
            missing = true;
        }
        if let Some(since) = changed_since {
            summaries.retain(|m| m.modseq > since);
        }
        if summaries.is_empty() {
            continue;
        }
        // RFC 9051 §6.4.5: fetching a body part sets \Seen; the new flags go out in
        // the same FETCH response.
        let mut flags_changed: Vec<Uid> = Vec::new();
        if sets_seen {
            let unseen: Vec<Uid> = summaries.iter().filter(|m| !m.flags.is_seen()).map(|m| m.uid).collect();
            if !unseen.is_empty() {
                let update = s
                    .store
                    .store_flags(mailbox, &unseen, FlagOp::Add, &Flags::system(SystemFlags::SEEN), None)
                    .await?;
                for (u, flags, modseq) in update.updated {
                    s.view()?.saw(u, &flags, modseq);
                    if let Ok(i) = summaries.binary_search_by_key(&u, |m| m.uid) {
                        summaries[i].flags = flags;
                        summaries[i].modseq = modseq;
                    }
                    flags_changed.push(u);
                }
            }
        }
        // Only the envelope is parsed when nothing else of the metadata is needed.
        let wanted: Vec<Uid> = summaries.iter().map(|m| m.uid).collect();
        let metadata: HashMap<Uid, MessageMetadata> = if wants_structure {
            s.store.metadata(mailbox, &wanted).await?.into_iter().collect()
        } else if wants_envelope {
            let envelopes = s.store.envelopes(mailbox, &wanted).await?;
            envelopes
                .into_iter()
                .map(|(u, envelope)| {
                    (
                        u,
                        MessageMetadata {
                            envelope,
                            ..Default::default()
                        },
                    )
                })
                .collect()
        } else {
            HashMap::new()
        };
        for group in by_size(&summaries) {
            // Bodies kept in the database come in one call per few megabytes.
            let mut bodies: HashMap<Uid, Vec<u8>> = if wants_bytes {
                let small: Vec<Uid> = group.iter().filter(|m| m.size <= LARGE).map(|m| m.uid).collect();
                s.store.read_messages(mailbox, &small).await?.into_iter().collect()
            } else {
                HashMap::new()
            };
            for m in group {
                let Some(seq) = s.view()?.seq_of(m.uid) else { continue };
                let meta = metadata.get(&m.uid);
                let raw = if !wants_bytes {
                    None
                } else if let Some(bytes) = bodies.remove(&m.uid) {
                    Some(Raw::Bytes(bytes))
                } else if m.size <= LARGE {
                    missing = true;
                    continue;
                } else {
                    match raw_or_file(s, mailbox, m).await? {
                        Some(raw) => Some(raw),
                        None => {
                            missing = true;
                            continue;
                        }
                    }
                };
                let add_flags = flags_changed.contains(&m.uid) && !items.iter().any(|i| matches!(i, Item::Flags));
                write_message(s, seq, m, meta, raw, &items, add_flags, condstore, utf8).await?;
                s.flush_if_large().await.map_err(|_| Reply::already_sent())?;
            }
        }
    }
    if missing {
        return Ok(Reply::ok("Some of the requested messages no longer exist").code("EXPUNGEISSUED"));
    }
    Ok(Reply::ok("FETCH completed"))
}

/// A message's bytes: in memory, or the file a large message is stored in (read only
/// when a part of it is wanted; a whole one is streamed).
enum Raw {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

async fn raw_or_file(s: &Session, mailbox: tern_store::MailboxId, m: &MessageSummary) -> Result<Option<Raw>> {
    let file = if m.size > LARGE {
        s.store.message_file(mailbox, m.uid).await
    } else {
        Ok(None)
    };
    let found = match file {
        Ok(Some(path)) => Ok(Raw::File(path)),
        Ok(None) => s.store.read_message(mailbox, m.uid).await.map(Raw::Bytes),
        Err(e) => Err(e),
    };
    match found {
        Ok(raw) => Ok(Some(raw)),
        Err(tern_store::StoreError::NoSuchMessage(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_message(
    s: &mut Session,
    seq: u32,
    m: &MessageSummary,
    meta: Option<&MessageMetadata>,
    raw: Option<Raw>,
    items: &[Item],
    add_flags: bool,
    condstore: bool,
    utf8: bool,
) -> Result<()> {
    s.out.raw(b"* ").num(seq).raw(b" FETCH (");
    let mut first = true;
    let mut sep = |s: &mut Session| {
        if !first {
            s.out.raw(b" ");
        }
        first = false;
    };
    let default_meta = MessageMetadata::default();
    let meta = meta.unwrap_or(&default_meta);
    for item in items {
        sep(s);
        match item {
            Item::Uid => {
                s.out.raw(b"UID ").num(m.uid);
            }
            Item::Flags => {
                s.out.raw(b"FLAGS ").flags(&m.flags, false);
            }
            Item::InternalDate => {
                s.out
                    .raw(b"INTERNALDATE ")
                    .text(&crate::response::date_time(m.internal_date));
            }
            Item::Size => {
                s.out.raw(b"RFC822.SIZE ").num(m.size);
            }
            Item::ModSeq => {
                s.out.raw(b"MODSEQ (").num(m.modseq).raw(b")");
            }
            Item::SaveDate => {
                s.out.raw(b"SAVEDATE ").text(&crate::response::date_time(m.save_date));
            }
            Item::Envelope => {
                s.out.raw(b"ENVELOPE ");
                body::envelope(&mut s.out, &meta.envelope, utf8);
            }
            Item::Body => {
                s.out.raw(b"BODY ");
                body::structure(&mut s.out, &meta.body, false, utf8);
            }
            Item::BodyStructure => {
                s.out.raw(b"BODYSTRUCTURE ");
                body::structure(&mut s.out, &meta.body, true, utf8);
            }
            Item::BinarySize(path) => {
                let Some(raw) = &raw else { continue };
                let bytes = match raw {
                    Raw::Bytes(b) => binary_bytes(b, meta, path)?,
                    Raw::File(p) => {
                        let b = tokio::fs::read(p).await.map_err(|e| {
                            Reply::from(tern_store::StoreError::Io {
                                context: p.display().to_string(),
                                source: e,
                            })
                        })?;
                        binary_bytes(&b, meta, path)?
                    }
                };
                let label: Vec<String> = path.iter().map(u32::to_string).collect();
                s.out
                    .raw(b"BINARY.SIZE[")
                    .text(&label.join("."))
                    .raw(b"] ")
                    .num(bytes.len());
            }
            Item::Section(section) => {
                let Some(raw) = &raw else { continue };
                s.out.text(&section.label);
                // Whole large messages go straight from their file.
                let loaded;
                let raw: &[u8] = match raw {
                    Raw::File(path)
                        if matches!(section.kind, SectionKind::Full)
                            && section.path.is_empty()
                            && section.partial.is_none() =>
                    {
                        s.out.raw(b" {").num(m.size).raw(b"}\r\n");
                        stream_file(s, path).await?;
                        continue;
                    }
                    Raw::File(path) => {
                        loaded = tokio::fs::read(path).await.map_err(|e| {
                            Reply::from(tern_store::StoreError::Io {
                                context: path.display().to_string(),
                                source: e,
                            })
                        })?;
                        &loaded
                    }
                    Raw::Bytes(bytes) => bytes,
                };
                let bytes = if section.binary {
                    Cow::Owned(binary_bytes(raw, meta, &section.path)?)
                } else {
                    section_bytes(raw, meta, section)
                };
                let bytes = match section.partial {
                    // RFC 9051 §6.4.5: <origin.count>; the response names the origin.
                    Some((origin, count)) => {
                        s.out.raw(b"<").num(origin).raw(b">");
                        let start = (origin as usize).min(bytes.len());
                        let end = start.saturating_add(count as usize).min(bytes.len());
                        Cow::Owned(bytes[start..end].to_vec())
                    }
                    None => bytes,
                };
                s.out.raw(b" ");
                if bytes.is_empty() && section_is_missing(meta, section) {
                    s.out.raw(b"NIL");
                } else if section.binary && bytes.contains(&0) {
                    // RFC 3516 §4.2: binary content goes in a literal8.
                    s.out.raw(b"~").literal(&bytes);
                } else {
                    s.out.literal(&bytes);
                }
            }
        }
    }
    if add_flags {
        sep(s);
        s.out.raw(b"FLAGS ").flags(&m.flags, false);
    }
    if condstore && add_flags && !items.iter().any(|i| matches!(i, Item::ModSeq)) {
        s.out.raw(b" MODSEQ (").num(m.modseq).raw(b")");
    }
    s.out.raw(b")").crlf();
    Ok(())
}

async fn stream_file(s: &mut Session, path: &std::path::Path) -> Result<()> {
    s.flush().await.map_err(|_| Reply::already_sent())?;
    let mut file = tokio::fs::File::open(path).await.map_err(|e| {
        Reply::from(tern_store::StoreError::Io {
            context: path.display().to_string(),
            source: e,
        })
    })?;
    let mut buf = vec![0u8; 256 * 1024];
    let timeout = s.server.config.write_timeout;
    loop {
        let n = file.read(&mut buf).await.map_err(|_| Reply::already_sent())?;
        if n == 0 {
            return Ok(());
        }
        let Some(conn) = s.conn.as_mut() else {
            return Err(Reply::already_sent());
        };
        match tokio::time::timeout(timeout, conn.send(&buf[..n])).await {
            Ok(Ok(())) => {}
            _ => return Err(Reply::already_sent()),
        }
    }
}

/// BINARY[path] (RFC 3516 §4.1): the part's content with its transfer encoding
/// undone; the whole message as it is for an empty path.
fn binary_bytes(raw: &[u8], meta: &MessageMetadata, path: &[u32]) -> Result<Vec<u8>> {
    if path.is_empty() {
        return Ok(raw.to_vec());
    }
    let Some(part) = body::find_part(&meta.body, path) else {
        return Ok(Vec::new());
    };
    let content = raw
        .get(part.body_offset as usize..(part.end_offset as usize).min(raw.len()))
        .unwrap_or_default();
    crate::decode::decode(&part.encoding, content)
        .ok_or_else(|| Reply::no(format!("Unknown Content-Transfer-Encoding {}", part.encoding)).code("UNKNOWN-CTE"))
}

fn section_is_missing(meta: &MessageMetadata, section: &SectionItem) -> bool {
    !section.path.is_empty() && body::find_part(&meta.body, &section.path).is_none()
}

/// The bytes a section names (RFC 9051 §6.4.5). A part that does not exist is empty.
fn section_bytes<'a>(raw: &'a [u8], meta: &MessageMetadata, section: &SectionItem) -> Cow<'a, [u8]> {
    let slice = |a: u32, b: u32| Cow::Borrowed(raw.get(a as usize..(b as usize).min(raw.len())).unwrap_or_default());
    let root = &meta.body;
    match &section.kind {
        SectionKind::Full if section.path.is_empty() => Cow::Borrowed(raw),
        SectionKind::Full => match body::find_part(root, &section.path) {
            Some(part) => slice(part.body_offset, part.end_offset),
            None => Cow::Borrowed(&[]),
        },
        SectionKind::Mime => match body::find_part(root, &section.path) {
            Some(part) => slice(part.header_offset, part.body_offset),
            None => Cow::Borrowed(&[]),
        },
        SectionKind::Header | SectionKind::HeaderFields(..) | SectionKind::Text => {
            let Some(msg) = body::message_of(root, &section.path) else {
                return Cow::Borrowed(&[]);
            };
            let (header_start, body_start) = if section.path.is_empty() {
                (0, msg.body_offset.max(meta.header_size))
            } else {
                (msg.header_offset, msg.body_offset)
            };
            match &section.kind {
                SectionKind::Header => slice(header_start, body_start),
                SectionKind::Text => slice(
                    body_start,
                    if section.path.is_empty() {
                        raw.len() as u32
                    } else {
                        msg.end_offset
                    },
                ),
                SectionKind::HeaderFields(names, not) => {
                    let header = body::header_block(raw, header_start as usize, body_start as usize);
                    Cow::Owned(body::header_fields(header, names, *not))
                }
                _ => Cow::Borrowed(&[]),
            }
        }
    }
}

fn items_of(names: MacroOrMessageDataItemNames<'_>) -> Result<Vec<Item>> {
    let names = match names {
        // RFC 9051 §6.4.5 macros.
        MacroOrMessageDataItemNames::Macro(m) => match m {
            Macro::Fast => vec![Item::Flags, Item::InternalDate, Item::Size],
            Macro::All => vec![Item::Flags, Item::InternalDate, Item::Size, Item::Envelope],
            Macro::Full => vec![Item::Flags, Item::InternalDate, Item::Size, Item::Envelope, Item::Body],
            _ => return Err(Reply::bad("Unknown FETCH macro")),
        },
        MacroOrMessageDataItemNames::MessageDataItemNames(list) => {
            let mut items = Vec::with_capacity(list.len());
            for name in list {
                items.push(item_of(name)?);
            }
            items
        }
    };
    Ok(names)
}

fn item_of(name: MessageDataItemName<'_>) -> Result<Item> {
    use MessageDataItemName as N;
    Ok(match name {
        N::Uid => Item::Uid,
        N::Flags => Item::Flags,
        N::InternalDate => Item::InternalDate,
        N::Rfc822Size => Item::Size,
        N::Envelope => Item::Envelope,
        N::Body => Item::Body,
        N::BodyStructure => Item::BodyStructure,
        N::ModSeq => Item::ModSeq,
        // RFC 3501 §6.4.5: RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER],
        // RFC822.TEXT = BODY[TEXT], answered under their own names.
        N::Rfc822 => Item::Section(SectionItem {
            label: "RFC822".into(),
            path: Vec::new(),
            kind: SectionKind::Full,
            partial: None,
            sets_seen: true,
            binary: false,
        }),
        N::Rfc822Header => Item::Section(SectionItem {
            label: "RFC822.HEADER".into(),
            path: Vec::new(),
            kind: SectionKind::Header,
            partial: None,
            sets_seen: false,
            binary: false,
        }),
        N::Rfc822Text => Item::Section(SectionItem {
            label: "RFC822.TEXT".into(),
            path: Vec::new(),
            kind: SectionKind::Text,
            partial: None,
            sets_seen: true,
            binary: false,
        }),
        N::BodyExt { section, partial, peek } => {
            let (path, kind, spec) = section_of(section.as_ref());
            Item::Section(SectionItem {
                label: format!("BODY[{spec}]"),
                path,
                kind,
                partial: partial.map(|(o, c)| (o, c.get())),
                sets_seen: !peek,
                binary: false,
            })
        }
        N::Binary { section, partial, peek } => {
            let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
            let spec = path.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
            Item::Section(SectionItem {
                label: format!("BINARY[{spec}]"),
                path,
                kind: SectionKind::Full,
                partial: partial.map(|(o, c)| (o, c.get())),
                sets_seen: !peek,
                binary: true,
            })
        }
        N::BinarySize { section } => Item::BinarySize(section.iter().map(|n| n.get()).collect()),
    })
}

fn part_path(part: &Part) -> Vec<u32> {
    part.0.as_ref().iter().map(|n| n.get()).collect()
}

fn section_of(section: Option<&Section<'_>>) -> (Vec<u32>, SectionKind, String) {
    let dotted = |p: &[u32]| p.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
    let prefix = |p: &[u32]| {
        if p.is_empty() {
            String::new()
        } else {
            format!("{}.", dotted(p))
        }
    };
    let names = |list: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<String> {
        list.iter()
            .map(|n| String::from_utf8_lossy(n.as_ref()).into_owned())
            .collect()
    };
    match section {
        None => (Vec::new(), SectionKind::Full, String::new()),
        Some(Section::Part(p)) => {
            let path = part_path(p);
            let spec = dotted(&path);
            (path, SectionKind::Full, spec)
        }
        Some(Section::Header(p)) => {
            let path = p.as_ref().map(part_path).unwrap_or_default();
            let spec = format!("{}HEADER", prefix(&path));
            (path, SectionKind::Header, spec)
        }
        Some(Section::Text(p)) => {
            let path = p.as_ref().map(part_path).unwrap_or_default();
            let spec = format!("{}TEXT", prefix(&path));
            (path, SectionKind::Text, spec)
        }
        Some(Section::Mime(p)) => {
            let path = part_path(p);
            let spec = format!("{}MIME", prefix(&path));
            (path, SectionKind::Mime, spec)
        }
        Some(Section::HeaderFields(p, list)) | Some(Section::HeaderFieldsNot(p, list)) => {
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            let path = p.as_ref().map(part_path).unwrap_or_default();
            let list = names(list.as_ref());
            let spec = format!(
                "{}HEADER.FIELDS{} ({})",
                prefix(&path),
                if not { ".NOT" } else { "" },
                list.iter()
                    .map(|n| n.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            (path, SectionKind::HeaderFields(list, not), spec)
        }
    }
}
