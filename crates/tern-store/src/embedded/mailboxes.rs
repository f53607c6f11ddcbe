//! Mailboxes in SQL: names and hierarchy (RFC 9051 §5.1), special use (RFC 6154),
//! subscriptions, UIDVALIDITY, and the counters STATUS reads.

use rusqlite::{Connection, OptionalExtension, params};

use super::messages;
use crate::changes::{ChangeEvent, ChangeKind};
use crate::{AccountId, DELIMITER, INBOX, Mailbox, MailboxId, SpecialUse, StoreError};

/// Longest mailbox name accepted, in bytes; deep enough for any real folder tree.
const MAX_NAME: usize = 1024;

/// Checks a mailbox name and returns it in canonical form: `inbox` in any case becomes
/// `INBOX` (RFC 9051 §5.1), also as the first level of a hierarchy.
pub fn canonical_name(name: &str) -> Result<String, StoreError> {
    let bad = |why: &str| StoreError::InvalidMailboxName(format!("invalid mailbox name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad("it is too long"));
    }
    if name.starts_with(DELIMITER) || name.ends_with(DELIMITER) || name.contains("//") {
        return Err(bad("a hierarchy level is empty"));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(bad("control characters, '*' and '%' are not allowed"));
    }
    let (first, rest) = match name.split_once(DELIMITER) {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    Ok(if first.eq_ignore_ascii_case(INBOX) {
        match rest {
            Some(r) => format!("{INBOX}{DELIMITER}{r}"),
            None => INBOX.to_string(),
        }
    } else {
        name.to_string()
    })
}

const SELECT: &str = "SELECT id, account_id, name, special_use, subscribed, uidvalidity, uidnext,
    highest_modseq, messages, unseen, deleted, size FROM mailboxes";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    Ok(Mailbox {
        id: MailboxId(r.get(0)?),
        account: AccountId(r.get(1)?),
        name: r.get(2)?,
        special_use: r
            .get::<_, Option<String>>(3)?
            .as_deref()
            .and_then(SpecialUse::from_attribute),
        subscribed: r.get(4)?,
        uidvalidity: r.get(5)?,
        uidnext: r.get(6)?,
        highest_modseq: r.get::<_, i64>(7)? as u64,
        messages: r.get(8)?,
        unseen: r.get(9)?,
        deleted: r.get(10)?,
        size: r.get::<_, i64>(11)? as u64,
    })
}

pub fn list(conn: &Connection, account: AccountId) -> Result<Vec<Mailbox>, StoreError> {
    let mut st = conn.prepare_cached(&format!("{SELECT} WHERE account_id = ?1 ORDER BY name"))?;
    let rows = st.query_map([account.0], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn by_name(conn: &Connection, account: AccountId, name: &str) -> Result<Mailbox, StoreError> {
    let name = canonical_name(name)?;
    conn.prepare_cached(&format!("{SELECT} WHERE account_id = ?1 AND name = ?2"))?
        .query_row(params![account.0, name], row)
        .optional()?
        .ok_or(StoreError::NoSuchMailbox(name))
}

pub fn by_id(conn: &Connection, id: MailboxId) -> Result<Mailbox, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id.0], row)
        .optional()?
        .ok_or_else(|| StoreError::NoSuchMailbox(format!("#{}", id.0)))
}

/// A fresh UIDVALIDITY: strictly greater than any this store handed out before, so a
/// mailbox deleted and created again under the same name never looks like the old one
/// to a client's cache (RFC 9051 §2.3.1.1).
fn next_uidvalidity(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.query_row(
        "UPDATE meta SET value = max(value + 1, ?1) WHERE key = 'next_uidvalidity' RETURNING value",
        [super::now() as i64],
        |r| r.get(0),
    )?;
    // UIDVALIDITY is a non-zero 32-bit number (RFC 9051 §2.3.1.1).
    Ok((v as u64 % u32::MAX as u64).max(1) as u32)
}

/// Inserts one mailbox row; the name must be canonical and free.
pub fn insert(
    conn: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
    subscribed: bool,
) -> Result<Mailbox, StoreError> {
    let uidvalidity = next_uidvalidity(conn)?;
    conn.execute(
        "INSERT INTO mailboxes (account_id, name, special_use, subscribed, uidvalidity) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            account.0,
            name,
            special_use.map(SpecialUse::attribute),
            subscribed,
            uidvalidity
        ],
    )?;
    by_id(conn, MailboxId(conn.last_insert_rowid()))
}

