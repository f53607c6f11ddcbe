//! The maildrop a POP3 session works on: the account's INBOX as it was at login.
//!
//! RFC 1939 §5: message numbers are fixed for the whole session, so the session takes a
//! snapshot when it enters the TRANSACTION state. Mail delivered later is not shown
//! until the next login, and a message another session (IMAP, webmail) expunges stays
//! numbered; reading it then fails cleanly. DELE only marks; the marked messages are
//! expunged at QUIT (the UPDATE state, RFC 1939 §6).

use std::collections::{HashMap, HashSet};

use tern_store::{Mailbox, MailboxId, MessageSummary, Uid};

use crate::command::MessageNumber;

/// One message of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: Uid,
    /// The size LIST, STAT and RETR report.
    ///
    /// RFC 1939 §5 asks for the exact octet count of the message as sent, which for a
    /// message stored with bare LF line ends is larger by one octet per bare LF (RETR
    /// sends CRLF). Counting that would mean reading every message at every login, so
    /// the stored size is reported, as Dovecot reports its cached size. Nearly every
    /// message is stored with CRLF (SMTP and IMAP APPEND deliver CRLF); only imports
    /// from LF-only mbox/Maildir files differ, and clients use the size only for
    /// progress and for skipping large messages.
    pub size: u64,
    /// The unique-id listing (RFC 1939 §7).
    pub uidl: String,
    pub deleted: bool,
}

/// Why a message number does not name a message the client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("no such message, only {0} messages in maildrop")]
    NoSuchMessage(usize),
    #[error("message {0} already deleted")]
    Deleted(MessageNumber),
}

/// The session's view of the INBOX.
#[derive(Debug, Clone)]
pub struct Maildrop {
    mailbox: MailboxId,
    messages: Vec<Message>,
}

impl Maildrop {
    /// A snapshot from the store's listing of the INBOX (in UID order) and the UIDLs
    /// that migrations carried over ([`tern_store::Store::pop3_uidls`]).
    pub fn new(mailbox: &Mailbox, summaries: Vec<MessageSummary>, migrated_uidls: Vec<(Uid, String)>) -> Self {
        let migrated: HashMap<Uid, String> = migrated_uidls
            .into_iter()
            .filter(|(_, uidl)| is_valid_uidl(uidl))
            .collect();
        let mut taken: HashSet<String> = HashSet::with_capacity(summaries.len());
        let mut messages = Vec::with_capacity(summaries.len());
        // Migrated UIDLs first: a client that left mail on the old server knows them, so
        // they must be kept exactly. Only a duplicate among them (which a broken old
        // server could have had) falls back to Tern's own form.
        let mut keep: HashMap<Uid, String> = HashMap::with_capacity(migrated.len());
        let mut uids: Vec<&Uid> = migrated.keys().collect();
        uids.sort_unstable();
        for &uid in uids {
            if let Some(uidl) = migrated.get(&uid)
                && taken.insert(uidl.clone())
            {
                keep.insert(uid, uidl.clone());
            }
        }
        for summary in summaries {
            let uidl = match keep.remove(&summary.uid) {
                Some(uidl) => uidl,
                None => own_uidl(mailbox.uidvalidity, summary.uid, &mut taken),
            };
            messages.push(Message {
                uid: summary.uid,
                size: summary.size,
                uidl,
                deleted: false,
            });
        }
        Maildrop {
            mailbox: mailbox.id,
            messages,
        }
    }

    /// The INBOX's id in the store.
    pub fn mailbox(&self) -> MailboxId {
        self.mailbox
    }

    /// Messages not marked deleted and their total size (STAT, RFC 1939 §5).
    pub fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(n, size), (_, m)| (n + 1, size + m.size))
    }

    /// Messages not marked deleted, with their numbers (LIST and UIDL without an
    /// argument, RFC 1939 §5 and §7).
    pub fn live(&self) -> impl Iterator<Item = (MessageNumber, &Message)> {
        self.numbered().filter(|(_, m)| !m.deleted)
    }

    /// Every message of the snapshot, marked or not, with its number.
    fn numbered(&self) -> impl Iterator<Item = (MessageNumber, &Message)> {
        // The snapshot is built from a u32-numbered listing, so numbers fit; saturate
        // rather than wrap if a backend ever returned more.
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| (MessageNumber::try_from(i + 1).unwrap_or(MessageNumber::MAX), m))
    }

    /// The message numbered `n`, unless it does not exist or is marked deleted
    /// (RFC 1939 §5: "may NOT refer to a message marked as deleted").
    pub fn get(&self, n: MessageNumber) -> Result<&Message, NumberError> {
        let message = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.messages.get(i))
            .ok_or(NumberError::NoSuchMessage(self.messages.len()))?;
        if message.deleted {
            return Err(NumberError::Deleted(n));
        }
        Ok(message)
    }

    /// Marks a message deleted (DELE, RFC 1939 §5).
    pub fn mark_deleted(&mut self, n: MessageNumber) -> Result<(), NumberError> {
        self.get(n)?;
        if let Some(message) = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.messages.get_mut(i))
        {
            message.deleted = true;
        }
        Ok(())
    }

    /// Unmarks every message (RSET, RFC 1939 §5).
    pub fn unmark_all(&mut self) {
        for message in &mut self.messages {
            message.deleted = false;
        }
    }

    /// The UIDs to expunge at QUIT (RFC 1939 §6).
    pub fn marked(&self) -> Vec<Uid> {
        self.messages.iter().filter(|m| m.deleted).map(|m| m.uid).collect()
    }
}

