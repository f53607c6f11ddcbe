//! The mailbox store: the single source of truth for every mailbox in Tern.
//!
//! IMAP, POP3, SMTP delivery, webmail and the migration engine all write through the
//! [`Store`] trait, so they can work on the same mailbox at the same time. Live sessions
//! learn about each other's changes from the change bus ([`Store::subscribe`]).
//!
//! The embedded backend ([`EmbeddedStore`]) keeps accounts, mailboxes and message metadata
//! in SQLite (WAL) and message bodies in content-addressed blob files under the data folder.
//! A later backend (PostgreSQL) implements the same trait and must pass the same
//! conformance suite (`tests/conformance`).

mod address;
mod blob;
mod changes;
mod embedded;
mod error;
pub mod lease;
pub mod listing;
pub mod metadata;
mod migration;
mod outbound;
pub mod password;
pub mod setting;
mod store;
mod types;
pub mod utf7;

pub use address::{EmailAddress, normalise_domain};
pub use blob::{BlobHash as ContentHash, hash as content_hash};
pub use changes::{ChangeEvent, ChangeKind};
pub use embedded::EmbeddedStore;
pub use error::StoreError;
pub use listing::{ListItem, ListPage, ListQuery, ListSort};
pub use metadata::MessageMetadata;
pub use migration::*;
pub use outbound::*;
pub use store::Store;
pub use types::*;

/// Result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