fn exists(conn: &Connection, account: AccountId, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM mailboxes WHERE account_id = ?1 AND name = ?2",
            params![account.0, name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn event(m: &Mailbox, kind: ChangeKind) -> ChangeEvent {
    ChangeEvent {
        account: m.account,
        mailbox: m.id,
        modseq: m.highest_modseq,
        kind,
    }
}

/// Creates `name` and any missing parents (RFC 9051 §6.3.4: the server SHOULD create
/// the superior hierarchy).
pub fn create(
    conn: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
) -> Result<(Mailbox, Vec<ChangeEvent>), StoreError> {
    let name = canonical_name(name)?;
    if exists(conn, account, &name)? {
        return Err(StoreError::MailboxExists(name));
    }
    let mut events = Vec::new();
    for (i, _) in name.match_indices(DELIMITER) {
        let parent = &name[..i];
        if !exists(conn, account, parent)? {
            let m = insert(conn, account, parent, None, false)?;
            events.push(event(&m, ChangeKind::MailboxCreated { name: m.name.clone() }));
        }
    }
    let m = insert(conn, account, &name, special_use, false)?;
    events.push(event(&m, ChangeKind::MailboxCreated { name: m.name.clone() }));
    Ok((m, events))
}

fn children(conn: &Connection, account: AccountId, name: &str) -> Result<Vec<Mailbox>, StoreError> {
    let prefix = format!("{name}{DELIMITER}");
    Ok(list(conn, account)?
        .into_iter()
        .filter(|m| m.name.starts_with(&prefix))
        .collect())
}

/// RFC 9051 §6.3.6.
pub fn rename(conn: &Connection, account: AccountId, from: &str, to: &str) -> Result<Vec<ChangeEvent>, StoreError> {
    let source = by_name(conn, account, from)?;
    let to = canonical_name(to)?;
    if exists(conn, account, &to)? {
        return Err(StoreError::MailboxExists(to));
    }
    if to.starts_with(&format!("{}{DELIMITER}", source.name)) {
        return Err(StoreError::InvalidMailboxName(format!(
            "cannot move {:?} inside itself",
            source.name
        )));
    }
    // Parents of the new name come into being as CREATE would make them.
    let mut events = Vec::new();
    if let Some((parent, _)) = to.rsplit_once(DELIMITER)
        && !exists(conn, account, parent)?
    {
        events.extend(create(conn, account, parent, None)?.1);
    }
    if source.name == INBOX {
        // Renaming INBOX moves its messages to a new mailbox and leaves INBOX empty;
        // INBOX's children stay where they are.
        let (target, created) = create(conn, account, &to, None)?;
        events.extend(created);
        let moved = messages::move_all(conn, &source, &target)?;
        events.extend(moved);
        return Ok(events);
    }
    let mut renamed = vec![(source.clone(), to.clone())];
    for child in children(conn, account, &source.name)? {
        let new = format!("{to}{}", &child.name[source.name.len()..]);
        renamed.push((child, new));
    }
    for (m, new) in renamed {
        conn.execute("UPDATE mailboxes SET name = ?1 WHERE id = ?2", params![new, m.id.0])?;
        events.push(event(
            &m,
            ChangeKind::MailboxRenamed {
                from: m.name.clone(),
                to: new,
            },
        ));
    }
    Ok(events)
}

/// RFC 9051 §6.3.5. A mailbox with children is refused (HASCHILDREN, RFC 5530 §3)
/// rather than turned into a \Noselect placeholder: clients handle the error well and
/// nobody is left with a folder they cannot open.
pub fn delete(
    conn: &Connection,
    account: AccountId,
    name: &str,
) -> Result<(Vec<ChangeEvent>, Vec<messages::Removed>), StoreError> {
    let m = by_name(conn, account, name)?;
    if m.name == INBOX {
        return Err(StoreError::ProtectedMailbox(m.name, "deleted"));
    }
    if !children(conn, account, &m.name)?.is_empty() {
        return Err(StoreError::HasChildren(m.name));
    }
    let unreferenced = messages::delete_all(conn, &m)?;
    conn.execute("DELETE FROM expunged WHERE mailbox_id = ?1", [m.id.0])?;
    conn.execute("DELETE FROM mailboxes WHERE id = ?1", [m.id.0])?;
    Ok((
        vec![event(&m, ChangeKind::MailboxDeleted { name: m.name.clone() })],
        unreferenced,
    ))
}

pub fn set_subscribed(
    conn: &Connection,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> Result<Vec<ChangeEvent>, StoreError> {
    let m = by_name(conn, account, name)?;
    conn.execute(
        "UPDATE mailboxes SET subscribed = ?1 WHERE id = ?2",
        params![subscribed, m.id.0],
    )?;
    Ok(vec![event(
        &m,
        ChangeKind::Subscription {
            name: m.name.clone(),
            subscribed,
        },
    )])
}

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("inbox").unwrap(), "INBOX");
        assert_eq!(canonical_name("Inbox/Sub").unwrap(), "INBOX/Sub");
        assert_eq!(canonical_name("Inboxes").unwrap(), "Inboxes");
        assert_eq!(canonical_name("Projekte/Größe").unwrap(), "Projekte/Größe");
        for bad in ["", "/a", "a/", "a//b", "a\u{0}b", "a*", "50%"] {
            assert!(canonical_name(bad).is_err(), "{bad:?}");
        }
    }
}
