//! The `Store` trait: the one door every writer and reader of mail goes through.
//!
//! Servers hold an `Arc<dyn Store>` and never know which backend is behind it. Every
//! method that changes state returns only after the change is durable (RFC 9051 allows
//! an OK for APPEND, COPY, MOVE and STORE only then; SMTP's 250 likewise), and after it
//! has been published on the change bus. Multi-message operations are atomic: all of
//! them happen or none.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::metadata::MessageMetadata;
use crate::{
    Account, AccountId, Alias, Appended, ChangeEvent, Changes, CopyResult, DkimKey, Domain, Expunge, FlagOp, Flags,
    FlagsUpdate, Mailbox, MailboxId, MessageSummary, MigratedMessage, Migration, MigrationFolder, MigrationFolderId,
    MigrationId, MigrationSource, ModSeq, NewAccount, NewMessage, NewMigration, NewQueueEntry, QueueEntry, QueueId,
    Result, SpecialUse, TextField, Uid,
};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- Domains -------------------------------------------------------------------

    async fn create_domain(&self, name: &str) -> Result<Domain>;
    async fn domains(&self) -> Result<Vec<Domain>>;
    async fn domain(&self, name: &str) -> Result<Domain>;
    /// Removes a domain that has no accounts and no aliases left.
    async fn delete_domain(&self, name: &str) -> Result<()>;
    /// Sends mail for unknown local parts of `domain` to `target` (an account's address),
    /// or stops doing so with `None`.
    /// Whether SMTP accepts mail for the domain yet (see [`Domain::receiving`]).
    async fn set_domain_receiving(&self, domain: &str, receiving: bool) -> Result<()>;
    /// Whether a domain is hosted here and receives mail: `None` if it is not hosted.
    /// The MX asks this for every recipient, so it costs one indexed lookup (no counts).
    async fn domain_receiving(&self, domain: &str) -> Result<Option<bool>>;
    async fn set_catch_all(&self, domain: &str, target: Option<&str>) -> Result<()>;

    // --- Accounts and aliases ------------------------------------------------------

    /// Creates an account with INBOX and the special-use folders (Sent, Drafts, Trash,
    /// Junk, Archive), all subscribed.
    async fn create_account(&self, account: NewAccount) -> Result<Account>;
    async fn account(&self, address: &str) -> Result<Account>;
    async fn account_by_id(&self, id: AccountId) -> Result<Account>;
    /// Accounts, optionally of one domain, ordered by address.
    async fn accounts(&self, domain: Option<&str>) -> Result<Vec<Account>>;
    async fn set_password_hash(&self, address: &str, hash: &str) -> Result<()>;
    async fn set_enabled(&self, address: &str, enabled: bool) -> Result<()>;
    /// The name shown with the address (`Alice Example <alice@…>`); `None` removes it.
    async fn set_display_name(&self, address: &str, name: Option<&str>) -> Result<()>;
    async fn set_quota(&self, address: &str, quota: Option<u64>) -> Result<()>;
    /// Deletes an account, its mailboxes, messages and aliases pointing at it.
    async fn delete_account(&self, address: &str) -> Result<()>;
    async fn create_alias(&self, address: &str, target: &str) -> Result<Alias>;
    async fn aliases(&self, domain: Option<&str>) -> Result<Vec<Alias>>;
    async fn delete_alias(&self, address: &str) -> Result<()>;
    /// The account that mail to `address` reaches: an account, an alias, the address
    /// without its `+tag`, or the domain's catch-all, in that order. `None` if no hosted
    /// domain accepts it.
    async fn resolve_recipient(&self, address: &str) -> Result<Option<AccountId>>;

    // --- Mailboxes -----------------------------------------------------------------

    /// All mailboxes of an account, ordered by name.
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>>;
    /// A mailbox by name (INBOX case-insensitively), with fresh counts.
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Mailbox>;
    async fn mailbox_by_id(&self, id: MailboxId) -> Result<Mailbox>;
    /// Creates a mailbox (RFC 9051 §6.3.4) and any missing parents; a special-use
    /// attribute may be given (RFC 6154 §3, CREATE-SPECIAL-USE).
    async fn create_mailbox(&self, account: AccountId, name: &str, special_use: Option<SpecialUse>) -> Result<Mailbox>;
    /// Renames a mailbox and its children (RFC 9051 §6.3.6). Renaming INBOX moves its
    /// messages to a new mailbox and leaves INBOX empty.
    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()>;
    /// Deletes a mailbox and its messages. Refused for INBOX and for a mailbox with
    /// children (the HASCHILDREN response code, RFC 5530 §3).
    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()>;
    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()>;

    // --- Messages ------------------------------------------------------------------

    /// Appends messages to a mailbox atomically (MULTIAPPEND, RFC 3502), returning the
    /// APPENDUID data of each (RFC 4315 §3). Durable before it returns.
    async fn append(&self, mailbox: MailboxId, messages: Vec<NewMessage>) -> Result<Vec<Appended>>;
    /// Every message of a mailbox in UID order: what a session needs to open it.
    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageSummary>>;
    /// The given messages (those that still exist), in UID order.
    async fn messages_by_uid(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<MessageSummary>>;
    /// The metadata derived at ingest (envelope, body structure, search fields).
    async fn metadata(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(Uid, MessageMetadata)>>;
    /// The content hash ([`crate::content_hash`]) of every message, in UID order: lets
    /// an import or migration that runs again recognise what it already brought in.
    async fn content_hashes(&self, mailbox: MailboxId) -> Result<Vec<(Uid, crate::ContentHash)>>;
    /// The POP3 UIDLs carried over from an old POP3 server ([`NewMessage::pop3_uidl`]),
    /// in UID order; messages without one are absent.
    async fn pop3_uidls(&self, mailbox: MailboxId) -> Result<Vec<(Uid, String)>>;
    /// One page of the mailbox's message list, sorted and optionally grouped into
    /// conversations (webmail's list view).
    async fn list_page(&self, mailbox: MailboxId, query: &crate::ListQuery) -> Result<crate::ListPage>;
    /// The message's bytes, exactly as stored.
    async fn read_message(&self, mailbox: MailboxId, uid: Uid) -> Result<Vec<u8>>;
    /// The bytes of several messages (those that still exist), in UID order: one round
    /// trip for a FETCH of many bodies. Callers keep batches to a few megabytes.
    async fn read_messages(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(Uid, Vec<u8>)>> {
        let mut out = Vec::with_capacity(uids.len());
        for &uid in uids {
            match self.read_message(mailbox, uid).await {
                Ok(bytes) => out.push((uid, bytes)),
                Err(crate::StoreError::NoSuchMessage(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
    /// Only the envelopes of the metadata (FETCH ENVELOPE of a whole mailbox).
    async fn envelopes(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(Uid, crate::metadata::Envelope)>> {
        Ok(self
            .metadata(mailbox, uids)
            .await?
            .into_iter()
            .map(|(uid, m)| (uid, m.envelope))
            .collect())
    }
    /// The path of the file holding the message's bytes, for streaming large messages.
    /// `None` when the body is not a file of its own (small bodies in the embedded
    /// backend, other backends): callers then use `read_message`.
    async fn message_file(&self, mailbox: MailboxId, uid: Uid) -> Result<Option<std::path::PathBuf>>;
    /// Changes the flags of the given messages (STORE, RFC 9051 §6.4.6) atomically.
    /// With `unchanged_since` (CONDSTORE, RFC 7162 §3.1.3) messages changed after that
    /// modseq are left alone and reported in `modified`.
    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<FlagsUpdate>;
    /// Copies messages to another mailbox of the same account atomically (COPY).
    async fn copy(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<CopyResult>;
    /// Moves messages atomically (MOVE, RFC 6851): copy and expunge in one transaction.
    async fn move_messages(&self, from: MailboxId, uids: &[Uid], to: MailboxId) -> Result<CopyResult>;
    /// Removes messages atomically; returns the UIDs removed, in order.
    async fn expunge(&self, mailbox: MailboxId, which: Expunge) -> Result<Vec<Uid>>;
    /// What changed since `modseq` (CONDSTORE CHANGEDSINCE, QRESYNC, RFC 7162 §3.2.5).
    async fn changes_since(&self, mailbox: MailboxId, modseq: ModSeq) -> Result<Changes>;
    /// Full-text search over decoded headers and text parts; every word of `query` must
    /// occur (as a word or word prefix). Returns matching UIDs in order.
    async fn search_text(&self, mailbox: MailboxId, field: TextField, query: &str) -> Result<Vec<Uid>>;

    // --- Migration state (see the `migration` module) --------------------------------

    /// Adds a source, or replaces the one of that name.
    async fn put_migration_source(&self, source: MigrationSource) -> Result<()>;
    async fn migration_sources(&self) -> Result<Vec<MigrationSource>>;
    /// Removes a source no migration uses any more.
    async fn delete_migration_source(&self, name: &str) -> Result<()>;
    /// Creates the account's migration, or points its existing one at a new source,
    /// user name and secret, keeping progress and map.
    async fn put_migration(&self, migration: NewMigration) -> Result<Migration>;
    /// All migrations, ordered by address.
    async fn migrations(&self) -> Result<Vec<Migration>>;
    /// The migration of the account at `address`.
    async fn migration(&self, address: &str) -> Result<Migration>;
    async fn set_migration_request(&self, id: MigrationId, request: &str) -> Result<()>;
    /// Replaces a migration's request only if it still is `expected`, in one write;
    /// whether it did. Changes made from a read request go through this
    /// (`tern_migrate::worker::update_request`): two writers each asking for the next
    /// pass from the same read would otherwise make one request of two.
    async fn replace_migration_request(&self, id: MigrationId, expected: &str, request: &str) -> Result<bool>;
    async fn set_migration_progress(&self, id: MigrationId, progress: &str) -> Result<()>;
    /// Replaces or (with `None`) wipes the source credentials.
    async fn set_migration_secret(&self, id: MigrationId, secret: Option<Vec<u8>>) -> Result<()>;
    /// Takes (or renews) the right to run a migration until `until` (unix seconds):
    /// `true` when nobody else holds it. Keeps two workers (two nodes, or `tern migrate
    /// run` beside `tern serve`) from copying the same mailbox at once. `dead_owner`
    /// names a holder the caller knows has died (a process gone from this machine),
    /// whose lease may be taken before it runs out.
    async fn claim_migration(&self, id: MigrationId, owner: &str, until: i64, dead_owner: Option<&str>)
    -> Result<bool>;
    /// Gives the lease back.
    async fn release_migration(&self, id: MigrationId, owner: &str) -> Result<()>;
    /// Forgets a migration, its folders and its map (the copied mail stays).
    async fn delete_migration(&self, id: MigrationId) -> Result<()>;
    /// The source folders of a migration, in the order they were first seen.
    async fn migration_folders(&self, migration: MigrationId) -> Result<Vec<MigrationFolder>>;
    /// Adds or updates (by source name) one source folder of a migration.
    async fn put_migration_folder(
        &self,
        migration: MigrationId,
        source_name: &str,
        mailbox: MailboxId,
        state: &str,
    ) -> Result<MigrationFolder>;
    /// The folder's map from source messages to Tern messages.
    async fn migrated_messages(&self, folder: MigrationFolderId) -> Result<Vec<MigratedMessage>>;
    /// Adds or replaces map entries (after a flag change, or re-matching after a source
    /// UIDVALIDITY change).
    async fn record_migrated(&self, folder: MigrationFolderId, entries: Vec<MigratedMessage>) -> Result<()>;
    /// Drops map entries: the given source keys, or (`None`) all of the folder.
    async fn forget_migrated(&self, folder: MigrationFolderId, keys: Option<Vec<String>>) -> Result<()>;

    // --- Settings ------------------------------------------------------------------

    /// A setting the administrator changes at run time (the migration schedule, ...).
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Sets or (with `None`) removes a setting.
    async fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()>;
    /// Sets or removes a setting only if it still holds `expected` (`None`: absent), in
    /// one write; whether it did. Read-modify-write cycles go through this (see
    /// [`crate::setting::update`]) so two writers, tasks or nodes, never undo each other.
    async fn replace_setting(&self, key: &str, expected: Option<&str>, value: Option<&str>) -> Result<bool>;

    // --- SMTP: local delivery, outbound queue, DKIM keys (see `crate::outbound`) -----

    /// Delivers one message into several mailboxes (one SMTP transaction to many local
    /// recipients) in one transaction. Its bytes are stored once: a body kept as a file
    /// is written once and linked into each further account. The result per mailbox is
    /// in the order given; one full mailbox (quota) does not fail the others.
    async fn deliver(&self, mailboxes: &[MailboxId], message: NewMessage) -> Result<Vec<Result<Appended>>>;
    /// Queues a message for delivery elsewhere; durable when this returns.
    async fn enqueue(&self, entry: NewQueueEntry) -> Result<QueueId>;
    /// The whole queue, oldest first (without the messages).
    async fn queue_entries(&self) -> Result<Vec<QueueEntry>>;
    async fn queue_entry(&self, id: QueueId) -> Result<QueueEntry>;
    /// The queued message's bytes.
    async fn queue_message(&self, id: QueueId) -> Result<Vec<u8>>;
    /// Leases up to `limit` entries that are due (next attempt passed) and not leased by
    /// a live worker: free, expired, ours, or held by one of `dead_owners`.
    async fn claim_queue(
        &self,
        owner: &str,
        until: i64,
        dead_owners: &[String],
        limit: usize,
    ) -> Result<Vec<QueueEntry>>;
    /// Records a delivery attempt's outcome and gives the lease back. Only the lease
    /// holder may (another worker's newer state is never overwritten).
    async fn update_queue_entry(&self, id: QueueId, owner: &str, envelope: &str, next_attempt: i64) -> Result<()>;
    /// Moves the next attempt (`tern queue retry`: now).
    async fn set_queue_next_attempt(&self, id: QueueId, at: i64) -> Result<()>;
    /// Removes an entry and its message (delivered, bounced, or `tern queue delete`).
    async fn delete_queue_entry(&self, id: QueueId) -> Result<()>;
    async fn add_dkim_key(&self, key: DkimKey) -> Result<()>;
    /// DKIM keys of one domain, or of all, oldest first.
    async fn dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKey>>;
    async fn set_dkim_key_active(&self, domain: &str, selector: &str, active: bool) -> Result<()>;
    async fn delete_dkim_key(&self, domain: &str, selector: &str) -> Result<()>;

    // --- Change bus ----------------------------------------------------------------

    /// Committed changes, as they happen (see the `changes` module).
    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent>;

    /// Finishes outstanding writes and makes everything durable; later calls fail with
    /// `StoreError::Closed`. Called on graceful shutdown.
    async fn close(&self) -> Result<()>;
}
