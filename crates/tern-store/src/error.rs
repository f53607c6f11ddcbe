//! What can go wrong in the store, worded so that a CLI user or a protocol server can
//! pass the message on unchanged.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("domain {0} does not exist; add it with `tern domain add {0}`")]
    NoSuchDomain(String),
    #[error("domain {0} already exists")]
    DomainExists(String),
    #[error("domain {0} still has {1} account(s) or alias(es); remove them first")]
    DomainNotEmpty(String, u64),
    #[error("account {0} does not exist")]
    NoSuchAccount(String),
    #[error("address {0} is already in use by an account or alias")]
    AddressInUse(String),
    #[error("alias {0} does not exist")]
    NoSuchAlias(String),
    #[error("mailbox {0:?} does not exist")]
    NoSuchMailbox(String),
    #[error("no message with UID {0} in this mailbox")]
    NoSuchMessage(u32),
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    #[error("mailbox {0:?} has child mailboxes; delete or move them first")]
    HasChildren(String),
    #[error("{0}")]
    InvalidMailboxName(String),
    #[error("{0:?} is a special mailbox and cannot be {1}")]
    ProtectedMailbox(String, &'static str),
    #[error("not a valid email address: {0:?}")]
    InvalidAddress(String),
    #[error("quota exceeded: the account may hold {limit} bytes and holds {used}; delete some mail first")]
    QuotaExceeded { used: u64, limit: u64 },
    #[error("message is empty")]
    EmptyMessage,
    #[error("password hashing failed: {0}")]
    Password(String),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migration source {0:?} does not exist; add it with `tern migrate source add {0} --host HOST`")]
    NoSuchMigrationSource(String),
    #[error("migration source {0:?} is used by {1} migration(s); remove them first")]
    MigrationSourceInUse(String, u64),
    #[error("no migration for {0}; add one with `tern migrate add`")]
    NoSuchMigration(String),
    #[error("no queued message with id {0}; `tern queue list` shows the queue")]
    NoSuchQueueEntry(i64),
    #[error("domain {0} has no DKIM key with selector {1:?}; `tern domain dkim {0}` lists its keys")]
    NoSuchDkimKey(String, String),
    #[error("the write was not applied: {0}")]
    WriteFailed(String),
    #[error("the store is shut down")]
    Closed,
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}
