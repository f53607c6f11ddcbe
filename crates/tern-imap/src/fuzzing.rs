//! The path from raw client bytes to handled commands, without sockets, for the fuzz
//! target in `fuzz/` (cargo-fuzz) and for tests that feed a session a byte stream.
//!
//! A [`Harness`] holds a store with one account (`fuzz@example.test`, password
//! `fuzz`) and runs a whole session over an in-memory connection from a loopback
//! address, so LOGIN works without TLS and everything after it is reachable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_net::auth::{AuthLimits, Authenticator, PlaintextPolicy};
use tern_net::listeners::{ConnContext, Connection, ShutdownSignal, TlsMode};
use tern_store::{EmbeddedStore, NewAccount, NewMessage, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ImapConfig, ImapServer};

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    server: Arc<ImapServer>,
    _dir: tempfile_dir::Dir,
}

/// A temporary folder removed on drop (kept tiny to avoid a dependency).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Harness {
    pub fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = std::env::temp_dir().join(format!("tern-imap-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = runtime.block_on(async {
            let store = EmbeddedStore::open(&dir).expect("open store");
            store.create_domain("example.test").await.expect("domain");
            let account = store
                .create_account(NewAccount {
                    address: "fuzz@example.test".into(),
                    password_hash: Some(tern_store::password::hash("fuzz").expect("hash")),
                    ..Default::default()
                })
                .await
                .expect("account");
            let inbox = store.mailbox(account.id, "INBOX").await.expect("inbox");
            let samples = [
                &b"From: a@example.com\r\nSubject: one\r\n\r\nhello\r\n"[..],
                b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\npart\r\n--x--\r\n",
            ];
            store
                .append(inbox.id, samples.iter().map(|s| NewMessage::new(s.to_vec())).collect())
                .await
                .expect("append");
            let store: Arc<dyn Store> = Arc::new(store);
            let limits = AuthLimits {
                failure_delay: Duration::ZERO,
                max_failures_per_ip: u32::MAX,
                max_failures_per_account: u32::MAX,
                ..Default::default()
            };
            let auth = Arc::new(Authenticator::new(store, PlaintextPolicy::Loopback, limits));
            ImapServer::new(
                ImapConfig {
                    max_line: 4096,
                    max_message_size: 64 * 1024,
                    login_timeout: Duration::from_secs(2),
                    idle_timeout: Duration::from_secs(2),
                    write_timeout: Duration::from_secs(2),
                    ..Default::default()
                },
                auth,
            )
        });
        Harness {
            runtime,
            server,
            _dir: tempfile_dir::Dir(dir),
        }
    }

    /// Runs one session fed `input`, then end-of-stream; returns what the server said.
    pub fn run(&self, input: &[u8]) -> Vec<u8> {
        let server = self.server.clone();
        self.runtime.block_on(async move {
            let (client, server_end) = tokio::io::duplex(1 << 20);
            let (_trigger, shutdown) = ShutdownSignal::channel();
            let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
            let ctx = ConnContext {
                listener: "imap",
                peer,
                local: ([127, 0, 0, 1], 143).into(),
                tls_mode: TlsMode::Plain,
                tls_active: false,
                tls_config: None,
                tls_handshake_timeout: Duration::from_secs(1),
                shutdown,
            };
            let session = tokio::spawn(crate::session::run(server, Connection::Memory(server_end), ctx));
            let (mut rx, mut tx) = tokio::io::split(client);
            let input = input.to_vec();
            let writer = tokio::spawn(async move {
                let _ = tx.write_all(&input).await;
                let _ = tx.shutdown().await;
            });
            let mut output = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.read_to_end(&mut output)).await;
            let _ = writer.await;
            let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
            output
        })
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}
