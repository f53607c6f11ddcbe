//! A Tern IMAP server on a free loopback port, over a fresh store, for each test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_imap::{ImapConfig, ImapServer};
use tern_net::auth::{AuthLimits, Authenticator, PlaintextPolicy};
use tern_net::listeners::{Limits, ListenerSpec, Listeners, TlsMode};
use tern_store::{EmbeddedStore, NewMessage, Store};

pub const USER: &str = "alice@example.test";
pub const PASSWORD: &str = "correct horse";

pub struct Server {
    pub store: EmbeddedStore,
    pub addr: SocketAddr,
    /// The implicit-TLS port, with the certificate's path.
    pub tls: Option<(SocketAddr, std::path::PathBuf)>,
    listeners: Option<Listeners>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(PlaintextPolicy::Loopback, ImapConfig::default()).await
    }

    pub async fn start_with(policy: PlaintextPolicy, config: ImapConfig) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tern_testkit::accounts::store_with_account(&dir.path().join("store"), USER, PASSWORD).await;
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let limits = AuthLimits {
            failure_delay: Duration::from_millis(10),
            ..Default::default()
        };
        let auth = Arc::new(Authenticator::new(shared, policy, limits));
        let server = ImapServer::new(config, auth);
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        tern_net::tls::generate_self_signed("localhost", &cert, &key).expect("certificate");
        let tls = tern_net::tls::load_server_config(&cert, &key).expect("tls config");
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let specs = vec![
            ListenerSpec {
                name: "imap",
                addrs: vec![loopback],
                tls_mode: TlsMode::StartTls,
                service: server.clone(),
            },
            ListenerSpec {
                name: "imaps",
                addrs: vec![loopback],
                tls_mode: TlsMode::Implicit,
                service: server,
            },
        ];
        let listeners = Listeners::bind(specs, Some(tls), Limits::default())
            .await
            .expect("bind");
        let addr_of = |name: &str| {
            listeners
                .local_addrs()
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .expect("bound")
        };
        let addr = addr_of("imap");
        let tls_addr = addr_of("imaps");
        Server {
            store,
            addr,
            tls: Some((tls_addr, cert)),
            listeners: Some(listeners),
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub async fn inbox(&self) -> tern_store::Mailbox {
        let account = self.store.account(USER).await.expect("account");
        self.store.mailbox(account.id, "INBOX").await.expect("inbox")
    }

    /// Delivers messages to INBOX the way SMTP delivery will: straight into the store.
    pub async fn deliver(&self, messages: Vec<Vec<u8>>) -> Vec<u32> {
        let inbox = self.inbox().await;
        let appended = self
            .store
            .append(inbox.id, messages.into_iter().map(NewMessage::new).collect())
            .await
            .expect("deliver");
        appended.iter().map(|a| a.uid).collect()
    }

    pub async fn stop(mut self) {
        if let Some(l) = self.listeners.take() {
            l.shutdown(Duration::from_secs(2)).await;
        }
    }
}

/// Runs a Python script with the server's port and credentials as arguments and returns
/// its JSON output, off the async workers (the server keeps serving meanwhile).
pub async fn python(port: u16, script: &'static str, extra: &[&str]) -> serde_json::Value {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || run_python(port, script, &extra))
        .await
        .expect("python task")
}

fn run_python(port: u16, script: &str, extra: &[String]) -> serde_json::Value {
    let port = port.to_string();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&port, &USER, &PASSWORD];
    for e in extra {
        args.push(e);
    }
    tern_testkit::python::run_json(script, &args)
}

/// A bare IMAP client for protocol tests: sends lines, reads responses verbatim.
pub struct Client {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    pub greeting: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        use tokio::io::AsyncBufReadExt;
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (r, w) = stream.into_split();
        let mut reader = tokio::io::BufReader::new(r);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).await.expect("greeting");
        Client {
            reader,
            writer: w,
            greeting,
        }
    }

    pub async fn login(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        let r = c.run(&format!("l LOGIN {USER} \"{PASSWORD}\"")).await;
        assert!(r.last().expect("reply").starts_with("l OK"), "{r:?}");
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.expect("write");
    }

    /// One response line (CRLF stripped), or `None` after `timeout`.
    pub async fn line(&mut self, timeout: Duration) -> Option<String> {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        match tokio::time::timeout(timeout, self.reader.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => Some(line.trim_end_matches(['\r', '\n']).to_string()),
            _ => None,
        }
    }

    /// Reads exactly `n` bytes (a literal's content).
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(30), self.reader.read_exact(&mut buf))
            .await
            .expect("literal in time")
            .expect("literal");
        buf
    }

    /// Sends `tag …` and returns every line up to and including the tagged one.
    pub async fn run(&mut self, command: &str) -> Vec<String> {
        let tag = command.split(' ').next().expect("tag").to_string();
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.until(&tag).await
    }

    pub async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line(Duration::from_secs(10)).await.expect("response line");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}
