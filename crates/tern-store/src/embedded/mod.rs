//! The embedded backend: SQLite (WAL) for accounts, mailboxes, messages, metadata, the
//! full-text index and bodies up to 256 KiB; content-addressed files for larger bodies;
//! all under one data folder:
//!
//! ```text
//! DATA/store/tern.db      everything but large bodies
//! DATA/store/blobs/       bodies over 256 KiB (see blob.rs)
//! ```
//!
//! Small bodies live in the database because a durable file costs a file fsync, a rename
//! and a directory fsync each (about 5 ms on the reference machine), while bodies in the
//! WAL share one fsync per group commit; docs/architecture.md has the numbers.
//!
//! Writes go through one writer thread with group commit (writer.rs); reads use a small
//! pool of connections that run beside it. Blocking SQLite and file work happens on
//! tokio's blocking pool, never on the async executor.

mod accounts;
mod index;
mod listing;
mod mailboxes;
mod messages;
mod migration;
mod outbound;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::broadcast;

use crate::blob::BlobStore;
use crate::changes::{ChangeBus, ChangeEvent, ChangeKind};
use crate::metadata::MessageMetadata;
use crate::{
    Account, AccountId, Alias, Appended, Changes, CopyResult, DkimKey, Domain, Expunge, FlagOp, Flags, FlagsUpdate,
    Mailbox, MailboxId, MessageSummary, MigratedMessage, Migration, MigrationFolder, MigrationFolderId, MigrationId,
    MigrationSource, ModSeq, NewAccount, NewMessage, NewMigration, NewQueueEntry, QueueEntry, QueueId, Result,
    SpecialUse, Store, StoreError, TextField, Uid,
};
use messages::Prepared;
use writer::{Effects, Writer};

/// Read connections kept open for reuse.
const READ_POOL: usize = 64;
/// The full-text index's database, beside tern.db.
pub(crate) const INDEX_FILE: &str = "index.db";

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The default store: one SQLite database and a folder of blob files.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// The owner folder of queued messages' files (account ids start at 1).
const QUEUE_OWNER: AccountId = AccountId(0);

