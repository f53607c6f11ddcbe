//! The embedded backend's SQLite schema and connection settings.

use rusqlite::Connection;

use crate::StoreError;

/// Bumped when the schema changes; `migrate` brings older databases forward.
const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);

CREATE TABLE domains (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    catch_all INTEGER,                       -- account id receiving unknown local parts
    created INTEGER NOT NULL
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    domain_id INTEGER NOT NULL,
    local_part TEXT NOT NULL COLLATE NOCASE,
    display_name TEXT,
    password_hash TEXT,
    quota INTEGER,
    enabled INTEGER NOT NULL DEFAULT 1,
    created INTEGER NOT NULL,
    UNIQUE (domain_id, local_part)
);

CREATE TABLE aliases (
    id INTEGER PRIMARY KEY,
    domain_id INTEGER NOT NULL,
    local_part TEXT NOT NULL COLLATE NOCASE,
    account_id INTEGER NOT NULL,
    UNIQUE (domain_id, local_part)
);
CREATE INDEX aliases_account ON aliases (account_id);

-- AUTOINCREMENT: ids of deleted mailboxes and blobs are never handed out again, so a
-- stale id held by a session or a cache can never name someone else's data.
CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 0,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    -- Counters kept in step with `messages` by every write, so STATUS is one row read.
    messages INTEGER NOT NULL DEFAULT 0,
    unseen INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);

-- One row per distinct message body per account; `refs` counts the messages using it.
CREATE TABLE blobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL,
    hash BLOB NOT NULL,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL,
    metadata TEXT NOT NULL,                  -- MessageMetadata as JSON
    sent_date INTEGER,
    base_subject TEXT NOT NULL,
    message_id TEXT,
    UNIQUE (account_id, hash)
);

