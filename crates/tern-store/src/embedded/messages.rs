//! Messages in SQL: append, flags, copy, move, expunge, CONDSTORE/QRESYNC changes and
//! full-text search. Every function runs inside the caller's transaction and keeps the
//! mailbox row's counters, UIDNEXT and HIGHESTMODSEQ in step with the messages.

use rusqlite::{Connection, OptionalExtension, params};

use super::now;
use crate::blob::{BlobHash, BlobStore};
use crate::changes::{ChangeEvent, ChangeKind};
use crate::metadata::MessageMetadata;
use crate::{
    AccountId, Appended, Changes, CopyResult, Expunge, FlagOp, Flags, FlagsUpdate, Mailbox, MailboxId, MessageSummary,
    ModSeq, StoreError, SystemFlags, TextField, Uid,
};

/// Bodies up to this size are stored in the database (group-committed with their rows);
/// larger ones as blob files. See docs/architecture.md for the measurements behind it.
pub const INLINE_MAX: usize = 256 * 1024;

/// A message made ready outside the write transaction: parsed, hashed, and, if it is
/// stored as a file, that file durable.
#[derive(Clone)]
pub struct Prepared {
    pub raw: Vec<u8>,
    pub hash: BlobHash,
    pub metadata: MessageMetadata,
    pub metadata_json: String,
    pub flags: Flags,
    pub internal_date: i64,
    pub pop3_uidl: Option<String>,
    pub migrated_from: Option<crate::MigrationOrigin>,
    /// Kept as a file whatever its size: a delivery to several accounts links one file
    /// into each instead of storing the bytes once per account in the database.
    pub as_file: bool,
}

impl Prepared {
    pub fn new(message: crate::NewMessage) -> Result<Prepared, StoreError> {
        let crate::NewMessage {
            raw,
            flags,
            internal_date,
            pop3_uidl,
            migrated_from,
        } = message;
        if raw.is_empty() {
            return Err(StoreError::EmptyMessage);
        }
        let metadata = MessageMetadata::parse(&raw);
        let metadata_json = serde_json::to_string(&metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Prepared {
            hash: crate::blob::hash(&raw),
            raw,
            metadata,
            metadata_json,
            flags,
            internal_date: internal_date.unwrap_or_else(|| now() as i64),
            pop3_uidl,
            migrated_from,
            as_file: false,
        })
    }

    /// Whether the body goes into the database rather than a blob file.
    pub fn inline(&self) -> bool {
        !self.as_file && self.raw.len() <= INLINE_MAX
    }
}

/// The mailbox's row inside the transaction, with the account it belongs to.
struct Target {
    mailbox: Mailbox,
}

fn load(conn: &Connection, id: MailboxId) -> Result<Target, StoreError> {
    Ok(Target {
        mailbox: super::mailboxes::by_id(conn, id)?,
    })
}

/// Counter deltas for a mailbox row.
#[derive(Default)]
struct Delta {
    messages: i64,
    unseen: i64,
    deleted: i64,
    size: i64,
}

impl Delta {
    fn add(&mut self, flags: SystemFlags, size: u64, sign: i64) {
        self.messages += sign;
        self.unseen += sign * i64::from(!flags.contains(SystemFlags::SEEN));
        self.deleted += sign * i64::from(flags.contains(SystemFlags::DELETED));
        self.size += sign * size as i64;
    }
}

fn update_mailbox(
    conn: &Connection,
    id: MailboxId,
    d: &Delta,
    uidnext: Option<Uid>,
    modseq: Option<ModSeq>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE mailboxes SET messages = messages + ?2, unseen = unseen + ?3, deleted = deleted + ?4,
            size = size + ?5, uidnext = COALESCE(?6, uidnext), highest_modseq = COALESCE(?7, highest_modseq)
         WHERE id = ?1",
    )?
    .execute(params![
        id.0,
        d.messages,
        d.unseen,
        d.deleted,
        d.size,
        uidnext,
        modseq.map(|m| m as i64)
    ])?;
    Ok(())
}

