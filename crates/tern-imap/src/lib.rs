//! Tern's IMAP server: IMAP4rev2 (RFC 9051) for clients that enable it, IMAP4rev1
//! (RFC 3501) for everyone else, with the extensions desktop and phone clients use.
//!
//! How a connection flows:
//!
//! - [`framing`] splits the byte stream into whole commands (lines and literals) with
//!   every limit enforced before bytes are buffered;
//! - imap-codec parses a command; [`extensions`] first lifts out the syntax the codec
//!   does not know (ESEARCH's `RETURN (…)`);
//! - [`session`] holds the connection's state (not authenticated, authenticated,
//!   selected) and hands each command to its family's module under [`commands`];
//! - [`view`] is the selected mailbox as this client sees it, kept in step with the
//!   store through the change bus;
//! - [`response`] writes the responses.
//!
//! The server knows the store only through its trait ([`tern_store::Store`]).

mod body;
mod commands;
mod decode;
mod extensions;
mod framing;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod names;
mod response;
mod session;
mod stream;
mod view;

use std::sync::Arc;
use std::time::Duration;

use tern_net::auth::Authenticator;
use tern_net::listeners::{BoxFuture, ConnContext, Connection, Service};

/// Settings of the IMAP server.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// The server's name, in the greeting.
    pub hostname: String,
    /// Largest message APPEND accepts (advertised as APPENDLIMIT, RFC 7889).
    pub max_message_size: u64,
    /// Longest command line, literals not counted.
    pub max_line: usize,
    /// How long a session may say nothing before it is logged out: at least 30 minutes
    /// once authenticated (RFC 9051 §5.4); IDLE restarts it.
    pub idle_timeout: Duration,
    /// How long a client that has not logged in may stay silent.
    pub login_timeout: Duration,
    /// How long one write may wait for a client that does not read.
    pub write_timeout: Duration,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".into(),
            max_message_size: 64 * 1024 * 1024,
            max_line: 64 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// The IMAP service for Tern's listeners.
pub struct ImapServer {
    pub(crate) config: ImapConfig,
    pub(crate) auth: Arc<Authenticator>,
}

impl ImapServer {
    pub fn new(config: ImapConfig, auth: Arc<Authenticator>) -> Arc<ImapServer> {
        Arc::new(ImapServer { config, auth })
    }
}

impl Service for ImapServer {
    fn name(&self) -> &'static str {
        "imap"
    }

    fn handle(self: Arc<Self>, conn: Connection, ctx: ConnContext) -> BoxFuture<'static, ()> {
        Box::pin(session::run(self, conn, ctx))
    }

    fn busy_reply(&self) -> Option<&'static [u8]> {
        // RFC 9051 §7.1.5.
        Some(b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n")
    }
}
