//! Tern's server wiring, used by the `tern` binary: the configuration file and starting
//! and stopping a server. The listener framework and TLS live in `tern-net`, shared with
//! the protocol crates; they are re-exported here under their old paths.

pub mod acme;
pub mod config;
pub mod server;

pub use tern_net::{listeners, tls};
