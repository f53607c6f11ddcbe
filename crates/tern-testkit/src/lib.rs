//! Test support for Tern: generated mail corpora and (in later issues) fixtures that run
//! real peers — Dovecot, Postfix — on loopback. Used by tests and benches only.

pub mod corpus;
