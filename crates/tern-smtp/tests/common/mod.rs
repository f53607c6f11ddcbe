//! A Tern SMTP server on loopback for the tests: a fresh store with example.test
//! (alice, bob, an alias, DKIM keys), a self-signed certificate, the three SMTP
//! listeners on free ports, the delivery worker, and an in-process DNS server that
//! answers every lookup the server makes. Peers (python's smtplib, swaks, Postfix) talk
//! to it over real sockets.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_net::auth::{AuthLimits, Authenticator, PlaintextPolicy};
use tern_net::listeners::{Limits, ListenerSpec, Listeners, TlsMode};
use tern_smtp::SmtpConfig;
use tern_smtp::queue::Queue;
use tern_store::{DkimAlgorithm, EmbeddedStore, INBOX, NewAccount, Store};
use tern_testkit::dns::TestDns;

pub const DOMAIN: &str = "example.test";
pub const HOSTNAME: &str = "mail.example.test";
pub const ALICE: &str = "alice@example.test";
pub const BOB: &str = "bob@example.test";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub embedded: EmbeddedStore,
    pub dns: TestDns,
    pub smtp: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    pub queue: Queue,
    pub config: SmtpConfig,
    /// The server behind the listeners (for calls without a socket: webmail's submit).
    pub server: Arc<tern_smtp::SmtpServer>,
    listeners: Option<Listeners>,
    stop_delivery: Option<tokio::sync::watch::Sender<bool>>,
}

