//! The change bus: every committed change to a mailbox is published here, so live
//! sessions (IMAP IDLE, webmail) learn of appends, flag changes and expunges made by
//! anyone else within milliseconds of the commit.
//!
//! Events are published only after the transaction commits, in commit order. A
//! subscriber that falls too far behind gets `RecvError::Lagged` and must resynchronise
//! from the store (a full mailbox listing or CONDSTORE changes since its last modseq).
//! The bus is per process: servers and the CLI in other processes are seen through
//! the database on the next read, and multi-node installations relay it (PostgreSQL
//! LISTEN/NOTIFY) in their backend.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::{AccountId, MailboxId, ModSeq, Uid};

/// Events a slow subscriber may fall behind by before it must resynchronise.
const CAPACITY: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeEvent {
    pub account: AccountId,
    /// The mailbox concerned (for a delete, the id it had).
    pub mailbox: MailboxId,
    /// The mailbox's HIGHESTMODSEQ after the change.
    pub modseq: ModSeq,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ChangeKind {
    Appended(Vec<Uid>),
    FlagsChanged(Vec<Uid>),
    Expunged(Vec<Uid>),
    MailboxCreated { name: String },
    MailboxRenamed { from: String, to: String },
    MailboxDeleted { name: String },
    Subscription { name: String, subscribed: bool },
}

#[derive(Debug, Clone)]
pub(crate) struct ChangeBus {
    tx: broadcast::Sender<ChangeEvent>,
}

impl ChangeBus {
    pub fn new() -> Self {
        ChangeBus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.tx.subscribe()
    }
    pub fn publish(&self, events: impl IntoIterator<Item = ChangeEvent>) {
        for e in events {
            // No subscriber is not an error: nobody is watching right now.
            let _ = self.tx.send(e);
        }
    }
}
