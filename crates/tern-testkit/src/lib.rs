//! Test support for Tern: generated mail corpora (`corpus` for single messages,
//! `migration_corpus` for whole mailboxes), fixtures that run real peers on loopback
//! (Dovecot now; Postfix in a later issue), and a small independent IMAP client that
//! fills and reads back mailboxes (`imap`). Used by tests and benches only.

pub mod accounts;
pub mod corpus;
pub mod dovecot;
pub mod imap;
pub mod migration_corpus;
pub mod python;