/// Options a test may change before the server starts.
pub struct Setup {
    pub config: SmtpConfig,
    /// Seconds before the first retry of a deferred delivery.
    pub first_retry: Duration,
    /// Start the delivery worker (off when a test inspects the queue itself).
    pub deliver: bool,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut Setup)) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let dns = TestDns::start().expect("test DNS server");
        let mut setup = Setup {
            config: SmtpConfig {
                hostname: HOSTNAME.into(),
                nameservers: vec![dns.addr()],
                ..Default::default()
            },
            first_retry: Duration::from_secs(1),
            deliver: true,
        };
        change(&mut setup);
        let embedded = EmbeddedStore::open(&dir.path().join("store")).expect("store");
        let store: Arc<dyn Store> = Arc::new(embedded.clone());
        store.create_domain(DOMAIN).await.unwrap();
        for address in [ALICE, BOB] {
            store
                .create_account(NewAccount {
                    address: address.into(),
                    password_hash: Some(tern_store::password::hash(PASSWORD).unwrap()),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        store.create_alias("sales@example.test", ALICE).await.unwrap();
        let now = chrono::Utc::now().timestamp();
        for algorithm in [DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256] {
            let key = tern_smtp::dkim::generate(DOMAIN, algorithm, now, &[]).unwrap();
            dns.set_txt(
                &tern_smtp::dkim::record_name(&key),
                &[&tern_smtp::dkim::record_value(&key)],
            );
            store.add_dkim_key(key).await.unwrap();
        }
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        tern_net::tls::generate_self_signed(HOSTNAME, &cert, &key).unwrap();
        let tls = tern_net::tls::load_server_config(&cert, &key).unwrap();
        let auth = Arc::new(Authenticator::new(
            store.clone(),
            PlaintextPolicy::Loopback,
            AuthLimits {
                failure_delay: Duration::from_millis(50),
                ..Default::default()
            },
        ));
        let resolver = Arc::new(tern_smtp::verify::resolver(&setup.config.nameservers).unwrap());
        let queue = Queue::new(store.clone());
        let server = tern_smtp::SmtpServer::new(setup.config.clone(), auth, resolver.clone(), queue.clone());
        let local = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        let specs = [
            ("smtp", TlsMode::StartTls),
            ("submission", TlsMode::StartTls),
            ("submissions", TlsMode::Implicit),
        ]
        .into_iter()
        .map(|(name, tls_mode)| ListenerSpec {
            name,
            addrs: local.clone(),
            tls_mode,
            service: server.clone(),
        })
        .collect();
        let listeners = Listeners::bind(specs, Some(tls), Limits::default()).await.unwrap();
        let addr = |name| listeners.local_addr(name).unwrap();
        let (smtp, submission, submissions) = (addr("smtp"), addr("submission"), addr("submissions"));
        let stop_delivery = setup.deliver.then(|| {
            let deliverer = tern_smtp::outbound::Deliverer::new(
                setup.config.clone(),
                queue.clone(),
                resolver,
                setup.first_retry,
                &[],
            );
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(deliverer.run(stopped));
            stop
        });
        Harness {
            dir,
            store,
            embedded,
            dns,
            smtp,
            submission,
            submissions,
            queue,
            config: setup.config,
            server,
            listeners: Some(listeners),
            stop_delivery,
        }
    }

    /// Every message in an account's mailbox, raw.
    pub async fn mailbox(&self, address: &str, mailbox: &str) -> Vec<Vec<u8>> {
        let account = self.store.account(address).await.unwrap();
        let mb = self.store.mailbox(account.id, mailbox).await.unwrap();
        let mut out = Vec::new();
        for m in self.store.messages(mb.id).await.unwrap() {
            out.push(self.store.read_message(mb.id, m.uid).await.unwrap());
        }
        out
    }

    pub async fn inbox(&self, address: &str) -> Vec<Vec<u8>> {
        self.mailbox(address, INBOX).await
    }

    /// Waits until `address`'s mailbox holds `count` messages.
    pub async fn wait_for(&self, address: &str, mailbox: &str, count: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let messages = self.mailbox(address, mailbox).await;
            if messages.len() >= count || Instant::now() > deadline {
                assert_eq!(messages.len(), count, "{address} {mailbox}");
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the queue is empty (everything delivered or bounced).
    pub async fn wait_queue_empty(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.store.queue_entries().await.unwrap();
            if entries.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "queue still holds {entries:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A delivery worker of this server's queue that a test drives round by round
    /// (start the harness with `deliver = false`), trusting `extra_ca_files`.
    pub fn deliverer(&self, extra_ca_files: &[String]) -> Arc<tern_smtp::outbound::Deliverer> {
        let resolver = Arc::new(tern_smtp::verify::resolver(&[self.dns.addr()]).unwrap());
        Arc::new(tern_smtp::outbound::Deliverer::new(
            self.config.clone(),
            self.queue.clone(),
            resolver,
            Duration::from_secs(1),
            extra_ca_files,
        ))
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop_delivery.take() {
            let _ = stop.send(true);
        }
        if let Some(l) = self.listeners.take() {
            l.shutdown(Duration::from_secs(2)).await;
        }
        self.embedded.close().await.unwrap();
    }
}

/// Runs a Python script (smtplib and friends) on a blocking thread; the prelude gives
/// it `ctx` (TLS without verification: the certificate is self-signed) and `out(x)` to
/// print JSON.
pub async fn python(script: &str, args: Vec<String>) -> serde_json::Value {
    let full = format!(
        "import smtplib, ssl, json, sys, base64, socket\n\
         ctx = ssl._create_unverified_context()\n\
         def out(x): print(json.dumps(x))\n\
         def err(e):\n    return [getattr(e, 'smtp_code', None), (getattr(e, 'smtp_error', b'') or b'').decode('utf-8', 'replace')]\n\
         {script}"
    );
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>).collect();
        tern_testkit::python::run_json(&full, &refs)
    })
    .await
    .unwrap()
}

/// Speaks raw SMTP: sends each chunk, then reads until the expected number of reply
/// lines ending a reply have arrived. Returns everything read.
pub async fn raw_session(addr: SocketAddr, steps: &[(&[u8], usize)]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut all = String::new();
    let mut buf = vec![0u8; 65536];
    let read_replies = |all: &str| {
        all.lines()
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ' && l[..3].bytes().all(|b| b.is_ascii_digit()))
            .count()
    };
    let mut expected = 1; // greeting
    for (send, replies) in std::iter::once((&b""[..], 0)).chain(steps.iter().copied()) {
        if !send.is_empty() {
            s.write_all(send).await.unwrap();
        }
        expected += replies;
        let deadline = Instant::now() + Duration::from_secs(20);
        while read_replies(&all) < expected {
            let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no reply after {:?}; so far:\n{all}", String::from_utf8_lossy(send)))
                .unwrap();
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    all
}

/// The reply lines (final lines only) of a raw session, in order.
pub fn replies(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ' && l[..3].bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// A simple message from `from` to `to`.
pub fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 08:00:00 +0000\r\n\
         Message-ID: <{}@test>\r\n\r\nHello from the test.\r\n",
        rand::random::<u64>()
    )
}

/// The value of the first header field named `name` in a raw message (unfolded).
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Logs in (STARTTLS on 587, or TLS from the first byte on 465) and sends; reports
/// every step's outcome.
pub const SUBMIT: &str = r#"
port, implicit, mech, user, password, sender, rcpts, msg = sys.argv[1:9]
rcpts = json.loads(rcpts)
res = {}
if implicit == "yes":
    s = smtplib.SMTP_SSL("127.0.0.1", int(port), context=ctx)
else:
    s = smtplib.SMTP("127.0.0.1", int(port))
    s.ehlo()
    res["auth_before_tls"] = s.has_extn("auth")
    s.starttls(context=ctx)
s.ehlo()
res["auth_mechs"] = s.esmtp_features.get("auth", "")
try:
    s.user, s.password = user, password
    if mech == "LOGIN":
        code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    else:
        code, text = s.auth("PLAIN", s.auth_plain)
    res["login"] = [code, text.decode()]
except smtplib.SMTPAuthenticationError as e:
    res["login"] = err(e)
    out(res); sys.exit(0)
try:
    res["refused"] = {k: [v[0], v[1].decode()] for k, v in s.sendmail(sender, rcpts, msg.encode()).items()}
except smtplib.SMTPRecipientsRefused as e:
    res["refused"] = {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}
except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
    res["error"] = err(e)
s.quit()
out(res)
"#;

#[allow(clippy::too_many_arguments)]
pub async fn submit(
    port: u16,
    implicit: bool,
    mech: &str,
    user: &str,
    password: &str,
    sender: &str,
    rcpts: &[&str],
    msg: &str,
) -> serde_json::Value {
    python(
        SUBMIT,
        vec![
            port.to_string(),
            if implicit { "yes" } else { "no" }.into(),
            mech.into(),
            user.into(),
            password.into(),
            sender.into(),
            serde_json::to_string(rcpts).unwrap(),
            msg.into(),
        ],
    )
    .await
}

/// Alice submits `msg` to `rcpts` over STARTTLS with PLAIN; panics unless all accepted.
pub async fn alice_sends(h: &Harness, rcpts: &[&str], msg: &str) {
    let r = submit(h.submission.port(), false, "PLAIN", ALICE, PASSWORD, ALICE, rcpts, msg).await;
    assert_eq!(r["refused"], serde_json::json!({}), "{r}");
}

/// Runs swaks with `args`, or returns `None` (and says so) when it is not installed.
pub async fn swaks(args: Vec<String>) -> Option<std::process::Output> {
    if !std::process::Command::new("swaks")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping: swaks is not installed (scripts/test.sh installs it)");
        return None;
    }
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("swaks").args(args).output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "swaks failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Some(out)
}

/// Sends one message with smtplib to the MX; returns per-recipient refusals or the
/// error of the whole transaction.
const SEND: &str = r#"
host, port, sender, rcpts, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
s = smtplib.SMTP(host, port)
try:
    refused = s.sendmail(sender, rcpts, msg.encode())
    out({"ok": True, "refused": {k: [v[0], v[1].decode()] for k, v in refused.items()}})
except smtplib.SMTPRecipientsRefused as e:
    out({"ok": False, "refused": {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}})
except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
    out({"ok": False, "error": err(e)})
s.quit()
"#;

pub async fn send(h: &Harness, sender: &str, rcpts: &[&str], msg: &str) -> serde_json::Value {
    python(
        SEND,
        vec![
            "127.0.0.1".into(),
            h.smtp.port().to_string(),
            sender.into(),
            serde_json::to_string(rcpts).unwrap(),
            msg.into(),
        ],
    )
    .await
}