struct Inner {
    db: PathBuf,
    /// Which account each mailbox belongs to (it never changes), so an append knows
    /// where its blob goes without a database read.
    owners: Mutex<std::collections::HashMap<MailboxId, AccountId>>,
    writer: Writer,
    indexer: Arc<index::Indexer>,
    readers: Mutex<Vec<Connection>>,
    blobs: BlobStore,
    /// Queued outbound messages (`queue/0/..`), one file per distinct message.
    queue_files: BlobStore,
    bus: ChangeBus,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` (normally `DATA/store`).
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("cannot create store folder {}", dir.display()), e))?;
        // Mail and password hashes: only the user running Tern may read them.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::io(format!("cannot restrict access to {}", dir.display()), e))?;
        }
        let db = dir.join("tern.db");
        let mut conn = schema::connect(&db)?;
        schema::migrate(&mut conn)?;
        drop(conn);
        let blobs = BlobStore::open(dir.join("blobs"))?;
        blobs.clean_tmp();
        let queue_files = BlobStore::open(dir.join("queue"))?;
        queue_files.clean_tmp();
        let conn = schema::connect_reader(&db)?;
        let indexer = Arc::new(index::Indexer::start(&dir.join(INDEX_FILE), &conn, &blobs)?);
        let bus = ChangeBus::new();
        let writer = Writer::start(&db, blobs.clone(), bus.clone(), indexer.clone())?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                owners: Mutex::default(),
                writer,
                indexer,
                readers: Mutex::new(vec![conn]),
                blobs,
                queue_files,
                bus,
            }),
        })
    }

    /// Runs a read on a pooled connection, on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => schema::connect_reader(&inner.db)?,
            };
            // One read transaction for the whole call: every statement sees the same
            // snapshot, and a call that runs many statements (metadata of a batch of
            // messages) takes the WAL read lock once instead of once per statement.
            conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
            let result = f(&conn);
            conn.prepare_cached("COMMIT")?.execute([])?;
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < READ_POOL
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("a store read panicked: {e}")))?
    }

    /// The account a mailbox belongs to (it never changes, so it is cached).
    async fn owner(&self, mailbox: MailboxId) -> Result<AccountId> {
        if let Some(a) = self.inner.owners.lock().ok().and_then(|o| o.get(&mailbox).copied()) {
            return Ok(a);
        }
        let a = self
            .read(move |c| mailboxes::by_id(c, mailbox).map(|m| m.account))
            .await?;
        if let Ok(mut o) = self.inner.owners.lock() {
            o.insert(mailbox, a);
        }
        Ok(a)
    }

    /// Runs a write through the group-commit writer.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Effects)> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// A write that only publishes events.
    async fn write_events<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Vec<ChangeEvent>)> + Send + 'static,
    {
        self.write(move |c| {
            f(c).map(|(v, events)| {
                (
                    v,
                    Effects {
                        events,
                        ..Default::default()
                    },
                )
            })
        })
        .await
    }

    /// Runs a check on SQLite's own consistency (PRAGMA integrity_check); `Ok` holds its
    /// findings, `["ok"]` when all is well.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare("PRAGMA integrity_check")?;
            let rows = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_domain(&self, name: &str) -> Result<Domain> {
        let name = name.to_string();
        self.write_events(move |c| Ok((accounts::create_domain(c, &name)?, Vec::new())))
            .await
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        self.read(accounts::domains).await
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        let name = name.to_string();
        self.read(move |c| accounts::domain(c, &name)).await
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write_events(move |c| Ok((accounts::delete_domain(c, &name)?, Vec::new())))
            .await
    }

    async fn domain_receiving(&self, domain: &str) -> Result<Option<bool>> {
        let domain = domain.to_string();
        self.read(move |c| accounts::receiving(c, &domain)).await
    }

    async fn set_domain_receiving(&self, domain: &str, receiving: bool) -> Result<()> {
        let domain = domain.to_string();
        self.write_events(move |c| Ok((accounts::set_receiving(c, &domain, receiving)?, Vec::new())))
            .await
    }

    async fn set_catch_all(&self, domain: &str, target: Option<&str>) -> Result<()> {
        let (domain, target) = (domain.to_string(), target.map(str::to_string));
        self.write_events(move |c| Ok((accounts::set_catch_all(c, &domain, target.as_deref())?, Vec::new())))
            .await
    }

    async fn create_account(&self, account: NewAccount) -> Result<Account> {
        self.write_events(move |c| {
            let (a, boxes) = accounts::create_account(c, &account)?;
            let events = boxes
                .iter()
                .map(|m| ChangeEvent {
                    account: a.id,
                    mailbox: m.id,
                    modseq: m.highest_modseq,
                    kind: ChangeKind::MailboxCreated { name: m.name.clone() },
                })
                .collect();
            Ok((a, events))
        })
        .await
    }

    async fn account(&self, address: &str) -> Result<Account> {
        let address = address.to_string();
        self.read(move |c| accounts::account(c, accounts::account_id(c, &address)?))
            .await
    }

    async fn account_by_id(&self, id: AccountId) -> Result<Account> {
        self.read(move |c| accounts::account(c, id)).await
    }

    async fn accounts(&self, domain: Option<&str>) -> Result<Vec<Account>> {
        let domain = domain.map(str::to_string);
        self.read(move |c| accounts::accounts(c, domain.as_deref())).await
    }

    async fn set_password_hash(&self, address: &str, hash: &str) -> Result<()> {
        let (address, hash) = (address.to_string(), hash.to_string());
        self.write_events(move |c| {
            Ok((
                accounts::update_account(c, &address, "password_hash", hash.into())?,
                Vec::new(),
            ))
        })
        .await
    }

    async fn set_enabled(&self, address: &str, enabled: bool) -> Result<()> {
        let address = address.to_string();
        self.write_events(move |c| {
            Ok((
                accounts::update_account(c, &address, "enabled", i64::from(enabled).into())?,
                Vec::new(),
            ))
        })
        .await
    }

    async fn set_display_name(&self, address: &str, name: Option<&str>) -> Result<()> {
        let address = address.to_string();
        let value = name.map_or(rusqlite::types::Value::Null, |n| n.to_string().into());
        self.write_events(move |c| {
            Ok((
                accounts::update_account(c, &address, "display_name", value)?,
                Vec::new(),
            ))
        })
        .await
    }

    async fn set_quota(&self, address: &str, quota: Option<u64>) -> Result<()> {
        let address = address.to_string();
        let value = quota.map_or(rusqlite::types::Value::Null, |q| (q as i64).into());
        self.write_events(move |c| Ok((accounts::update_account(c, &address, "quota", value)?, Vec::new())))
            .await
    }

    async fn delete_account(&self, address: &str) -> Result<()> {
        let address = address.to_string();
        self.write(move |c| {
            let (id, boxes, unreferenced) = accounts::delete_account(c, &address)?;
            let events = boxes
                .iter()
                .map(|m| ChangeEvent {
                    account: id,
                    mailbox: m.id,
                    modseq: m.highest_modseq,
                    kind: ChangeKind::MailboxDeleted { name: m.name.clone() },
                })
                .collect();
            Ok((
                (),
                Effects {
                    events,
                    unreferenced,
                    removed_accounts: vec![id],
                    ..Default::default()
                },
            ))
        })
        .await
    }

    async fn create_alias(&self, address: &str, target: &str) -> Result<Alias> {
        let (address, target) = (address.to_string(), target.to_string());
        self.write_events(move |c| Ok((accounts::create_alias(c, &address, &target)?, Vec::new())))
            .await
    }

    async fn aliases(&self, domain: Option<&str>) -> Result<Vec<Alias>> {
        let domain = domain.map(str::to_string);
        self.read(move |c| accounts::aliases(c, domain.as_deref())).await
    }

    async fn delete_alias(&self, address: &str) -> Result<()> {
        let address = address.to_string();
        self.write_events(move |c| Ok((accounts::delete_alias(c, &address)?, Vec::new())))
            .await
    }

    async fn resolve_recipient(&self, address: &str) -> Result<Option<AccountId>> {
        let address = address.to_string();
        self.read(move |c| accounts::resolve_recipient(c, &address)).await
    }

    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.read(move |c| mailboxes::list(c, account)).await
    }

    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Mailbox> {
        let name = name.to_string();
        self.read(move |c| mailboxes::by_name(c, account, &name)).await
    }

    async fn mailbox_by_id(&self, id: MailboxId) -> Result<Mailbox> {
        self.read(move |c| mailboxes::by_id(c, id)).await
    }

    async fn create_mailbox(&self, account: AccountId, name: &str, special_use: Option<SpecialUse>) -> Result<Mailbox> {
        let name = name.to_string();
        self.write_events(move |c| mailboxes::create(c, account, &name, special_use))
            .await
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.write_events(move |c| Ok(((), mailboxes::rename(c, account, &from, &to)?)))
            .await
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |c| {
            let (events, unreferenced) = mailboxes::delete(c, account, &name)?;
            Ok((
                (),
                Effects {
                    events,
                    unreferenced,
                    ..Default::default()
                },
            ))
        })
        .await
    }

    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()> {
        let name = name.to_string();
        self.write_events(move |c| Ok(((), mailboxes::set_subscribed(c, account, &name, subscribed)?)))
            .await
    }

    async fn append(&self, mailbox: MailboxId, messages: Vec<NewMessage>) -> Result<Vec<Appended>> {
        // Parse, hash and make the blobs durable outside the write transaction, in
        // parallel with other writers; the writer thread then only inserts rows.
        let inner = self.inner.clone();
        let account = self.owner(mailbox).await?;
        let prepared = tokio::task::spawn_blocking(move || {
            messages
                .into_iter()
                .map(|m| {
                    let p = Prepared::new(m)?;
                    if !p.inline() {
                        inner.blobs.put(account, &p.hash, &p.raw)?;
                    }
                    Ok(p)
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("preparing a message panicked: {e}")))??;
        let blobs = self.inner.blobs.clone();
        self.write(move |c| {
            let mut prepared = prepared;
            let out = messages::append(c, &blobs, mailbox, &mut prepared)?;
            Ok((
                out.appended,
                Effects {
                    events: vec![out.event],
                    index: out.index,
                    ..Default::default()
                },
            ))
        })
        .await
    }

    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageSummary>> {
        self.read(move |c| messages::list(c, mailbox)).await
    }

    async fn messages_by_uid(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<MessageSummary>> {
        let uids = uids.to_vec();
        self.read(move |c| messages::by_uid(c, mailbox, &uids)).await
    }

    async fn metadata(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(Uid, MessageMetadata)>> {
        let uids = uids.to_vec();
        self.read(move |c| messages::metadata(c, mailbox, &uids)).await
    }

    async fn content_hashes(&self, mailbox: MailboxId) -> Result<Vec<(Uid, crate::ContentHash)>> {
        self.read(move |c| messages::content_hashes(c, mailbox)).await
    }

    async fn pop3_uidls(&self, mailbox: MailboxId) -> Result<Vec<(Uid, String)>> {
        self.read(move |c| messages::pop3_uidls(c, mailbox)).await
    }

    async fn read_messages(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(Uid, Vec<u8>)>> {
        let uids = uids.to_vec();
        let blobs = self.inner.blobs.clone();
        self.read(move |c| {
            messages::bodies(c, mailbox, &uids)?
                .into_iter()
                .map(|(uid, body)| match body {
                    messages::Body::Inline(data) => Ok((uid, data)),
                    messages::Body::File(account, hash) => Ok((uid, blobs.read(account, &hash)?)),
                })
                .collect()
        })
        .await
    }

    async fn envelopes(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(Uid, crate::metadata::Envelope)>> {
        let uids = uids.to_vec();
        self.read(move |c| messages::envelopes(c, mailbox, &uids)).await
    }

    async fn list_page(&self, mailbox: MailboxId, query: &crate::ListQuery) -> Result<crate::ListPage> {
        let query = query.clone();
        self.read(move |c| listing::list_page(c, mailbox, &query)).await
    }

    async fn read_message(&self, mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>> {
        let blobs = self.inner.blobs.clone();
        self.read(move |c| match messages::body(c, mailbox, uid)? {
            messages::Body::Inline(data) => Ok(data),
            messages::Body::File(account, hash) => blobs.read(account, &hash),
        })
        .await
    }

    async fn message_file(&self, mailbox: MailboxId, uid: Uid) -> Result<Option<PathBuf>> {
        let blobs = self.inner.blobs.clone();
        self.read(move |c| match messages::body(c, mailbox, uid)? {
            messages::Body::Inline(_) => Ok(None),
            messages::Body::File(account, hash) => Ok(Some(blobs.path(account, &hash))),
        })
        .await
    }

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<FlagsUpdate> {
        let (uids, flags) = (uids.to_vec(), flags.clone());
        self.write_events(move |c| {
            let (update, event) = messages::store_flags(c, mailbox, &uids, op, &flags, unchanged_since)?;
            Ok((update, event.into_iter().collect()))
        })
        .await
    }

    async fn copy(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<CopyResult> {
        let uids = uids.to_vec();
        self.write_events(move |c| messages::copy(c, from, &uids, to)).await
    }

    async fn move_messages(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<CopyResult> {
        let uids = uids.to_vec();
        self.write(move |c| {
            let (result, events, unreferenced) = messages::move_messages(c, from, &uids, to)?;
            Ok((
                result,
                Effects {
                    events,
                    unreferenced,
                    ..Default::default()
                },
            ))
        })
        .await
    }

    async fn expunge(&self, mailbox: MailboxId, which: Expunge) -> Result<Vec<Uid>> {
        self.write(move |c| {
            let e = messages::expunge(c, mailbox, &which)?;
            Ok((
                e.uids,
                Effects {
                    events: e.event.into_iter().collect(),
                    unreferenced: e.released,
                    ..Default::default()
                },
            ))
        })
        .await
    }

    async fn changes_since(&self, mailbox: MailboxId, modseq: ModSeq) -> Result<Changes> {
        self.read(move |c| messages::changes_since(c, mailbox, modseq)).await
    }

    async fn search_text(&self, mailbox: MailboxId, field: TextField, query: &str) -> Result<Vec<Uid>> {
        self.inner.indexer.caught_up().await;
        let query = query.to_string();
        self.read(move |c| messages::search_text(c, mailbox, field, &query))
            .await
    }

    async fn put_migration_source(&self, source: MigrationSource) -> Result<()> {
        self.write_events(move |c| Ok((migration::put_source(c, &source)?, Vec::new())))
            .await
    }

    async fn migration_sources(&self) -> Result<Vec<MigrationSource>> {
        self.read(migration::sources).await
    }

    async fn delete_migration_source(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write_events(move |c| Ok((migration::delete_source(c, &name)?, Vec::new())))
            .await
    }

    async fn put_migration(&self, new: NewMigration) -> Result<Migration> {
        self.write_events(move |c| Ok((migration::put_migration(c, &new)?, Vec::new())))
            .await
    }

    async fn migrations(&self) -> Result<Vec<Migration>> {
        self.read(migration::migrations).await
    }

    async fn migration(&self, address: &str) -> Result<Migration> {
        let address = address.to_string();
        self.read(move |c| migration::migration(c, &address)).await
    }

    async fn set_migration_request(&self, id: MigrationId, request: &str) -> Result<()> {
        let value = rusqlite::types::Value::Text(request.to_string());
        self.write_events(move |c| Ok((migration::set_column(c, id, "request", value)?, Vec::new())))
            .await
    }

    async fn replace_migration_request(&self, id: MigrationId, expected: &str, request: &str) -> Result<bool> {
        let (expected, request) = (expected.to_string(), request.to_string());
        self.write_events(move |c| Ok((migration::replace_request(c, id, &expected, &request)?, Vec::new())))
            .await
    }

    async fn set_migration_progress(&self, id: MigrationId, progress: &str) -> Result<()> {
        let value = rusqlite::types::Value::Text(progress.to_string());
        self.write_events(move |c| Ok((migration::set_column(c, id, "progress", value)?, Vec::new())))
            .await
    }

    async fn set_migration_secret(&self, id: MigrationId, secret: Option<Vec<u8>>) -> Result<()> {
        let value = secret.map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Blob);
        self.write_events(move |c| Ok((migration::set_column(c, id, "secret", value)?, Vec::new())))
            .await
    }

    async fn claim_migration(
        &self,
        id: MigrationId,
        owner: &str,
        until: i64,
        dead_owner: Option<&str>,
    ) -> Result<bool> {
        let (owner, dead) = (owner.to_string(), dead_owner.map(str::to_string));
        self.write_events(move |c| Ok((migration::claim(c, id, &owner, until, dead.as_deref())?, Vec::new())))
            .await
    }

    async fn release_migration(&self, id: MigrationId, owner: &str) -> Result<()> {
        let owner = owner.to_string();
        self.write_events(move |c| Ok((migration::release(c, id, &owner)?, Vec::new())))
            .await
    }

    async fn delete_migration(&self, id: MigrationId) -> Result<()> {
        self.write_events(move |c| Ok((migration::delete_migration(c, id)?, Vec::new())))
            .await
    }

    async fn migration_folders(&self, id: MigrationId) -> Result<Vec<MigrationFolder>> {
        self.read(move |c| migration::folders(c, id)).await
    }

    async fn put_migration_folder(
        &self,
        id: MigrationId,
        source_name: &str,
        mailbox: MailboxId,
        state: &str,
    ) -> Result<MigrationFolder> {
        let (source_name, state) = (source_name.to_string(), state.to_string());
        self.write_events(move |c| Ok((migration::put_folder(c, id, &source_name, mailbox, &state)?, Vec::new())))
            .await
    }

    async fn migrated_messages(&self, folder: MigrationFolderId) -> Result<Vec<MigratedMessage>> {
        self.read(move |c| migration::migrated(c, folder)).await
    }

    async fn record_migrated(&self, folder: MigrationFolderId, entries: Vec<MigratedMessage>) -> Result<()> {
        self.write_events(move |c| Ok((migration::record_migrated(c, folder, &entries)?, Vec::new())))
            .await
    }

    async fn forget_migrated(&self, folder: MigrationFolderId, keys: Option<Vec<String>>) -> Result<()> {
        self.write_events(move |c| Ok((migration::forget_migrated(c, folder, keys.as_deref())?, Vec::new())))
            .await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |c| migration::setting(c, &key)).await
    }

    async fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        let (key, value) = (key.to_string(), value.map(str::to_string));
        self.write_events(move |c| Ok((migration::set_setting(c, &key, value.as_deref())?, Vec::new())))
            .await
    }

    async fn replace_setting(&self, key: &str, expected: Option<&str>, value: Option<&str>) -> Result<bool> {
        let (key, expected, value) = (key.to_string(), expected.map(str::to_string), value.map(str::to_string));
        self.write_events(move |c| {
            Ok((
                migration::replace_setting(c, &key, expected.as_deref(), value.as_deref())?,
                Vec::new(),
            ))
        })
        .await
    }

    async fn deliver(&self, mailboxes: &[MailboxId], message: NewMessage) -> Result<Vec<Result<Appended>>> {
        let mut targets = Vec::with_capacity(mailboxes.len());
        for &mailbox in mailboxes {
            targets.push((mailbox, self.owner(mailbox).await?));
        }
        let inner = self.inner.clone();
        let several_accounts = targets.windows(2).any(|w| w[0].1 != w[1].1);
        let targets2 = targets.clone();
        // Parse once; with several accounts the body is one file linked into each.
        let prepared = tokio::task::spawn_blocking(move || {
            let mut p = Prepared::new(message)?;
            p.as_file = several_accounts;
            let mut first: Option<AccountId> = None;
            if !p.inline() {
                for &(_, account) in &targets2 {
                    match first {
                        None => {
                            inner.blobs.put(account, &p.hash, &p.raw)?;
                            first = Some(account);
                        }
                        Some(from) => {
                            inner.blobs.link(from, account, &p.hash, &p.raw)?;
                        }
                    }
                }
            }
            Ok::<_, StoreError>(p)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("preparing a message panicked: {e}")))??;
        let blobs = self.inner.blobs.clone();
        self.write(move |c| {
            let mut results = Vec::with_capacity(targets.len());
            let mut effects = Effects::default();
            for (mailbox, _) in targets {
                let mut one = [prepared.clone()];
                match messages::append(c, &blobs, mailbox, &mut one) {
                    Ok(out) => {
                        effects.events.push(out.event);
                        effects.index.extend(out.index);
                        results.push(Ok(out.appended[0]));
                    }
                    // Checked before anything is written: this mailbox is skipped,
                    // the others still get the message.
                    Err(e @ StoreError::QuotaExceeded { .. }) => results.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            Ok((results, effects))
        })
        .await
    }

    async fn enqueue(&self, entry: NewQueueEntry) -> Result<QueueId> {
        if entry.raw.is_empty() {
            return Err(StoreError::EmptyMessage);
        }
        let NewQueueEntry {
            sender,
            raw,
            envelope,
            next_attempt,
        } = entry;
        let hash = crate::blob::hash(&raw);
        let size = raw.len() as u64;
        // The file is durable before the row commits (see blob.rs).
        let files = self.inner.queue_files.clone();
        tokio::task::spawn_blocking(move || files.put(QUEUE_OWNER, &hash, &raw))
            .await
            .map_err(|e| StoreError::Corrupt(format!("writing a queued message panicked: {e}")))??;
        self.write_events(move |c| {
            Ok((
                outbound::insert(c, &sender, &hash, size, &envelope, next_attempt)?,
                Vec::new(),
            ))
        })
        .await
    }

    async fn queue_entries(&self) -> Result<Vec<QueueEntry>> {
        self.read(outbound::entries).await
    }

    async fn queue_entry(&self, id: QueueId) -> Result<QueueEntry> {
        self.read(move |c| outbound::entry(c, id)).await
    }

    async fn queue_message(&self, id: QueueId) -> Result<Vec<u8>> {
        let hash = self.read(move |c| outbound::hash(c, id)).await?;
        let hash: crate::blob::BlobHash = hash
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("queue entry {id} has a malformed hash")))?;
        let files = self.inner.queue_files.clone();
        tokio::task::spawn_blocking(move || files.read(QUEUE_OWNER, &hash))
            .await
            .map_err(|e| StoreError::Corrupt(format!("reading a queued message panicked: {e}")))?
    }

    async fn claim_queue(
        &self,
        owner: &str,
        until: i64,
        dead_owners: &[String],
        limit: usize,
    ) -> Result<Vec<QueueEntry>> {
        let (owner, dead) = (owner.to_string(), dead_owners.to_vec());
        self.write_events(move |c| Ok((outbound::claim(c, &owner, until, &dead, limit)?, Vec::new())))
            .await
    }

    async fn update_queue_entry(&self, id: QueueId, owner: &str, envelope: &str, next_attempt: i64) -> Result<()> {
        let (owner, envelope) = (owner.to_string(), envelope.to_string());
        self.write_events(move |c| Ok((outbound::update(c, id, &owner, &envelope, next_attempt)?, Vec::new())))
            .await
    }

    async fn set_queue_next_attempt(&self, id: QueueId, at: i64) -> Result<()> {
        self.write_events(move |c| Ok((outbound::set_next_attempt(c, id, at)?, Vec::new())))
            .await
    }

    async fn delete_queue_entry(&self, id: QueueId) -> Result<()> {
        let unshared = self
            .write_events(move |c| Ok((outbound::delete(c, id)?, Vec::new())))
            .await?;
        // The row is gone and durable; now the file may go.
        if let Some(hash) = unshared.and_then(|h| <crate::blob::BlobHash>::try_from(h).ok()) {
            self.inner.queue_files.remove(QUEUE_OWNER, &hash);
        }
        Ok(())
    }

    async fn add_dkim_key(&self, key: DkimKey) -> Result<()> {
        self.write_events(move |c| {
            accounts::domain_id(c, &key.domain)?;
            Ok((outbound::add_dkim_key(c, &key)?, Vec::new()))
        })
        .await
    }

    async fn dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKey>> {
        let domain = domain.map(str::to_string);
        self.read(move |c| outbound::dkim_keys(c, domain.as_deref())).await
    }

    async fn set_dkim_key_active(&self, domain: &str, selector: &str, active: bool) -> Result<()> {
        let (domain, selector) = (domain.to_string(), selector.to_string());
        self.write_events(move |c| Ok((outbound::set_dkim_active(c, &domain, &selector, active)?, Vec::new())))
            .await
    }

    async fn delete_dkim_key(&self, domain: &str, selector: &str) -> Result<()> {
        let (domain, selector) = (domain.to_string(), selector.to_string());
        self.write_events(move |c| Ok((outbound::delete_dkim_key(c, &domain, &selector)?, Vec::new())))
            .await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.bus.subscribe()
    }

    async fn close(&self) -> Result<()> {
        self.inner.writer.close().await;
        self.inner.indexer.close().await;
        Ok(())
    }
}
