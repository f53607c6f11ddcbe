//! The outbound queue and DKIM keys in SQL (schema 4). See `crate::outbound`.

use rusqlite::{Connection, OptionalExtension, params};

use super::now;
use crate::{DkimAlgorithm, DkimKey, QueueEntry, QueueId, StoreError};

const ENTRY: &str = "SELECT id, sender, size, created, next_attempt, envelope, lease_owner, lease_until FROM queue";

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueEntry> {
    let owner: Option<String> = r.get(6)?;
    let until: i64 = r.get(7)?;
    Ok(QueueEntry {
        id: QueueId(r.get(0)?),
        sender: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        created: r.get(3)?,
        next_attempt: r.get(4)?,
        envelope: r.get(5)?,
        lease: owner.map(|o| (o, until)),
    })
}

/// Inserts the row of a message whose file is already durable.
pub fn insert(
    conn: &Connection,
    sender: &str,
    hash: &[u8],
    size: u64,
    envelope: &str,
    next_attempt: i64,
) -> Result<QueueId, StoreError> {
    conn.execute(
        "INSERT INTO queue (sender, hash, size, created, next_attempt, envelope) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![sender, hash, size as i64, now() as i64, next_attempt, envelope],
    )?;
    Ok(QueueId(conn.last_insert_rowid()))
}

pub fn entries(conn: &Connection) -> Result<Vec<QueueEntry>, StoreError> {
    let mut st = conn.prepare(&format!("{ENTRY} ORDER BY id"))?;
    let rows = st.query_map([], entry_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn entry(conn: &Connection, id: QueueId) -> Result<QueueEntry, StoreError> {
    conn.query_row(&format!("{ENTRY} WHERE id = ?1"), [id.0], entry_row)
        .optional()?
        .ok_or(StoreError::NoSuchQueueEntry(id.0))
}

/// The file hash of an entry's message.
pub fn hash(conn: &Connection, id: QueueId) -> Result<Vec<u8>, StoreError> {
    conn.query_row("SELECT hash FROM queue WHERE id = ?1", [id.0], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NoSuchQueueEntry(id.0))
}

/// Whether any other entry still refers to the same file (the same message queued twice).
pub fn hash_shared(conn: &Connection, hash: &[u8]) -> Result<bool, StoreError> {
    Ok(
        conn.query_row("SELECT count(*) FROM queue WHERE hash = ?1", [hash], |r| {
            r.get::<_, i64>(0)
        })? > 0,
    )
}

pub fn claim(
    conn: &Connection,
    owner: &str,
    until: i64,
    dead_owners: &[String],
    limit: usize,
) -> Result<Vec<QueueEntry>, StoreError> {
    let now = now() as i64;
    let dead = serde_json::to_string(dead_owners).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let ids: Vec<i64> = conn
        .prepare(
            "SELECT id FROM queue WHERE next_attempt <= ?1
               AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until < ?1
                    OR lease_owner IN (SELECT value FROM json_each(?3)))
             ORDER BY next_attempt, id LIMIT ?4",
        )?
        .query_map(params![now, owner, dead, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        conn.execute(
            "UPDATE queue SET lease_owner = ?1, lease_until = ?2 WHERE id = ?3",
            params![owner, until, id],
        )?;
        out.push(entry(conn, QueueId(id))?);
    }
    Ok(out)
}

pub fn update(
    conn: &Connection,
    id: QueueId,
    owner: &str,
    envelope: &str,
    next_attempt: i64,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE queue SET envelope = ?1, next_attempt = ?2, lease_owner = NULL, lease_until = 0
         WHERE id = ?3 AND lease_owner = ?4",
        params![envelope, next_attempt, id.0, owner],
    )?;
    if n == 0 {
        entry(conn, id)?;
        return Err(StoreError::WriteFailed(format!(
            "queue entry {id} is leased by another worker"
        )));
    }
    Ok(())
}

pub fn set_next_attempt(conn: &Connection, id: QueueId, at: i64) -> Result<(), StoreError> {
    if conn.execute("UPDATE queue SET next_attempt = ?1 WHERE id = ?2", params![at, id.0])? == 0 {
        return Err(StoreError::NoSuchQueueEntry(id.0));
    }
    Ok(())
}

/// Deletes the row; returns the file hash if no other entry shares the file.
pub fn delete(conn: &Connection, id: QueueId) -> Result<Option<Vec<u8>>, StoreError> {
    let hash = hash(conn, id)?;
    conn.execute("DELETE FROM queue WHERE id = ?1", [id.0])?;
    Ok((!hash_shared(conn, &hash)?).then_some(hash))
}

pub fn add_dkim_key(conn: &Connection, key: &DkimKey) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, created, active)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            key.domain,
            key.selector,
            key.algorithm.name(),
            key.private_key,
            key.public_key,
            key.created,
            key.active
        ],
    )?;
    Ok(())
}

pub fn dkim_keys(conn: &Connection, domain: Option<&str>) -> Result<Vec<DkimKey>, StoreError> {
    let mut st = conn.prepare(
        "SELECT domain, selector, algorithm, private_key, public_key, created, active FROM dkim_keys
         WHERE ?1 IS NULL OR domain = ?1 ORDER BY domain, created, selector",
    )?;
    let rows = st
        .query_map([domain], |r| {
            let algorithm: String = r.get(2)?;
            Ok(DkimKey {
                domain: r.get(0)?,
                selector: r.get(1)?,
                algorithm: DkimAlgorithm::parse(&algorithm).unwrap_or(DkimAlgorithm::RsaSha256),
                private_key: r.get(3)?,
                public_key: r.get(4)?,
                created: r.get(5)?,
                active: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn set_dkim_active(conn: &Connection, domain: &str, selector: &str, active: bool) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE dkim_keys SET active = ?1 WHERE domain = ?2 AND selector = ?3",
        params![active, domain, selector],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchDkimKey(domain.into(), selector.into()));
    }
    Ok(())
}

pub fn delete_dkim_key(conn: &Connection, domain: &str, selector: &str) -> Result<(), StoreError> {
    let n = conn.execute(
        "DELETE FROM dkim_keys WHERE domain = ?1 AND selector = ?2",
        params![domain, selector],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchDkimKey(domain.into(), selector.into()));
    }
    Ok(())
}