fn check_quota(conn: &Connection, account: AccountId, adding: u64) -> Result<(), StoreError> {
    let (quota, used): (Option<i64>, i64) = conn
        .prepare_cached("SELECT quota, (SELECT COALESCE(SUM(size), 0) FROM mailboxes WHERE account_id = ?1) FROM accounts WHERE id = ?1")?
        .query_row([account.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if let Some(limit) = quota
        && used as u64 + adding > limit as u64
    {
        return Err(StoreError::QuotaExceeded {
            used: used as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

fn keywords_column(flags: &Flags) -> String {
    flags.keywords.join(" ")
}

fn flags_from(system: u8, keywords: &str) -> Flags {
    Flags {
        system: SystemFlags(system),
        keywords: keywords
            .split(' ')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// Finds or creates the blob row for a prepared message, taking one reference. A new
/// blob's text is queued in `index` for the full-text index.
fn reference_blob(
    conn: &Connection,
    blobs: &BlobStore,
    account: AccountId,
    p: &mut Prepared,
    index: &mut Vec<(i64, String, String)>,
) -> Result<i64, StoreError> {
    let existing: Option<i64> = conn
        .prepare_cached("UPDATE blobs SET refs = refs + 1 WHERE account_id = ?1 AND hash = ?2 RETURNING id")?
        .query_row(params![account.0, &p.hash[..]], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    // A new blob row. A large body's file was made durable when the message was
    // prepared, unless an expunge committed in between removed an identical, then
    // unreferenced, file: put() checks and writes it again if so.
    if !p.inline() {
        blobs.put(account, &p.hash, &p.raw)?;
    }
    let m = &p.metadata;
    conn.prepare_cached(
        "INSERT INTO blobs (account_id, hash, size, refs, metadata, sent_date, base_subject, message_id)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        account.0,
        &p.hash[..],
        p.raw.len() as i64,
        p.metadata_json,
        m.sent_date,
        m.base_subject,
        m.message_id
    ])?;
    let id = conn.last_insert_rowid();
    if p.inline() {
        conn.prepare_cached("INSERT INTO blob_bodies (blob_id, data) VALUES (?1, ?2)")?
            .execute(params![id, &p.raw])?;
    }
    index.push((
        id,
        std::mem::take(&mut p.metadata.index_headers),
        std::mem::take(&mut p.metadata.index_body),
    ));
    Ok(id)
}

/// A blob whose last reference went: its index row goes, and its file if it has one.
#[derive(Debug, Clone)]
pub struct Removed {
    pub blob_id: i64,
    pub file: Option<(AccountId, BlobHash)>,
}

/// Drops one reference to a blob; says what to clean up if nothing refers to it any more.
fn release_blob(conn: &Connection, blob_id: i64) -> Result<Option<Removed>, StoreError> {
    let (account, hash, refs): (i64, Vec<u8>, i64) = conn
        .prepare_cached("UPDATE blobs SET refs = refs - 1 WHERE id = ?1 RETURNING account_id, hash, refs")?
        .query_row([blob_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if refs > 0 {
        return Ok(None);
    }
    conn.prepare_cached("DELETE FROM blobs WHERE id = ?1")?
        .execute([blob_id])?;
    if conn
        .prepare_cached("DELETE FROM blob_bodies WHERE blob_id = ?1")?
        .execute([blob_id])?
        > 0
    {
        return Ok(Some(Removed { blob_id, file: None }));
    }
    let hash: BlobHash = hash
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("blob {blob_id} has a malformed hash")))?;
    Ok(Some(Removed {
        blob_id,
        file: Some((AccountId(account), hash)),
    }))
}

/// What an append leaves: the APPENDUID data, the event, and text to index.
pub struct AppendOutcome {
    pub appended: Vec<Appended>,
    pub event: ChangeEvent,
    pub index: Vec<(i64, String, String)>,
}

pub fn append(
    conn: &Connection,
    blobs: &BlobStore,
    mailbox: MailboxId,
    prepared: &mut [Prepared],
) -> Result<AppendOutcome, StoreError> {
    let t = load(conn, mailbox)?;
    let m = &t.mailbox;
    check_quota(conn, m.account, prepared.iter().map(|p| p.raw.len() as u64).sum())?;
    let modseq = m.highest_modseq + 1;
    let saved = now() as i64;
    let mut uid = m.uidnext;
    let mut delta = Delta::default();
    let mut out = Vec::with_capacity(prepared.len());
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, blob_id, modseq, flags, keywords, internal_date, save_date, size,
                               sort_from, sort_subject)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut index = Vec::new();
    for p in prepared.iter_mut() {
        let blob_id = reference_blob(conn, blobs, m.account, p, &mut index)?;
        insert.execute(params![
            m.id.0,
            uid,
            blob_id,
            modseq as i64,
            p.flags.system.0,
            keywords_column(&p.flags),
            p.internal_date,
            saved,
            p.raw.len() as i64,
            p.metadata.envelope.sort_from(),
            p.metadata.base_subject.to_lowercase()
        ])?;
        if let Some(uidl) = &p.pop3_uidl {
            conn.prepare_cached("INSERT INTO pop3_uidls (mailbox_id, uid, uidl) VALUES (?1, ?2, ?3)")?
                .execute(params![m.id.0, uid, uidl])?;
        }
        if let Some(origin) = &p.migrated_from {
            super::migration::record_origin(conn, origin, uid, modseq)?;
        }
        delta.add(p.flags.system, p.raw.len() as u64, 1);
        out.push(Appended {
            uidvalidity: m.uidvalidity,
            uid,
            modseq,
        });
        uid = uid
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("mailbox {:?} ran out of UIDs", m.name)))?;
    }
    update_mailbox(conn, m.id, &delta, Some(uid), Some(modseq))?;
    let event = ChangeEvent {
        account: m.account,
        mailbox: m.id,
        modseq,
        kind: ChangeKind::Appended(out.iter().map(|a| a.uid).collect()),
    };
    Ok(AppendOutcome {
        appended: out,
        event,
        index,
    })
}

const SUMMARY: &str = "SELECT uid, modseq, flags, keywords, internal_date, save_date, size, blob_id FROM messages";

pub(super) struct Row {
    pub summary: MessageSummary,
    blob_id: i64,
}

pub(super) fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        summary: MessageSummary {
            uid: r.get(0)?,
            modseq: r.get::<_, i64>(1)? as u64,
            flags: flags_from(r.get(2)?, &r.get::<_, String>(3)?),
            internal_date: r.get(4)?,
            save_date: r.get(5)?,
            size: r.get::<_, i64>(6)? as u64,
        },
        blob_id: r.get(7)?,
    })
}

pub fn list(conn: &Connection, mailbox: MailboxId) -> Result<Vec<MessageSummary>, StoreError> {
    let mut st = conn.prepare_cached(&format!("{SUMMARY} WHERE mailbox_id = ?1 ORDER BY uid"))?;
    let rows = st
        .query_map([mailbox.0], |r| summary_row(r).map(|r| r.summary))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Runs `sql` over the UID range the given UIDs span and reads the rows of the wanted
/// ones: one range scan, so `1:*` on a large mailbox costs one pass, not one lookup per
/// UID. `sql` selects the UID first and takes the mailbox and the range as ?1, ?2, ?3.
fn scan_uids<T>(
    conn: &Connection,
    sql: &str,
    mailbox: MailboxId,
    uids: &[Uid],
    mut read: impl FnMut(Uid, &rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut wanted = uids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let (Some(&lo), Some(&hi)) = (wanted.first(), wanted.last()) else {
        return Ok(Vec::new());
    };
    let mut st = conn.prepare_cached(sql)?;
    let mut rows = st.query(params![mailbox.0, lo, hi])?;
    let mut out = Vec::with_capacity(wanted.len());
    while let Some(row) = rows.next()? {
        let uid: Uid = row.get(0)?;
        if wanted.binary_search(&uid).is_ok() {
            out.push(read(uid, row)?);
        }
    }
    Ok(out)
}

fn rows(conn: &Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Row>, StoreError> {
    let sql = format!("{SUMMARY} WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid");
    scan_uids(conn, &sql, mailbox, uids, |_, r| Ok(summary_row(r)?))
}

pub fn by_uid(conn: &Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<MessageSummary>, StoreError> {
    Ok(rows(conn, mailbox, uids)?.into_iter().map(|r| r.summary).collect())
}

pub fn metadata(
    conn: &Connection,
    mailbox: MailboxId,
    uids: &[Uid],
) -> Result<Vec<(Uid, MessageMetadata)>, StoreError> {
    metadata_as(conn, mailbox, uids, |m: MessageMetadata| m)
}

/// Only the envelope part of the stored metadata: serde skips the rest without
/// building it (the body structure is most of the work).
pub fn envelopes(
    conn: &Connection,
    mailbox: MailboxId,
    uids: &[Uid],
) -> Result<Vec<(Uid, crate::metadata::Envelope)>, StoreError> {
    #[derive(serde::Deserialize)]
    struct EnvelopeOnly {
        envelope: crate::metadata::Envelope,
    }
    metadata_as(conn, mailbox, uids, |m: EnvelopeOnly| m.envelope)
}

/// The stored metadata JSON of the given messages, read as `T` and mapped.
fn metadata_as<T: serde::de::DeserializeOwned, U>(
    conn: &Connection,
    mailbox: MailboxId,
    uids: &[Uid],
    map: impl Fn(T) -> U,
) -> Result<Vec<(Uid, U)>, StoreError> {
    let sql = "SELECT m.uid, b.metadata FROM messages m JOIN blobs b ON b.id = m.blob_id
               WHERE m.mailbox_id = ?1 AND m.uid BETWEEN ?2 AND ?3 ORDER BY m.uid";
    scan_uids(conn, sql, mailbox, uids, |uid, row| {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("metadata of UID {uid}: {e}"));
        let json = row.get_ref(1)?.as_str().map_err(|e| corrupt(&e))?;
        let value: T = serde_json::from_str(json).map_err(|e| corrupt(&e))?;
        Ok((uid, map(value)))
    })
}

pub fn content_hashes(conn: &Connection, mailbox: MailboxId) -> Result<Vec<(Uid, BlobHash)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT m.uid, b.hash FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ?1 ORDER BY m.uid",
    )?;
    st.query_map([mailbox.0], |r| Ok((r.get::<_, Uid>(0)?, r.get::<_, Vec<u8>>(1)?)))?
        .map(|row| {
            let (uid, hash) = row?;
            let hash = hash
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("UID {uid} has a malformed content hash")))?;
            Ok((uid, hash))
        })
        .collect()
}

/// The POP3 UIDLs that migrations gave to messages of a mailbox, in UID order.
pub fn pop3_uidls(conn: &Connection, mailbox: MailboxId) -> Result<Vec<(Uid, String)>, StoreError> {
    let mut st = conn.prepare_cached("SELECT uid, uidl FROM pop3_uidls WHERE mailbox_id = ?1 ORDER BY uid")?;
    let rows = st.query_map([mailbox.0], |r| Ok((r.get::<_, Uid>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Where a message's bytes are.
pub enum Body {
    Inline(Vec<u8>),
    File(AccountId, BlobHash),
}

/// The bodies of several messages in one scan, in UID order.
pub fn bodies(conn: &Connection, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(Uid, Body)>, StoreError> {
    let sql = "SELECT m.uid, b.id, b.account_id, b.hash, d.data FROM messages m JOIN blobs b ON b.id = m.blob_id
               LEFT JOIN blob_bodies d ON d.blob_id = b.id
               WHERE m.mailbox_id = ?1 AND m.uid BETWEEN ?2 AND ?3 ORDER BY m.uid";
    scan_uids(conn, sql, mailbox, uids, |uid, row| {
        let (blob_id, account, hash, data): (i64, i64, Vec<u8>, Option<Vec<u8>>) =
            (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
        let body = match data {
            Some(data) => Body::Inline(data),
            None => Body::File(
                AccountId(account),
                hash.try_into()
                    .map_err(|_| StoreError::Corrupt(format!("blob {blob_id} has a malformed hash")))?,
            ),
        };
        Ok((uid, body))
    })
}

pub fn body(conn: &Connection, mailbox: MailboxId, uid: Uid) -> Result<Body, StoreError> {
    bodies(conn, mailbox, &[uid])?
        .pop()
        .map(|(_, body)| body)
        .ok_or(StoreError::NoSuchMessage(uid))
}

pub fn store_flags(
    conn: &Connection,
    mailbox: MailboxId,
    uids: &[Uid],
    op: FlagOp,
    change: &Flags,
    unchanged_since: Option<ModSeq>,
) -> Result<(FlagsUpdate, Option<ChangeEvent>), StoreError> {
    let t = load(conn, mailbox)?;
    let modseq = t.mailbox.highest_modseq + 1;
    let mut out = FlagsUpdate::default();
    let mut changed = Vec::new();
    let mut delta = Delta::default();
    let mut update = conn.prepare_cached(
        "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5 WHERE mailbox_id = ?1 AND uid = ?2",
    )?;
    for r in rows(conn, mailbox, uids)? {
        let s = r.summary;
        // RFC 7162 §3.1.3: a message modified after UNCHANGEDSINCE is not touched.
        if unchanged_since.is_some_and(|u| s.modseq > u) {
            out.modified.push(s.uid);
            continue;
        }
        let new = s.flags.apply(op, change);
        if new == s.flags {
            out.updated.push((s.uid, new, s.modseq));
            continue;
        }
        update.execute(params![
            mailbox.0,
            s.uid,
            new.system.0,
            keywords_column(&new),
            modseq as i64
        ])?;
        delta.add(s.flags.system, 0, -1);
        delta.add(new.system, 0, 1);
        changed.push(s.uid);
        out.updated.push((s.uid, new, modseq));
    }
    if changed.is_empty() {
        return Ok((out, None));
    }
    update_mailbox(conn, mailbox, &delta, None, Some(modseq))?;
    let event = ChangeEvent {
        account: t.mailbox.account,
        mailbox,
        modseq,
        kind: ChangeKind::FlagsChanged(changed),
    };
    Ok((out, Some(event)))
}

pub fn copy(
    conn: &Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> Result<(CopyResult, Vec<ChangeEvent>), StoreError> {
    let source = load(conn, from)?.mailbox;
    let target = load(conn, to)?.mailbox;
    if source.account != target.account {
        return Err(StoreError::NoSuchMailbox(format!(
            "#{} (not in the same account)",
            to.0
        )));
    }
    let found = rows(conn, from, uids)?;
    if found.is_empty() {
        return Ok((
            CopyResult {
                uidvalidity: target.uidvalidity,
                mapping: Vec::new(),
            },
            Vec::new(),
        ));
    }
    check_quota(conn, target.account, found.iter().map(|r| r.summary.size).sum())?;
    let modseq = target.highest_modseq + 1;
    let saved = now() as i64;
    let mut uid = target.uidnext;
    let mut delta = Delta::default();
    let mut mapping = Vec::with_capacity(found.len());
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, blob_id, modseq, flags, keywords, internal_date, save_date, size,
                               sort_from, sort_subject)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, sort_from, sort_subject
         FROM messages WHERE mailbox_id = ?10 AND uid = ?11",
    )?;
    let mut reference = conn.prepare_cached("UPDATE blobs SET refs = refs + 1 WHERE id = ?1")?;
    for r in &found {
        let s = &r.summary;
        reference.execute([r.blob_id])?;
        insert.execute(params![
            to.0,
            uid,
            r.blob_id,
            modseq as i64,
            s.flags.system.0,
            keywords_column(&s.flags),
            s.internal_date,
            saved,
            s.size as i64,
            from.0,
            s.uid
        ])?;
        delta.add(s.flags.system, s.size, 1);
        mapping.push((s.uid, uid));
        uid = uid
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("mailbox {:?} ran out of UIDs", target.name)))?;
    }
    update_mailbox(conn, to, &delta, Some(uid), Some(modseq))?;
    let event = ChangeEvent {
        account: target.account,
        mailbox: to,
        modseq,
        kind: ChangeKind::Appended(mapping.iter().map(|m| m.1).collect()),
    };
    Ok((
        CopyResult {
            uidvalidity: target.uidvalidity,
            mapping,
        },
        vec![event],
    ))
}

/// Removes rows and records them in the expunge history with one new modseq.
/// What an expunge did: the UIDs removed, the blobs nothing uses any more, the event.
#[derive(Default)]
pub struct Expunged {
    pub uids: Vec<Uid>,
    pub released: Vec<Removed>,
    pub event: Option<ChangeEvent>,
}

fn remove(conn: &Connection, mailbox: &Mailbox, victims: &[Row]) -> Result<Expunged, StoreError> {
    if victims.is_empty() {
        return Ok(Expunged::default());
    }
    let modseq = mailbox.highest_modseq + 1;
    let mut delta = Delta::default();
    let mut unreferenced = Vec::new();
    let mut delete = conn.prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")?;
    let mut history =
        conn.prepare_cached("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)")?;
    let mut forget_uidl = conn.prepare_cached("DELETE FROM pop3_uidls WHERE mailbox_id = ?1 AND uid = ?2")?;
    for r in victims {
        delete.execute(params![mailbox.id.0, r.summary.uid])?;
        forget_uidl.execute(params![mailbox.id.0, r.summary.uid])?;
        history.execute(params![mailbox.id.0, r.summary.uid, modseq as i64])?;
        delta.add(r.summary.flags.system, r.summary.size, -1);
        unreferenced.extend(release_blob(conn, r.blob_id)?);
    }
    update_mailbox(conn, mailbox.id, &delta, None, Some(modseq))?;
    let uids: Vec<Uid> = victims.iter().map(|r| r.summary.uid).collect();
    let event = ChangeEvent {
        account: mailbox.account,
        mailbox: mailbox.id,
        modseq,
        kind: ChangeKind::Expunged(uids.clone()),
    };
    Ok(Expunged {
        uids,
        released: unreferenced,
        event: Some(event),
    })
}

pub fn expunge(conn: &Connection, mailbox: MailboxId, which: &Expunge) -> Result<Expunged, StoreError> {
    let m = load(conn, mailbox)?.mailbox;
    let victims: Vec<Row> = match which {
        Expunge::AllDeleted => {
            let mut st =
                conn.prepare_cached(&format!("{SUMMARY} WHERE mailbox_id = ?1 AND flags & ?2 ORDER BY uid"))?;
            st.query_map(params![mailbox.0, SystemFlags::DELETED.0], summary_row)?
                .collect::<Result<_, _>>()?
        }
        Expunge::DeletedAmong(uids) => rows(conn, mailbox, uids)?
            .into_iter()
            .filter(|r| r.summary.flags.is_deleted())
            .collect(),
        Expunge::Uids(uids) => rows(conn, mailbox, uids)?,
    };
    remove(conn, &m, &victims)
}

pub fn move_messages(
    conn: &Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
) -> Result<(CopyResult, Vec<ChangeEvent>, Vec<Removed>), StoreError> {
    let (result, mut events) = copy(conn, from, uids, to)?;
    let moved: Vec<Uid> = result.mapping.iter().map(|m| m.0).collect();
    let expunged = expunge(conn, from, &Expunge::Uids(moved))?;
    events.extend(expunged.event);
    Ok((result, events, expunged.released))
}

/// Moves every message of `source` into `target` keeping their UIDs (INBOX rename:
/// `target` is new and empty, so its UIDs are free).
pub fn move_all(conn: &Connection, source: &Mailbox, target: &Mailbox) -> Result<Vec<ChangeEvent>, StoreError> {
    let mut st = conn.prepare_cached(&format!("{SUMMARY} WHERE mailbox_id = ?1 ORDER BY uid"))?;
    let all: Vec<Row> = st.query_map([source.id.0], summary_row)?.collect::<Result<_, _>>()?;
    if all.is_empty() {
        return Ok(Vec::new());
    }
    conn.execute(
        "INSERT INTO messages (mailbox_id, uid, blob_id, modseq, flags, keywords, internal_date, save_date, size,
                               sort_from, sort_subject)
         SELECT ?2, uid, blob_id, 1, flags, keywords, internal_date, save_date, size, sort_from, sort_subject
         FROM messages WHERE mailbox_id = ?1",
        params![source.id.0, target.id.0],
    )?;
    // One reference per message, also when several messages share a body.
    conn.execute(
        "UPDATE blobs SET refs = refs + (SELECT count(*) FROM messages WHERE mailbox_id = ?1 AND blob_id = blobs.id)
         WHERE id IN (SELECT blob_id FROM messages WHERE mailbox_id = ?1)",
        [source.id.0],
    )?;
    let mut delta = Delta::default();
    for r in &all {
        delta.add(r.summary.flags.system, r.summary.size, 1);
    }
    update_mailbox(
        conn,
        target.id,
        &delta,
        Some(source.uidnext),
        Some(target.highest_modseq + 1),
    )?;
    conn.execute(
        "UPDATE messages SET modseq = ?2 WHERE mailbox_id = ?1",
        params![target.id.0, (target.highest_modseq + 1) as i64],
    )?;
    let appended = ChangeEvent {
        account: target.account,
        mailbox: target.id,
        modseq: target.highest_modseq + 1,
        kind: ChangeKind::Appended(all.iter().map(|r| r.summary.uid).collect()),
    };
    let expunged = remove(conn, source, &all)?;
    debug_assert!(
        expunged.released.is_empty(),
        "the target holds a reference to every blob"
    );
    Ok(std::iter::once(appended).chain(expunged.event).collect())
}

/// Deletes every message of a mailbox (DELETE); returns blobs left unreferenced.
pub fn delete_all(conn: &Connection, mailbox: &Mailbox) -> Result<Vec<Removed>, StoreError> {
    let mut st = conn.prepare_cached("SELECT blob_id FROM messages WHERE mailbox_id = ?1")?;
    let blob_ids: Vec<i64> = st.query_map([mailbox.id.0], |r| r.get(0))?.collect::<Result<_, _>>()?;
    conn.execute("DELETE FROM messages WHERE mailbox_id = ?1", [mailbox.id.0])?;
    let mut unreferenced = Vec::new();
    for id in blob_ids {
        unreferenced.extend(release_blob(conn, id)?);
    }
    Ok(unreferenced)
}

pub fn changes_since(conn: &Connection, mailbox: MailboxId, modseq: ModSeq) -> Result<Changes, StoreError> {
    let mut st = conn.prepare_cached(&format!("{SUMMARY} WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid"))?;
    let changed = st
        .query_map(params![mailbox.0, modseq as i64], |r| summary_row(r).map(|r| r.summary))?
        .collect::<Result<_, _>>()?;
    let mut st = conn.prepare_cached("SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid")?;
    let vanished = st
        .query_map(params![mailbox.0, modseq as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Changes { changed, vanished })
}

/// Turns user words into an FTS5 query: each word quoted (so FTS5 syntax characters in
/// it are literal) and matched as a prefix; all words must match.
fn fts_query(field: TextField, query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\"*"))
        .collect();
    if words.is_empty() {
        return None;
    }
    let column = match field {
        TextField::Headers => "{headers}",
        TextField::Body => "{body}",
        TextField::Text => "{headers body}",
    };
    Some(format!("{column} : ({})", words.join(" AND ")))
}

pub fn search_text(
    conn: &Connection,
    mailbox: MailboxId,
    field: TextField,
    query: &str,
) -> Result<Vec<Uid>, StoreError> {
    let Some(q) = fts_query(field, query) else {
        // Nothing to look for matches everything, as an empty substring would.
        return Ok(list(conn, mailbox)?.into_iter().map(|m| m.uid).collect());
    };
    let mut st = conn.prepare_cached(
        // From the hits to their messages (messages_blob), so the cost follows the hits,
        // not the size of the mailbox.
        "SELECT m.uid FROM idx.fts f JOIN messages m ON m.blob_id = f.rowid
         WHERE fts MATCH ?2 AND m.mailbox_id = ?1 ORDER BY m.uid",
    )?;
    let uids = st
        .query_map(params![mailbox.0, q], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(uids)
}
