//! Network plumbing shared by every protocol server (IMAP, POP3, SMTP, HTTP):
//!
//! - [`listeners`]: binding ports, connection limits, implicit TLS, STARTTLS upgrades and
//!   graceful shutdown; a protocol plugs in as a [`listeners::Service`].
//! - [`tls`]: loading and generating certificates.
//! - [`auth`]: password logins with delays, per-IP and per-account limits, and the
//!   plaintext policy.
//! - [`sasl`]: decoding SASL PLAIN responses (POP3 and SMTP AUTH).
//! - [`replay`]: a stream that first gives back bytes already read (POP3 before STLS).
//! - [`endpoints`]: the host name and ports clients connect to, for everything that
//!   tells a client how (autoconfig, setup page, SRV records, `tern doctor`).

pub mod auth;
pub mod endpoints;
pub mod listeners;
pub mod replay;
pub mod sasl;
pub mod tls;
