//! Webmail's message list in SQL (see `crate::listing`). A page is read in two steps:
//! first the UIDs of the page, from `messages` alone (every order but size walks an
//! index: `messages_arrival`, `messages_from`, `messages_subject`), then the rows of
//! those UIDs with their metadata. Skipping to page 2,000 of a folder thus never reads
//! the metadata of the 100,000 rows before it.

use std::rc::Rc;

use rusqlite::types::Value;
use rusqlite::{Connection, params};

use super::messages::summary_row;
use crate::listing::{ListItem, ListPage, ListQuery, ListSort};
use crate::metadata::AddressItem;
use crate::{MailboxId, StoreError, Uid};

/// The fields of the stored metadata a list row shows; serde skips the rest (the body
/// structure is most of it).
#[derive(serde::Deserialize)]
struct RowMetadata {
    envelope: RowEnvelope,
    sent_date: Option<i64>,
    subject: Option<String>,
    base_subject: String,
    has_attachments: bool,
    preview: String,
}

#[derive(serde::Deserialize)]
struct RowEnvelope {
    from: Vec<AddressItem>,
    to: Vec<AddressItem>,
}

pub fn list_page(conn: &Connection, mailbox: MailboxId, query: &ListQuery) -> Result<ListPage, StoreError> {
    let only: Option<Rc<Vec<Value>>> = query
        .only
        .as_ref()
        .map(|uids| Rc::new(uids.iter().map(|&u| Value::Integer(i64::from(u))).collect()));
    let only_filter = if only.is_some() {
        "AND m.uid IN rarray(?2)"
    } else {
        "AND ?2 IS NULL"
    };
    let subject = query.same_subject.clone();
    let filter = if subject.is_some() {
        format!("{only_filter} AND m.sort_subject = lower(?5)")
    } else {
        format!("{only_filter} AND ?5 IS NULL")
    };
    let dir = if query.descending { "DESC" } else { "ASC" };
    let limit = query.limit as i64;
    let offset = query.offset as i64;
    // (uid, conversation size, unread in conversation) of the page, in order.
    let mut page: Vec<(Uid, u32, u32)> = Vec::with_capacity(query.limit);
    let total = if query.conversations {
        // RFC 5256 §2.1 base subjects group a conversation; a message without a subject
        // is a conversation of its own. SQLite takes the bare column m.uid from the row
        // holding max(internal_date): each group is shown by its newest message.
        let group = "CASE WHEN m.sort_subject = '' THEN 'u' || m.uid ELSE 's' || m.sort_subject END";
        let sql = format!(
            "SELECT m.uid, max(m.internal_date) AS newest, count(*), sum((m.flags & 1) = 0)
             FROM messages m
             WHERE m.mailbox_id = ?1 {filter}
             GROUP BY {group} ORDER BY newest {dir}, m.uid {dir} LIMIT ?3 OFFSET ?4"
        );
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![mailbox.0, only.clone(), limit, offset, subject], |r| {
            Ok((r.get(0)?, r.get(2)?, r.get(3)?))
        })?;
        for row in rows {
            page.push(row?);
        }
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM messages m
             WHERE m.mailbox_id = ?1 {filter} AND ?3 IS NULL AND ?4 IS NULL GROUP BY {group})"
        );
        conn.prepare_cached(&sql)?.query_row(
            params![mailbox.0, only.clone(), None::<i64>, None::<i64>, subject],
            |r| r.get::<_, i64>(0),
        )? as usize
    } else {
        // Each order is an index of `messages` (messages_arrival, messages_from,
        // messages_subject; size sorts the folder's rows, which hold no bodies).
        let key = match query.sort {
            ListSort::Arrival => "m.internal_date",
            ListSort::Size => "m.size",
            ListSort::From => "m.sort_from",
            ListSort::Subject => "m.sort_subject",
        };
        let sql = format!(
            "SELECT m.uid FROM messages m WHERE m.mailbox_id = ?1 {filter}
             ORDER BY {key} {dir}, m.uid {dir} LIMIT ?3 OFFSET ?4"
        );
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![mailbox.0, only.clone(), limit, offset, subject.clone()], |r| {
            r.get(0)
        })?;
        for uid in rows {
            page.push((uid?, 1, 0));
        }
        match &only {
            _ if subject.is_some() => conn
                .prepare_cached(&format!(
                    "SELECT count(*) FROM messages m WHERE m.mailbox_id = ?1 {filter} AND ?3 IS NULL AND ?4 IS NULL"
                ))?
                .query_row(
                    params![mailbox.0, only.clone(), None::<i64>, None::<i64>, subject],
                    |r| r.get::<_, i64>(0),
                )? as usize,
            // The caller's list (search results of this mailbox, just made).
            Some(uids) => uids.len(),
            None => conn
                .prepare_cached("SELECT messages FROM mailboxes WHERE id = ?1")?
                .query_row([mailbox.0], |r| r.get::<_, i64>(0))? as usize,
        }
    };
    let items = rows(conn, mailbox, &page)?;
    Ok(ListPage { total, items })
}

/// The list rows of the given page, in its order.
fn rows(conn: &Connection, mailbox: MailboxId, page: &[(Uid, u32, u32)]) -> Result<Vec<ListItem>, StoreError> {
    // The summary's columns in `summary_row`'s order, then the metadata.
    let mut st = conn.prepare_cached(
        "SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.save_date, m.size, m.blob_id, b.metadata
         FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ?1 AND m.uid = ?2",
    )?;
    let mut items = Vec::with_capacity(page.len());
    for &(uid, conversation_size, conversation_unread) in page {
        let mut rows = st.query(params![mailbox.0, uid])?;
        let Some(r) = rows.next()? else {
            continue; // expunged between the two reads
        };
        let summary = summary_row(r)?.summary;
        let json = r.get_ref(8)?.as_str().map_err(|e| corrupt(uid, &e))?;
        let m: RowMetadata = serde_json::from_str(json).map_err(|e| corrupt(uid, &e))?;
        let unread = if conversation_size > 1 {
            conversation_unread
        } else {
            u32::from(!summary.flags.is_seen())
        };
        items.push(ListItem {
            summary,
            from: m.envelope.from,
            to: m.envelope.to,
            subject: m.subject,
            base_subject: m.base_subject,
            sent_date: m.sent_date,
            has_attachments: m.has_attachments,
            preview: m.preview,
            conversation_size: conversation_size.max(1),
            conversation_unread: unread,
        });
    }
    Ok(items)
}

fn corrupt(uid: Uid, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("metadata of UID {uid}: {e}"))
}