CREATE TABLE messages (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    blob_id INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    keywords TEXT NOT NULL,                  -- space-separated, sorted
    internal_date INTEGER NOT NULL,
    save_date INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_blob ON messages (blob_id);

-- Expunge history for QRESYNC's VANISHED (EARLIER) (RFC 7162 §3.2.10).
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;

-- Bodies of up to INLINE_MAX bytes live here, so that appending them is part of the
-- same group-committed WAL write as their rows; larger bodies are blob files.
CREATE TABLE blob_bodies (
    blob_id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

-- The full-text index lives in its own file, index.db (see index.rs).
"#;

/// Opens a connection with the settings every connection needs.
pub fn connect(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // WAL lets readers run beside the writer. synchronous=FULL makes every commit fsync
    // the WAL, so a committed transaction survives power loss; group commit
    // (writer.rs) keeps that affordable.
    // auto_vacuum first: it only takes effect on a database that has no pages yet, and
    // switching to WAL writes the first page. Space freed by expunged inline bodies is
    // then handed back in steps instead of only being reused.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4000;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    // Another process (the CLI beside a running server) may hold the write lock briefly.
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // Keep each cached statement's plan. Without this, SQLite's STAT4 planner
    // re-prepares joins with bound parameters on every run, which profiles showed as a
    // third of the time of fetching message bodies.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

/// A read connection: the main database with the full-text index attached as `idx`.
pub fn connect_reader(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = connect(path)?;
    let index = path.with_file_name(super::INDEX_FILE);
    conn.execute("ATTACH DATABASE ?1 AS idx", [index.to_string_lossy()])?;
    // rarray(): a list of UIDs bound as one parameter (a page of search results).
    rusqlite::vtab::array::load_module(&conn)?;
    Ok(conn)
}

/// Schema 2: the UIDL a message had on the POP3 server it was migrated from, so a
/// client that leaves mail on the server does not fetch everything again after the
/// switch (RFC 1939 §7, UIDL). Few messages have one, hence a table of its own.
const SCHEMA_2: &str = r#"
CREATE TABLE pop3_uidls (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    uidl TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
"#;

/// Schema 3: the migration engine's records (see `crate::migration`) and settings the
/// administrator changes at run time (the migration schedule).
const SCHEMA_3: &str = r#"
CREATE TABLE migration_sources (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,                  -- JSON owned by tern-migrate
    secret BLOB                              -- encrypted by tern-migrate
);
CREATE TABLE migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL UNIQUE,
    source TEXT NOT NULL,
    remote_user TEXT NOT NULL,
    secret BLOB,
    request TEXT NOT NULL,                   -- written by the CLI
    progress TEXT NOT NULL,                  -- written by the worker
    lease_owner TEXT,                        -- the worker running it, until lease_until
    lease_until INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL
);
CREATE TABLE migration_folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    migration_id INTEGER NOT NULL,
    source_name TEXT NOT NULL,
    mailbox_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    UNIQUE (migration_id, source_name)
);
-- Source message -> Tern message; written in the append's own transaction.
CREATE TABLE migrated_messages (
    folder_id INTEGER NOT NULL,
    source_key TEXT NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (folder_id, source_key)
) WITHOUT ROWID;
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Schema 4: SMTP. Whether a domain receives yet, its DKIM keys, and the outbound
/// queue (see `crate::outbound`; queued messages are files under `queue/`).
const SCHEMA_4: &str = r#"
ALTER TABLE domains ADD COLUMN receiving INTEGER NOT NULL DEFAULT 1;
CREATE TABLE dkim_keys (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,                 -- rsa-sha256 | ed25519-sha256
    private_key BLOB NOT NULL,               -- DER; the data folder is private (0700)
    public_key BLOB NOT NULL,
    created INTEGER NOT NULL,
    active INTEGER NOT NULL,
    PRIMARY KEY (domain, selector)
);
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    hash BLOB NOT NULL,                      -- the message file under queue/
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    envelope TEXT NOT NULL,                  -- JSON owned by tern-smtp
    lease_owner TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_due ON queue (next_attempt);
"#;

/// Schema 5: webmail's message list. A page sorted by arrival, sender or subject is a
/// range of an index of `messages` alone (WITHOUT ROWID: ties come in UID order), so
/// page 2,000 of a 100,000-message folder never reads the blobs of the pages before it.
/// The sort keys are derived from the metadata at ingest: the first sender's name or
/// address, and the base subject (RFC 5256 §2.1), both lowercased. Existing messages
/// get theirs from [`backfill_sort_keys`].
const SCHEMA_5: &str = r#"
ALTER TABLE messages ADD COLUMN sort_from TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN sort_subject TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_arrival ON messages (mailbox_id, internal_date);
CREATE INDEX messages_from ON messages (mailbox_id, sort_from);
CREATE INDEX messages_subject ON messages (mailbox_id, sort_subject);
"#;

/// Fills the sort keys of messages stored before schema 5, from their metadata.
fn backfill_sort_keys(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    #[derive(serde::Deserialize)]
    struct SortFields {
        envelope: crate::metadata::Envelope,
        base_subject: String,
    }
    let rows: Vec<(i64, String)> = tx
        .prepare("SELECT id, metadata FROM blobs")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = tx.prepare("UPDATE messages SET sort_from = ?2, sort_subject = ?3 WHERE blob_id = ?1")?;
    for (id, json) in rows {
        if let Ok(m) = serde_json::from_str::<SortFields>(&json) {
            update.execute(rusqlite::params![
                id,
                m.envelope.sort_from(),
                m.base_subject.to_lowercase()
            ])?;
        }
    }
    Ok(())
}

/// Creates the schema in a new database, or checks and upgrades an existing one.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // Space freed by expunged inline bodies is handed back in steps instead of only
    // being reused; this must be set before the first table exists.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let exists: bool = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !exists {
        tx.execute_batch(SCHEMA)?;
        let now = super::now() as i64;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('next_uidvalidity', ?2)",
            (SCHEMA_VERSION, now),
        )?;
        tx.execute_batch(SCHEMA_2)?;
        tx.execute_batch(SCHEMA_3)?;
        tx.execute_batch(SCHEMA_4)?;
        tx.execute_batch(SCHEMA_5)?;
    } else {
        let version: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "the data folder was written by a newer Tern (schema {version}, this build knows {SCHEMA_VERSION}); upgrade Tern"
            )));
        }
        if version < 2 {
            tx.execute_batch(SCHEMA_2)?;
        }
        if version < 3 {
            tx.execute_batch(SCHEMA_3)?;
        }
        if version < 4 {
            tx.execute_batch(SCHEMA_4)?;
        }
        if version < 5 {
            tx.execute_batch(SCHEMA_5)?;
            backfill_sort_keys(&tx)?;
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(())
}
