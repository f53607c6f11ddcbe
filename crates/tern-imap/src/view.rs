//! A session's view of its selected mailbox: which UID each message sequence number
//! means, and what the client has been told.
//!
//! The store is the truth; other sessions, SMTP delivery, migration and webmail change
//! it at any time. The view catches up with [`View::sync`], which turns what changed
//! into the untagged responses of RFC 9051 §7.4 and RFC 7162 §3.2.10 — EXISTS for new
//! mail, EXPUNGE (or VANISHED under QRESYNC) for removed mail, FETCH FLAGS for flag
//! changes — while keeping the rule that sequence numbers must not shift under a
//! command that uses them (RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE or SEARCH).
//!
//! The view also keeps each message's summary (flags, dates, size, modseq) as of its
//! last sync, like Dovecot's index: FETCH FLAGS, SEARCH on flags and dates, and STORE
//! replies are answered from it instead of the store. It stays exact because every
//! flag change reaches it, other sessions' through `sync` and the session's own through
//! [`View::saw`].

use std::collections::BTreeSet;
use std::sync::Arc;

use tern_store::{Mailbox, MailboxId, MessageSummary, ModSeq, Store, Uid};
use tokio::sync::broadcast;

use crate::response::Out;

pub struct View {
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// UID of each message, by sequence number - 1; ascending.
    uids: Vec<Uid>,
    /// Each message as the client was last told of it, parallel to `uids`.
    messages: Vec<MessageSummary>,
    /// Everything up to here has been reflected in the view (or is pending below).
    known_modseq: ModSeq,
    /// Expunged in the store, not yet announced: still hold their sequence numbers.
    pending_expunge: BTreeSet<Uid>,
    /// Set when the change bus said this mailbox changed.
    dirty: bool,
}

/// What a session has enabled, which shapes the unsolicited responses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Announce {
    /// Include MODSEQ in FETCH (CONDSTORE enabled, RFC 7162 §3.1.4).
    pub modseq: bool,
    /// Use VANISHED instead of EXPUNGE (QRESYNC enabled, RFC 7162 §3.2.10).
    pub vanished: bool,
    /// Whether EXPUNGE/VANISHED may be sent now.
    pub expunges: bool,
}

impl View {
    pub fn new(mailbox: Mailbox, read_only: bool, messages: Vec<MessageSummary>) -> View {
        let known_modseq = messages
            .iter()
            .map(|m| m.modseq)
            .max()
            .unwrap_or(0)
            .max(mailbox.highest_modseq);
        View {
            mailbox,
            read_only,
            uids: messages.iter().map(|m| m.uid).collect(),
            messages,
            known_modseq,
            pending_expunge: BTreeSet::new(),
            dirty: false,
        }
    }

    pub fn id(&self) -> MailboxId {
        self.mailbox.id
    }

    /// Messages as the client counts them (including ones expunged but not yet announced).
    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn uids(&self) -> &[Uid] {
        &self.uids
    }

    pub fn seq_of(&self, uid: Uid) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    pub fn max_uid(&self) -> Option<Uid> {
        self.uids.last().copied()
    }

    pub fn highest_modseq(&self) -> ModSeq {
        self.known_modseq
    }

    /// Records a flag change the client has been told of (its own STORE, the \Seen a
    /// FETCH set).
    pub fn saw(&mut self, uid: Uid, flags: &tern_store::Flags, modseq: ModSeq) {
        if let Ok(i) = self.uids.binary_search(&uid)
            && modseq >= self.messages[i].modseq
        {
            self.messages[i].modseq = modseq;
            self.messages[i].flags.clone_from(flags);
        }
    }

    /// A message's summary as of the last sync; `None` if it is gone or expunged and
    /// not yet announced.
    pub fn summary(&self, uid: Uid) -> Option<&MessageSummary> {
        let i = self.uids.binary_search(&uid).ok()?;
        (!self.pending_expunge.contains(&uid)).then(|| &self.messages[i])
    }

