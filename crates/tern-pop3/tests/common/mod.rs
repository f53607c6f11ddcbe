//! A POP3 server on loopback for the tests: a fresh store with one account, Tern's real
//! listeners (a STARTTLS port and an implicit-TLS port when TLS is on), and helpers to
//! drive it with real clients (Python's poplib, curl) and with a bare socket.

#![allow(dead_code)] // Each test file uses a different part of this.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tern_net::auth::{AuthLimits, Authenticator, PlaintextPolicy};
use tern_net::listeners::{Limits, ListenerSpec, Listeners, TlsMode};
use tern_pop3::{Pop3Config, Pop3Server};
use tern_store::{Appended, Mailbox, NewMessage, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const USER: &str = "alice@example.test";
pub const PASSWORD: &str = "correct horse battery";

/// Which server to start.
pub struct Options {
    pub policy: PlaintextPolicy,
    pub tls: bool,
    pub config: Pop3Config,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: PlaintextPolicy::Loopback,
            tls: true,
            config: Pop3Config {
                hostname: "mail.example.test".into(),
                ..Pop3Config::default()
            },
            limits: Limits::default(),
        }
    }
}

pub struct Server {
    pub store: Arc<dyn Store>,
    /// The STARTTLS port (plain when TLS is off).
    pub pop3: SocketAddr,
    /// The implicit-TLS port, when TLS is on.
    pub pop3s: Option<SocketAddr>,
    /// The self-signed certificate the server presents (valid for 127.0.0.1).
    pub cert: PathBuf,
    listeners: Option<Listeners>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Server {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store: Arc<dyn Store> =
            Arc::new(tern_testkit::accounts::store_with_account(&dir.path().join("store"), USER, PASSWORD).await);
        let auth = Arc::new(Authenticator::new(
            store.clone(),
            options.policy,
            AuthLimits {
                failure_delay: Duration::from_millis(10),
                ..Default::default()
            },
        ));
        let server = Pop3Server::new(options.config, auth);
        let cert = dir.path().join("cert.pem");
        let (tls, mut specs) = if options.tls {
            let key = dir.path().join("key.pem");
            tern_net::tls::generate_self_signed("mail.example.test", &cert, &key).expect("certificate");
            let config = tern_net::tls::load_server_config(&cert, &key).expect("tls config");
            let pop3s = ListenerSpec {
                name: "pop3s",
                addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
                tls_mode: TlsMode::Implicit,
                service: server.clone(),
            };
            (Some(config), vec![pop3s])
        } else {
            (None, Vec::new())
        };
        specs.push(ListenerSpec {
            name: "pop3",
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            tls_mode: if options.tls { TlsMode::StartTls } else { TlsMode::Plain },
            service: server,
        });
        let listeners = Listeners::bind(specs, tls, options.limits).await.expect("bind");
        let find = |name: &str| {
            listeners
                .local_addrs()
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, addr)| *addr)
        };
        let pop3 = find("pop3").expect("pop3 bound");
        let pop3s = find("pop3s");
        Server {
            store,
            pop3,
            pop3s,
            cert,
            listeners: Some(listeners),
            _dir: dir,
        }
    }

    pub async fn inbox(&self) -> Mailbox {
        let account = self.store.account(USER).await.expect("account");
        self.store.mailbox(account.id, "INBOX").await.expect("inbox")
    }

    /// Appends messages to the INBOX, in order.
    pub async fn deliver(&self, messages: Vec<NewMessage>) -> Vec<Appended> {
        let inbox = self.inbox().await;
        self.store.append(inbox.id, messages).await.expect("append")
    }

    pub async fn deliver_raw(&self, raws: &[&[u8]]) -> Vec<Appended> {
        self.deliver(raws.iter().map(|r| NewMessage::new(r.to_vec())).collect())
            .await
    }

    /// UIDs in the INBOX now.
    pub async fn inbox_uids(&self) -> Vec<u32> {
        let inbox = self.inbox().await;
        self.store
            .messages(inbox.id)
            .await
            .expect("messages")
            .iter()
            .map(|m| m.uid)
            .collect()
    }

    /// Waits until no session is running (a client that just disconnected has been
    /// noticed and its session has finished).
    pub async fn wait_for_no_sessions(&self) {
        let listeners = self.listeners.as_ref().expect("running");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while listeners.live_sessions() > 0 {
            assert!(std::time::Instant::now() < deadline, "sessions still running");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Signals shutdown and waits for the sessions to end.
    pub async fn stop(mut self) -> tern_net::listeners::ShutdownReport {
        let listeners = self.listeners.take().expect("running");
        listeners.shutdown(Duration::from_secs(5)).await
    }

    /// `host:port` of the STARTTLS (or plain) port, for curl URLs.
    pub fn pop3_authority(&self) -> String {
        self.pop3.to_string()
    }
}

/// Runs a Python script (standard library only) off the async workers, so the server
/// keeps serving while the script talks to it, and parses the JSON it prints.
pub async fn python(script: &'static str, args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>).collect();
        tern_testkit::python::run_json(script, &args)
    })
    .await
    .expect("python task")
}

