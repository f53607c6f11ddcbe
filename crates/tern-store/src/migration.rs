//! What the store keeps for the migration engine (`tern-migrate`): the old providers
//! ("sources"), one migration per account, per source folder its progress, and the map
//! from each source message to the Tern message it became.
//!
//! The store gives these records durability and atomicity, not meaning: the settings,
//! requests and progress are JSON documents that `tern-migrate` defines, so the engine
//! can grow without a schema change for every field. What must be atomic is typed:
//! a migrated message's map entry is written in the same transaction as the message
//! itself ([`crate::NewMessage::migrated_from`]), which is what makes a pass safe to
//! kill at any moment — after a restart every source message is either in the map (and
//! in the mailbox) or in neither.

use serde::{Deserialize, Serialize};

use crate::{AccountId, MailboxId, ModSeq, Uid};

/// Row id of a migration (one per Tern account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MigrationId(pub i64);

/// Row id of one source folder of one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MigrationFolderId(pub i64);

/// An old provider's server, as `tern migrate source add` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSource {
    pub name: String,
    /// Host, port, TLS, protocol, presets: JSON owned by tern-migrate.
    pub settings: String,
    /// The admin ("master") password or token, encrypted by tern-migrate; `None` when
    /// each mailbox logs in with its own credentials.
    pub secret: Option<Vec<u8>>,
}

/// One account's migration from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub id: MigrationId,
    pub account: AccountId,
    /// The Tern address, for listings.
    pub address: String,
    pub source: String,
    /// The user name at the source.
    pub remote_user: String,
    /// Password or token, encrypted by tern-migrate; wiped (`None`) when it finishes.
    pub secret: Option<Vec<u8>>,
    /// What the administrator asked for (pass, pause, cancel): JSON written by the CLI.
    pub request: String,
    /// Where the worker is: JSON written by the worker. The two never write each
    /// other's column, so neither overwrites the other's news.
    pub progress: String,
    /// Unix seconds of the last change to either.
    pub updated: i64,
    /// The worker running it and until when its lease holds (unix seconds).
    pub lease: Option<(String, i64)>,
}

/// A migration to create. Creating one for an account that has one replaces its source,
/// user name and secret and keeps its progress and map (re-adding after a password
/// change must not copy everything again).
#[derive(Debug, Clone)]
pub struct NewMigration {
    pub account: AccountId,
    pub source: String,
    pub remote_user: String,
    pub secret: Option<Vec<u8>>,
    pub request: String,
}

/// One folder at the source and where it goes in Tern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFolder {
    pub id: MigrationFolderId,
    pub migration: MigrationId,
    /// The folder's name at the source, exactly as the source sends it.
    pub source_name: String,
    /// The Tern mailbox its messages go to.
    pub mailbox: MailboxId,
    /// UIDVALIDITY, last UIDNEXT and HIGHESTMODSEQ seen, counts: JSON owned by
    /// tern-migrate.
    pub state: String,
}

/// Where a migrated message came from: written in the same transaction as the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigrationOrigin {
    pub folder: MigrationFolderId,
    /// The message's identity at the source within the folder's UIDVALIDITY: its IMAP
    /// UID in decimal, or its POP3 UIDL.
    pub source_key: String,
}

/// A map entry: source message → Tern message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigratedMessage {
    pub source_key: String,
    /// The Tern UID in the folder's mailbox. The message may since have been moved or
    /// deleted by its user; the entry still says "already brought over".
    pub uid: Uid,
    /// The Tern message's MODSEQ after the migration last wrote it. A flag change from
    /// the source is applied only if the message has not changed since (the user's own
    /// changes win).
    pub modseq: ModSeq,
}
