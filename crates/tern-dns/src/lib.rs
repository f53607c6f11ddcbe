//! The DNS side of moving a domain to Tern, and finding out why a client can't connect.
//!
//! - [`resolve`]: asking the system's or a given DNS server, answers kept apart by kind;
//! - [`records`]: the records a domain should publish for Tern (MX, SPF, DKIM, DMARC,
//!   MTA-STS, TLS-RPT, autoconfig/autodiscover names, SRV), as a zone-file snippet;
//! - [`check`]: what is published compared with that, finding by finding, and the
//!   answers of several resolvers compared (split-horizon DNS);
//! - [`golive`]: the MX watch that notices the switch and drives the last passes;
//! - [`doctor`]: what a user's mail client meets (names, ports, TLS and certificate,
//!   logins), checked step by step, for `tern doctor` and the `/setup/check` page.

pub mod check;
pub mod doctor;
pub mod golive;
pub mod records;
pub mod resolve;