/// What a curl run printed and how it ended.
pub struct CurlOutput {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs curl with the given arguments (off the async workers).
pub async fn curl(args: Vec<String>) -> CurlOutput {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20"])
            .args(&args)
            .output()
            .expect("curl must be installed to run this test");
        CurlOutput {
            status: out.status,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("curl task")
}

/// Runs curl and insists it succeeds; returns what it printed.
pub async fn curl_ok(args: &[&str]) -> Vec<u8> {
    let out = curl(args.iter().map(|a| a.to_string()).collect()).await;
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        out.stderr
    );
    out.stdout
}

/// What a POP3 client receives for a message: every line ending CRLF (bare LF made
/// CRLF) and a final CRLF added when the message lacks one.
pub fn on_the_wire(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 2);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A bare-socket POP3 client for what no real client will do on purpose.
pub struct Client {
    conn: BufReader<TcpStream>,
}

impl Client {
    /// Connects and returns the client with the greeting.
    pub async fn connect(addr: SocketAddr) -> (Client, String) {
        let conn = TcpStream::connect(addr).await.expect("connect");
        let mut client = Client {
            conn: BufReader::new(conn),
        };
        let greeting = client.line().await;
        (client, greeting)
    }

    /// Connects and logs in with USER/PASS.
    pub async fn login(addr: SocketAddr) -> Client {
        let (mut client, greeting) = Self::connect(addr).await;
        assert!(greeting.starts_with("+OK"), "{greeting}");
        assert!(client.cmd(&format!("USER {USER}")).await.starts_with("+OK"));
        let reply = client.cmd(&format!("PASS {PASSWORD}")).await;
        assert!(reply.starts_with("+OK"), "{reply}");
        client
    }

    /// The next line without its CRLF, or `None` when the server has closed the
    /// connection (or reset it).
    pub async fn next_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.conn.read_until(b'\n', &mut line))
            .await
            .expect("a reply in time")
            .unwrap_or(0);
        (n > 0).then(|| {
            String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string()
        })
    }

    /// The next line; panics if the connection is closed.
    pub async fn line(&mut self) -> String {
        self.next_line().await.expect("a line, not the end of the connection")
    }

    /// The lines of a multi-line response after its status line, up to the ".".
    pub async fn body(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            if line == "." {
                return lines;
            }
            lines.push(line);
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.conn.get_mut().write_all(bytes).await.expect("write");
    }

    /// Sends a command line and returns the status line of the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.line().await
    }

    /// Waits until the server closes the connection; returns what came before.
    pub async fn until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.next_line().await {
            lines.push(line);
        }
        lines
    }
}

/// The certificate's path as a string for Python and curl.
pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temporary path").to_string()
}
