//! Test support for Tern: generated mail corpora and fixtures that run real peers on
//! loopback (Dovecot now; Postfix in a later issue). Used by tests and benches only.

pub mod accounts;
pub mod corpus;
pub mod dovecot;
pub mod python;
