//! Bringing mail into Tern.
//!
//! Today this crate reads exported mailboxes — Maildir folders and mbox files, as
//! written by Dovecot, mutt/neomutt, Thunderbird or Python's `mailbox` module — for
//! `tern import maildir|mbox`. Later it will also hold the IMAP/POP3 migration passes
//! that copy mailboxes from a live old provider.
//!
//! The readers here know nothing of Tern's store: they yield plain
//! [`export::ExportedMessage`] values (the message bytes exactly as exported, flags,
//! keywords, internal date) and the caller appends them through the store.

pub mod export;