    /// Looks at the change bus without waiting; true if this mailbox changed.
    pub fn poll_bus(&mut self, bus: &mut broadcast::Receiver<tern_store::ChangeEvent>) -> bool {
        loop {
            match bus.try_recv() {
                Ok(event) => {
                    if event.mailbox == self.mailbox.id && event.modseq > self.known_modseq {
                        self.dirty = true;
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.dirty = true,
                Err(_) => return self.dirty,
            }
        }
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Brings the view up to date with the store and writes the untagged responses.
    /// Only asks the store when something changed (`force` for NOOP, CHECK and IDLE,
    /// which also catch writers in other processes, such as `tern import`).
    pub async fn sync(
        &mut self,
        store: &Arc<dyn Store>,
        bus: &mut broadcast::Receiver<tern_store::ChangeEvent>,
        announce: Announce,
        force: bool,
        out: &mut Out,
    ) -> tern_store::Result<()> {
        self.poll_bus(bus);
        if self.dirty || force {
            self.dirty = false;
            let changes = store.changes_since(self.mailbox.id, self.known_modseq).await?;
            let last = self.max_uid().unwrap_or(0);
            let mut new: Vec<&MessageSummary> = Vec::new();
            for m in &changes.changed {
                self.known_modseq = self.known_modseq.max(m.modseq);
                if m.uid > last {
                    new.push(m);
                } else if let Ok(i) = self.uids.binary_search(&m.uid)
                    && m.modseq > self.messages[i].modseq
                    && !self.pending_expunge.contains(&m.uid)
                {
                    self.messages[i] = m.clone();
                    // RFC 9051 §7.5.2: unsolicited FETCH with the new flags; the UID
                    // is included so QRESYNC clients can use it (RFC 7162 §3.2.4).
                    out.raw(b"* ").num(i as u32 + 1).raw(b" FETCH (UID ").num(m.uid);
                    out.raw(b" FLAGS ").flags(&m.flags, false);
                    if announce.modseq {
                        out.raw(b" MODSEQ (").num(m.modseq).raw(b")");
                    }
                    out.raw(b")").crlf();
                }
            }
            for uid in changes.vanished {
                if self.uids.binary_search(&uid).is_ok() {
                    self.pending_expunge.insert(uid);
                }
            }
            if let Ok(mailbox) = store.mailbox_by_id(self.mailbox.id).await {
                self.known_modseq = self.known_modseq.max(mailbox.highest_modseq);
                self.mailbox = mailbox;
            }
            if !new.is_empty() {
                new.sort_by_key(|m| m.uid);
                for m in new {
                    self.uids.push(m.uid);
                    self.messages.push(m.clone());
                }
                out.raw(b"* ").num(self.exists()).raw(b" EXISTS").crlf();
            }
        }
        if announce.expunges {
            self.announce_expunges(announce.vanished, out);
        }
        Ok(())
    }

    /// Removes messages this session itself expunged (EXPUNGE, MOVE) and announces them.
    pub fn expunged(&mut self, uids: &[Uid], vanished: bool, out: &mut Out) {
        self.pending_expunge
            .extend(uids.iter().copied().filter(|u| self.uids.binary_search(u).is_ok()));
        self.announce_expunges(vanished, out);
    }

    fn announce_expunges(&mut self, vanished: bool, out: &mut Out) {
        if self.pending_expunge.is_empty() {
            return;
        }
        let gone: Vec<Uid> = std::mem::take(&mut self.pending_expunge).into_iter().collect();
        if vanished {
            // RFC 7162 §3.2.10: one VANISHED response with the UIDs.
            out.raw(b"* VANISHED ")
                .text(&crate::response::sequence_set(&gone))
                .crlf();
        }
        // From the highest sequence number down, so each number is still valid when it
        // is sent (RFC 9051 §7.5.1: numbers above an expunged one shift down at once);
        // going down, the numbers in the unchanged list are the ones to send.
        if !vanished {
            for uid in gone.iter().rev() {
                if let Ok(i) = self.uids.binary_search(uid) {
                    out.raw(b"* ").num(i as u32 + 1).raw(b" EXPUNGE").crlf();
                }
            }
        }
        self.messages.retain(|m| gone.binary_search(&m.uid).is_err());
        self.uids.retain(|u| gone.binary_search(u).is_err());
    }
}
