//! Test support for Tern: generated mail corpora (`corpus` for single messages,
//! `migration_corpus` for whole mailboxes), fixtures that run real peers on loopback
//! (Dovecot; Postfix for SMTP), and a small independent IMAP client that
//! fills and reads back mailboxes (`imap`). Used by tests and benches only.
//! For SMTP: in-process DNS (`dns`), Postfix (`postfix`), scripted peers (`smtp_peer`), dkimpy (`dkim_check`).
//! For webmail: Playwright scripts in headless Chromium (`browser`).
//! For ACME certificates: Let's Encrypt's test server, pebble (`pebble`).

pub mod accounts;
pub mod browser;
pub mod corpus;
pub mod dkim_check;
pub mod dns;
pub mod dovecot;
pub mod imap;
pub mod migration_corpus;
pub mod pebble;
pub mod postfix;
pub mod python;
pub mod smtp_peer;
