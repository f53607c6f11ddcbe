//! Migration sources, migrations, their folders and the source → Tern message map, in
//! SQL (schema 3). See `crate::migration` for what each record means.

use rusqlite::{Connection, OptionalExtension, params};

use super::accounts;
use super::now;
use crate::{
    AccountId, MailboxId, MigratedMessage, Migration, MigrationFolder, MigrationFolderId, MigrationId, MigrationOrigin,
    MigrationSource, ModSeq, NewMigration, StoreError, Uid,
};

pub fn put_source(conn: &Connection, source: &MigrationSource) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO migration_sources (name, settings, secret) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, secret = excluded.secret",
        params![source.name, source.settings, source.secret],
    )?;
    Ok(())
}

pub fn sources(conn: &Connection) -> Result<Vec<MigrationSource>, StoreError> {
    let mut st = conn.prepare_cached("SELECT name, settings, secret FROM migration_sources ORDER BY name")?;
    let rows = st.query_map([], |r| {
        Ok(MigrationSource {
            name: r.get(0)?,
            settings: r.get(1)?,
            secret: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete_source(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let users: i64 = conn.query_row("SELECT count(*) FROM migrations WHERE source = ?1", [name], |r| {
        r.get(0)
    })?;
    if users > 0 {
        return Err(StoreError::MigrationSourceInUse(name.to_string(), users as u64));
    }
    if conn.execute("DELETE FROM migration_sources WHERE name = ?1", [name])? == 0 {
        return Err(StoreError::NoSuchMigrationSource(name.to_string()));
    }
    Ok(())
}

const MIGRATION_SELECT: &str = "SELECT m.id, m.account_id, a.local_part || '@' || d.name, m.source, m.remote_user,
        m.secret, m.request, m.progress, m.updated, m.lease_owner, m.lease_until
    FROM migrations m JOIN accounts a ON a.id = m.account_id JOIN domains d ON d.id = a.domain_id";

fn migration_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Migration> {
    Ok(Migration {
        id: MigrationId(r.get(0)?),
        account: AccountId(r.get(1)?),
        address: r.get(2)?,
        source: r.get(3)?,
        remote_user: r.get(4)?,
        secret: r.get(5)?,
        request: r.get(6)?,
        progress: r.get(7)?,
        updated: r.get(8)?,
        lease: match r.get::<_, Option<String>>(9)? {
            Some(owner) => Some((owner, r.get(10)?)),
            None => None,
        },
    })
}

pub fn put_migration(conn: &Connection, new: &NewMigration) -> Result<Migration, StoreError> {
    let known: bool = conn
        .query_row("SELECT 1 FROM migration_sources WHERE name = ?1", [&new.source], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    if !known {
        return Err(StoreError::NoSuchMigrationSource(new.source.clone()));
    }
    // Re-adding keeps progress and the map: only the way in changes.
    conn.execute(
        "INSERT INTO migrations (account_id, source, remote_user, secret, request, progress, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, '{}', ?6)
         ON CONFLICT (account_id) DO UPDATE SET source = excluded.source, remote_user = excluded.remote_user,
             secret = excluded.secret, request = excluded.request, updated = excluded.updated",
        params![
            new.account.0,
            new.source,
            new.remote_user,
            new.secret,
            new.request,
            now() as i64
        ],
    )?;
    Ok(conn.query_row(
        &format!("{MIGRATION_SELECT} WHERE m.account_id = ?1"),
        [new.account.0],
        migration_row,
    )?)
}

pub fn migrations(conn: &Connection) -> Result<Vec<Migration>, StoreError> {
    let mut st = conn.prepare_cached(&format!("{MIGRATION_SELECT} ORDER BY d.name, a.local_part"))?;
    let rows = st.query_map([], migration_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn migration(conn: &Connection, address: &str) -> Result<Migration, StoreError> {
    let account = accounts::account_id(conn, address)?;
    conn.query_row(
        &format!("{MIGRATION_SELECT} WHERE m.account_id = ?1"),
        [account.0],
        migration_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NoSuchMigration(address.to_string()))
}

/// Sets one of the columns each side owns (`request`, `progress`, `secret`).
/// Sets the request if it is still `expected`: false when another writer changed it.
pub fn replace_request(conn: &Connection, id: MigrationId, expected: &str, request: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE migrations SET request = ?1, updated = ?2 WHERE id = ?3 AND request = ?4",
        params![request, now() as i64, id.0, expected],
    )?;
    if n == 0 {
        let exists = conn
            .query_row("SELECT 1 FROM migrations WHERE id = ?1", [id.0], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Err(StoreError::NoSuchMigration(format!("migration #{}", id.0)));
        }
    }
    Ok(n > 0)
}

pub fn set_column(
    conn: &Connection,
    id: MigrationId,
    column: &'static str,
    value: rusqlite::types::Value,
) -> Result<(), StoreError> {
    let n = conn.execute(
        &format!("UPDATE migrations SET {column} = ?1, updated = ?2 WHERE id = ?3"),
        params![value, now() as i64, id.0],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchMigration(format!("migration #{}", id.0)));
    }
    Ok(())
}

/// Takes or renews the lease on a migration: succeeds when nobody holds it, it ran
/// out, or `owner` already holds it. One statement, so two workers cannot both win.
pub fn claim(
    conn: &Connection,
    id: MigrationId,
    owner: &str,
    until: i64,
    dead_owner: Option<&str>,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE migrations SET lease_owner = ?1, lease_until = ?2
         WHERE id = ?3 AND (lease_owner IS NULL OR lease_owner = ?1 OR lease_until < ?4 OR lease_owner = ?5)",
        params![owner, until, id.0, now() as i64, dead_owner],
    )?;
    Ok(n == 1)
}

pub fn release(conn: &Connection, id: MigrationId, owner: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE migrations SET lease_owner = NULL, lease_until = 0 WHERE id = ?1 AND lease_owner = ?2",
        params![id.0, owner],
    )?;
    Ok(())
}

pub fn delete_migration(conn: &Connection, id: MigrationId) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM migrated_messages WHERE folder_id IN (SELECT id FROM migration_folders WHERE migration_id = ?1)",
        [id.0],
    )?;
    conn.execute("DELETE FROM migration_folders WHERE migration_id = ?1", [id.0])?;
    conn.execute("DELETE FROM migrations WHERE id = ?1", [id.0])?;
    Ok(())
}

/// Forgets every migration of an account that is being deleted.
pub fn delete_for_account(conn: &Connection, account: AccountId) -> Result<(), StoreError> {
    let id: Option<i64> = conn
        .query_row("SELECT id FROM migrations WHERE account_id = ?1", [account.0], |r| {
            r.get(0)
        })
        .optional()?;
    match id {
        Some(id) => delete_migration(conn, MigrationId(id)),
        None => Ok(()),
    }
}

fn folder_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MigrationFolder> {
    Ok(MigrationFolder {
        id: MigrationFolderId(r.get(0)?),
        migration: MigrationId(r.get(1)?),
        source_name: r.get(2)?,
        mailbox: MailboxId(r.get(3)?),
        state: r.get(4)?,
    })
}

pub fn folders(conn: &Connection, migration: MigrationId) -> Result<Vec<MigrationFolder>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, migration_id, source_name, mailbox_id, state FROM migration_folders
         WHERE migration_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([migration.0], folder_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn put_folder(
    conn: &Connection,
    migration: MigrationId,
    source_name: &str,
    mailbox: MailboxId,
    state: &str,
) -> Result<MigrationFolder, StoreError> {
    conn.execute(
        "INSERT INTO migration_folders (migration_id, source_name, mailbox_id, state) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (migration_id, source_name) DO UPDATE SET mailbox_id = excluded.mailbox_id, state = excluded.state",
        params![migration.0, source_name, mailbox.0, state],
    )?;
    Ok(conn.query_row(
        "SELECT id, migration_id, source_name, mailbox_id, state FROM migration_folders
         WHERE migration_id = ?1 AND source_name = ?2",
        params![migration.0, source_name],
        folder_row,
    )?)
}

/// Written inside an append's transaction (`messages::append`).
pub fn record_origin(conn: &Connection, origin: &MigrationOrigin, uid: Uid, modseq: ModSeq) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO migrated_messages (folder_id, source_key, uid, modseq) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![origin.folder.0, origin.source_key, uid, modseq as i64])?;
    Ok(())
}

pub fn migrated(conn: &Connection, folder: MigrationFolderId) -> Result<Vec<MigratedMessage>, StoreError> {
    let mut st = conn.prepare_cached("SELECT source_key, uid, modseq FROM migrated_messages WHERE folder_id = ?1")?;
    let rows = st.query_map([folder.0], |r| {
        Ok(MigratedMessage {
            source_key: r.get(0)?,
            uid: r.get(1)?,
            modseq: r.get::<_, i64>(2)? as ModSeq,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn record_migrated(
    conn: &Connection,
    folder: MigrationFolderId,
    entries: &[MigratedMessage],
) -> Result<(), StoreError> {
    for e in entries {
        record_origin(
            conn,
            &MigrationOrigin {
                folder,
                source_key: e.source_key.clone(),
            },
            e.uid,
            e.modseq,
        )?;
    }
    Ok(())
}

pub fn forget_migrated(
    conn: &Connection,
    folder: MigrationFolderId,
    keys: Option<&[String]>,
) -> Result<(), StoreError> {
    match keys {
        None => {
            conn.execute("DELETE FROM migrated_messages WHERE folder_id = ?1", [folder.0])?;
        }
        Some(keys) => {
            let mut st =
                conn.prepare_cached("DELETE FROM migrated_messages WHERE folder_id = ?1 AND source_key = ?2")?;
            for k in keys {
                st.execute(params![folder.0, k])?;
            }
        }
    }
    Ok(())
}

pub fn setting(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Runs on the single writer, so nothing writes between the read and the write.
pub fn replace_setting(
    conn: &Connection,
    key: &str,
    expected: Option<&str>,
    value: Option<&str>,
) -> Result<bool, StoreError> {
    if setting(conn, key)?.as_deref() != expected {
        return Ok(false);
    }
    set_setting(conn, key, value)?;
    Ok(true)
}

pub fn set_setting(conn: &Connection, key: &str, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, v],
        )?,
        None => conn.execute("DELETE FROM settings WHERE key = ?1", [key])?,
    };
    Ok(())
}
