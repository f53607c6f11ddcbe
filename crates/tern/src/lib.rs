//! Tern's server wiring, used by the `tern` binary: the configuration file, TLS, the
//! listener framework the protocol servers plug into, and starting/stopping a server.

pub mod config;
pub mod listeners;
pub mod server;
pub mod tls;
