//! Tern's POP3 server.
//!
//! POP3 (RFC 1939) lets a client download the mail in an account's INBOX and delete
//! it. Tern speaks it with the extensions current clients look for: CAPA and the
//! response codes (RFC 2449, RFC 3206), STLS (RFC 2595), AUTH PLAIN (RFC 5034,
//! RFC 4616), TOP and UIDL. There is no APOP: passwords are stored hashed.
//!
//! - [`command`]: a client line → a [`command::Command`].
//! - `session`: the AUTHORIZATION → TRANSACTION → UPDATE state machine.
//! - [`maildrop`]: the INBOX snapshot taken at login, the deletion marks and UIDLs.
//! - [`transfer`]: a message as a multi-line response (CRLF, byte-stuffing), streamed.
//! - `wire`: bounded line reading, reply batching and write deadlines.
//!
//! The maildrop is the INBOX of the same store IMAP uses, so both can be used at
//! once: a POP3 session sees the INBOX as it was at login (message numbers must not
//! move under it, RFC 1939 §5) and removes what it deleted only at QUIT (RFC 1939
//! §6). Several POP3 sessions of one account may be open together; the maildrop is
//! not locked (RFC 1939 §8 suggests a lock, but with snapshots and UID-based
//! deletion two sessions cannot corrupt each other, and refusing the second login
//! would only confuse a phone and a desktop that poll the same account).
//!
//! Message sizes in STAT and LIST are the stored sizes; see [`maildrop::Message::size`]
//! for the rare message where that differs from what RETR sends.

pub mod command;
pub mod maildrop;
mod session;
pub mod transfer;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use tern_net::auth::Authenticator;
use tern_net::listeners::{BoxFuture, ConnContext, Connection, Service, TlsMode};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::session::{Ending, Session};
use crate::wire::Wire;

/// How the POP3 server behaves.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// The name in the greeting.
    pub hostname: String,
    /// How long a session may wait for the client's next command before it is closed
    /// (RFC 1939 §3: the autologout timer "MUST be of at least 10 minutes").
    pub idle_timeout: Duration,
    /// The longest line a client may send, CRLF included. RFC 2449 §4 allows commands
    /// of 255 octets; an AUTH PLAIN response with a long user name and password can
    /// be longer (RFC 5034 §4 puts no limit on it), so the default is 2048. A longer
    /// line is refused with -ERR and the session goes on.
    pub max_line: usize,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".to_string(),
            idle_timeout: Duration::from_secs(10 * 60),
            max_line: 2048,
        }
    }
}

/// The POP3 server: one value serves every connection of the listeners it is given to.
pub struct Pop3Server {
    config: Pop3Config,
    auth: Arc<Authenticator>,
}

impl Pop3Server {
    /// A server checking logins with `auth`, whose store holds the mail.
    pub fn new(config: Pop3Config, auth: Arc<Authenticator>) -> Arc<Pop3Server> {
        Arc::new(Pop3Server { config, auth })
    }

    pub fn config(&self) -> &Pop3Config {
        &self.config
    }

    /// Runs one session on any stream, without STLS (the stream cannot be upgraded);
    /// `ctx.tls_active` says whether it is already encrypted. Listeners use
    /// [`Service::handle`]; this is for tests and embedding.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(&self, stream: S, ctx: ConnContext) {
        let mut session = Session::new(self, &ctx, false);
        let mut wire = Wire::new(stream, self.config.max_line);
        session.greet(&mut wire);
        match session.run(&mut wire).await {
            Ok(_) => {}
            Err(e) => debug!("POP3 session ended: {e}"),
        }
    }

    /// One session on a listener's connection, upgrading it when the client asks for
    /// STLS.
    async fn serve_connection(&self, conn: Connection, ctx: ConnContext) {
        // RFC 2595 §4: STLS only where the port is meant for it and a certificate is
        // loaded.
        let stls_possible = ctx.tls_mode == TlsMode::StartTls && ctx.tls_config.is_some();
        let mut session = Session::new(self, &ctx, stls_possible);
        let mut wire = Wire::new(conn, self.config.max_line);
        session.greet(&mut wire);
        loop {
            match session.run(&mut wire).await {
                Ok(Ending::Closed) => return,
                Ok(Ending::StartTls) => {
                    let Some(config) = ctx.tls_config.clone() else { return };
                    // into_stream drops whatever the client sent after STLS.
                    let conn = wire.into_stream();
                    match conn.start_tls(config, ctx.tls_handshake_timeout).await {
                        Ok(tls) => {
                            wire = Wire::new(tls, self.config.max_line);
                            session.tls_started();
                        }
                        Err(e) => {
                            debug!("STLS handshake failed: {e}");
                            return;
                        }
                    }
                }
                Err(e) => {
                    debug!("POP3 session ended: {e}");
                    return;
                }
            }
        }
    }
}

impl Service for Pop3Server {
    fn name(&self) -> &'static str {
        "pop3"
    }

    fn handle(self: Arc<Self>, conn: Connection, ctx: ConnContext) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.serve_connection(conn, ctx).await })
    }

    /// RFC 3206 §4: [SYS/TEMP], the client may try again later.
    fn busy_reply(&self) -> Option<&'static [u8]> {
        Some(b"-ERR [SYS/TEMP] too many connections\r\n")
    }
}
