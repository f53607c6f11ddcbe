//! Network plumbing shared by every protocol server (IMAP, POP3, SMTP, HTTP):
//!
//! - [`listeners`]: binding ports, connection limits, implicit TLS, STARTTLS upgrades and
//!   graceful shutdown; a protocol plugs in as a [`listeners::Service`].
//! - [`tls`]: loading and generating certificates.
//! - [`auth`]: password logins with delays, per-IP and per-account limits, and the
//!   plaintext policy.
//! - [`sasl`]: decoding SASL PLAIN responses (POP3 and SMTP AUTH).

pub mod auth;
pub mod listeners;
pub mod sasl;
pub mod tls;