/// RFC 1939 §7: "The unique-id of a message is an arbitrary server-determined string,
/// consisting of one to 70 characters in the range 0x21 to 0x7E".
pub fn is_valid_uidl(uidl: &str) -> bool {
    (1..=70).contains(&uidl.len()) && uidl.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// Tern's own UIDL for a message: UIDVALIDITY and UID. Stable across sessions, and
/// never given to another message, because UIDs are never reused within one
/// UIDVALIDITY (RFC 9051 §2.3.1.1) — the same promise RFC 1939 §7 asks of a UIDL.
///
/// A migrated UIDL could by chance have the same form (an old server that also used
/// "uidvalidity.uid"); then a suffix keeps them apart, so a client that already has the
/// migrated message does not skip this one.
fn own_uidl(uidvalidity: u32, uid: Uid, taken: &mut HashSet<String>) -> String {
    let plain = format!("{uidvalidity}.{uid}");
    let mut candidate = plain.clone();
    let mut n = 1u32;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{plain}.t{n}");
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::{AccountId, Flags};

    fn mailbox() -> Mailbox {
        Mailbox {
            id: MailboxId(7),
            account: AccountId(1),
            name: "INBOX".into(),
            special_use: None,
            subscribed: true,
            uidvalidity: 1_700_000_000,
            uidnext: 10,
            highest_modseq: 1,
            messages: 0,
            unseen: 0,
            deleted: 0,
            size: 0,
        }
    }

    fn summary(uid: Uid, size: u64) -> MessageSummary {
        MessageSummary {
            uid,
            modseq: 1,
            flags: Flags::default(),
            internal_date: 0,
            save_date: 0,
            size,
        }
    }

    fn drop3() -> Maildrop {
        Maildrop::new(
            &mailbox(),
            vec![summary(3, 100), summary(5, 200), summary(9, 300)],
            vec![(5, "old-server-uidl-5".into())],
        )
    }

    #[test]
    fn numbers_sizes_and_uidls() {
        let d = drop3();
        assert_eq!(d.stat(), (3, 600));
        let listed: Vec<_> = d.live().map(|(n, m)| (n, m.uid, m.size, m.uidl.as_str())).collect();
        assert_eq!(
            listed,
            [
                (1, 3, 100, "1700000000.3"),
                (2, 5, 200, "old-server-uidl-5"),
                (3, 9, 300, "1700000000.9")
            ]
        );
        assert_eq!(d.get(0), Err(NumberError::NoSuchMessage(3)));
        assert_eq!(d.get(4), Err(NumberError::NoSuchMessage(3)));
        assert_eq!(d.get(2).map(|m| m.uid), Ok(5));
        assert!(d.live().all(|(_, m)| is_valid_uidl(&m.uidl)));
    }

    #[test]
    fn dele_marks_rset_unmarks() {
        let mut d = drop3();
        d.mark_deleted(2).expect("dele");
        assert_eq!(d.mark_deleted(2), Err(NumberError::Deleted(2)));
        assert_eq!(d.get(2), Err(NumberError::Deleted(2)));
        assert_eq!(d.stat(), (2, 400));
        assert_eq!(
            d.live().map(|(n, _)| n).collect::<Vec<_>>(),
            [1, 3],
            "numbers do not shift"
        );
        assert_eq!(d.marked(), [5]);
        d.unmark_all();
        assert_eq!(d.stat(), (3, 600));
        assert!(d.marked().is_empty());
    }

    #[test]
    fn invalid_or_duplicate_migrated_uidls_fall_back_and_collisions_are_avoided() {
        let d = Maildrop::new(
            &mailbox(),
            vec![summary(1, 1), summary(2, 1), summary(3, 1), summary(4, 1)],
            vec![
                (1, "has space".into()),
                (2, "dup".into()),
                (3, "dup".into()),
                // An old server's UIDL that looks like Tern's own form for UID 1.
                (4, "1700000000.1".into()),
            ],
        );
        let uidls: Vec<_> = d.live().map(|(_, m)| m.uidl.clone()).collect();
        assert_eq!(uidls, ["1700000000.1.t1", "dup", "1700000000.3", "1700000000.1"]);
        assert!(!is_valid_uidl(""));
        assert!(!is_valid_uidl(&"x".repeat(71)));
        assert!(is_valid_uidl(&"x".repeat(70)));
        assert!(!is_valid_uidl("caf\u{e9}"));
    }
}
