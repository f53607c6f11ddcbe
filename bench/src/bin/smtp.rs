//! SMTP benchmark (SMTP issue): inbound delivery into Tern's MX beside Dovecot 2.3's
//! LMTP server (Debian's dovecot-lmtpd, maildir), both real processes on loopback, fed
//! the same generated messages by the same load client, in one run. It prints both
//! rates and the ratio Tern messages/s / Dovecot messages/s (above 1.0: Tern is faster).
//!
//! The client is the benchmark's own (tokio): `--senders` (default 16) concurrent
//! connections, each a loop of whole transactions — MAIL, RCPT (one per recipient),
//! DATA pipelined when the server offers PIPELINING (RFC 2920), then the dot-stuffed
//! message (RFC 5321 §4.5.2) and its final reply: one for SMTP, one per recipient for
//! LMTP (RFC 2033 §4.2). A connection is reused for `--per-connection` transactions
//! (default 100, well below Tern's `[smtp] max_messages_per_connection`), then QUIT and a new
//! one. A transaction counts when the server's final 250 has arrived: both servers
//! answer it only after the message is on disk (Tern: its store's group commit
//! fsyncs; Dovecot: `mail_fsync = optimized`, its default, fsyncs each delivered file).
//!
//! The messages: about 10 KB each, bodies from `tern_testkit::corpus` (a quarter
//! multipart with an attachment, CRLF, UTF-8 text sent with BODY=8BITMIME), one in
//! eight with lines that start with dots. Each is From one of four sender domains whose
//! DNS publishes SPF (`v=spf1 ip4:127.0.0.1 -all`), DMARC (`p=reject`) and a DKIM key,
//! and is DKIM-signed (RSA-2048 by default, relaxed/relaxed, From, Subject, Date and
//! the MIME fields signed), so Tern's SPF, DKIM and DMARC checks do their real work and
//! pass; Dovecot's LMTP checks nothing. Tern asks a DNS server in this process
//! (`tern_testkit::dns`) through `[dns] nameservers`. Every message has its own
//! Message-ID (`<r<run>.<n>@<domain>>`), a Received field and a To field.
//!
//! `--messages` (default 20,000) per server and run, or `--seconds` of load; one
//! recipient per message, spread over `--recipients` users (default 1, so one hot
//! INBOX), or `--recipients-per-message` of them. `--repeat` runs (default 3), which
//! server goes first alternating. Each run delivers to users of its own, so every run
//! starts from empty mailboxes (a growing mailbox slows delivery down; the rates of
//! each run's first and last quarter of messages show by how much).
//! Printed: messages/s, per-transaction latency (MAIL sent to the last final reply)
//! p50 and p99, CPU of each server's process tree and of this client, medians over the
//! runs.
//!
//! Checked: after each run each user's message count in both stores (Tern over IMAP
//! `STATUS`, Dovecot by counting the maildir's files); at the end every stored message
//! is read back (Tern over IMAP, Dovecot from its files) and matched by Message-ID:
//! every one sent arrived exactly once, in the right mailboxes, its bytes ending with
//! the message as sent before dot-stuffing; and Tern's Authentication-Results field of
//! each says spf=pass, dkim=pass (none for unsigned mail) and dmarc=pass. Any
//! difference, error reply or lost connection fails the benchmark.
//!
//! Run: `cargo build --release -p tern && cargo run --release -p tern-bench --bin smtp`
//! (options: --messages N | --seconds S, --senders N, --recipients N,
//! --recipients-per-message N, --per-connection N, --repeat N, --dkim rsa|ed25519|none).
//! It needs Dovecot with LMTP (`apt-get install dovecot-imapd dovecot-lmtpd`).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, NeedDomain};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};
use tern_bench::client::{self, Client};
use tern_bench::tern_process::{TernProcess, own_cpu_seconds, tree_cpu_seconds};
use tern_bench::{command_output, load_average, median, thousands};
use tern_store::{DkimAlgorithm, DkimKey};
use tern_testkit::corpus;
use tern_testkit::dns::TestDns;
use tern_testkit::dovecot::Dovecot;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Parser)]
struct Args {
    /// Messages per server and run.
    #[arg(long, default_value_t = 20_000, value_parser = at_least_one())]
    messages: usize,
    /// Send for this many seconds per server and run instead of a number of messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Concurrent sending connections.
    #[arg(long, default_value_t = 16, value_parser = at_least_one())]
    senders: usize,
    /// Users the messages are spread over (round robin).
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    recipients: usize,
    /// Recipients of each message (RCPT commands per transaction), at most --recipients.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    recipients_per_message: usize,
    /// Transactions per connection before QUIT and a new connection.
    #[arg(long, default_value_t = 100, value_parser = at_least_one())]
    per_connection: usize,
    /// Runs per server (the median is shown); which server goes first alternates.
    #[arg(long, default_value_t = 3, value_parser = at_least_one())]
    repeat: usize,
    /// How the senders sign their mail.
    #[arg(long, value_enum, default_value_t = Signing::Rsa)]
    dkim: Signing,
    /// Seed of the generated messages.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The Tern binary (default: `tern` beside this benchmark, i.e. target/release/tern).
    #[arg(long)]
    tern: Option<PathBuf>,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Signing {
    /// RSA-2048 with SHA-256, what nearly all signed mail uses.
    Rsa,
    /// Ed25519 (RFC 8463).
    Ed25519,
    /// Unsigned mail: DKIM finds nothing to check.
    None,
}

impl Signing {
    fn describe(self) -> &'static str {
        match self {
            Signing::Rsa => "DKIM-signed with RSA-2048 (rsa-sha256)",
            Signing::Ed25519 => "DKIM-signed with Ed25519 (ed25519-sha256)",
            Signing::None => "not DKIM-signed",
        }
    }
}

/// The hosted domain and its users' password (Tern's accounts, Dovecot's passwd-file).
const DOMAIN: &str = "bench.test";
const PASSWORD: &str = "bench-Secret-2026";
/// Sender domains; message bodies take turns.
const SENDER_DOMAINS: usize = 4;
/// Distinct signed message bodies; a message is one of them with its own envelope,
/// Message-ID, To and Received fields.
const BODIES: usize = 400;
/// Target size of a message body (with its signed header fields).
const MESSAGE_SIZE: usize = 10_000;
/// How long one reply may take before the benchmark gives up on a server.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// The header fields the senders sign (all present in every body).
const SIGNED: [&str; 6] = [
    "From",
    "Subject",
    "Date",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

fn user(i: usize) -> String {
    format!("user{}@{DOMAIN}", i + 1)
}

fn sender_domain(d: usize) -> String {
    format!("sender{}.test", d + 1)
}

/// One signed body: the part of a message its sender's DKIM signature covers.
struct Body {
    domain: usize,
    /// DKIM-Signature, the signed fields, the blank line and the body, CRLF.
    raw: Vec<u8>,
    /// `raw` dot-stuffed for DATA, with the terminating `.CRLF`.
    stuffed: Vec<u8>,
}

/// Every message the benchmark can send: `message(run, n)` is a pure function of
/// these bodies, so the check at the end rebuilds what was sent.
struct Mail {
    bodies: Vec<Body>,
    users: usize,
    per_message: usize,
}

impl Mail {
    fn generate(seed: u64, users: usize, per_message: usize, keys: &[Option<DkimKey>]) -> Mail {
        let bodies = corpus::messages(seed, BODIES, MESSAGE_SIZE)
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let domain = i % SENDER_DOMAINS;
                let mut raw = body_fields(&m, domain, i);
                if let Some(key) = &keys[domain] {
                    let signature = dkim_sign(key, &raw);
                    raw.splice(0..0, signature.into_bytes());
                }
                let mut stuffed = dot_stuff(&raw);
                stuffed.extend_from_slice(b".\r\n");
                Body { domain, raw, stuffed }
            })
            .collect();
        Mail {
            bodies,
            users,
            per_message,
        }
    }

    fn body(&self, n: usize) -> &Body {
        &self.bodies[n % self.bodies.len()]
    }

    /// The users message `n` of run `run` goes to: `per_message` consecutive ones,
    /// round robin over the run's own `users` (run 0: users 0..users, run 1 the next
    /// ones…), so that every run starts with empty mailboxes.
    fn recipients(&self, run: usize, n: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.per_message).map(move |j| run * self.users + (n * self.per_message + j) % self.users)
    }

    fn sender(&self, n: usize) -> String {
        format!("news@{}", sender_domain(self.body(n).domain))
    }

    fn message_id(&self, run: usize, n: usize) -> String {
        format!("r{run}.{n}@{}", sender_domain(self.body(n).domain))
    }

    /// The fields the sending system adds to each message: a Received field, the
    /// Message-ID and To. No line starts with a dot, so they need no stuffing.
    fn envelope_fields(&self, run: usize, n: usize) -> Vec<u8> {
        let domain = sender_domain(self.body(n).domain);
        let to: Vec<String> = self.recipients(run, n).map(|u| format!("<{}>", user(u))).collect();
        format!(
            "Received: from client{c}.{domain} (client{c}.{domain} [192.0.2.{c}])\r\n\
             \tby mta.{domain} with ESMTPSA id {run}x{n}\r\n\
             \tfor {first}; Thu, 26 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{id}>\r\n\
             To: {to}\r\n",
            c = n % 250 + 1,
            first = to[0],
            id = self.message_id(run, n),
            to = to.join(", "),
        )
        .into_bytes()
    }

    /// Message `n` of run `run` as its sender wrote it (before dot-stuffing).
    fn message(&self, run: usize, n: usize) -> Vec<u8> {
        let mut m = self.envelope_fields(run, n);
        m.extend_from_slice(&self.body(n).raw);
        m
    }

    /// Message `n` of run `run` as DATA sends it, into `out`.
    fn data(&self, run: usize, n: usize, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.envelope_fields(run, n));
        out.extend_from_slice(&self.body(n).stuffed);
    }

    fn average_size(&self) -> f64 {
        let n = 1000;
        (0..n).map(|i| self.message(0, i).len()).sum::<usize>() as f64 / n as f64
    }
}

/// A corpus message turned into one from a sender domain: its From, To and Message-ID
/// fields dropped (the sender adds its own), a From of the sender domain first, and in
/// one body in eight lines that start with dots at the start of the text.
fn body_fields(message: &[u8], domain: usize, i: usize) -> Vec<u8> {
    let end = find(message, b"\r\n\r\n").map_or(message.len(), |at| at + 2);
    let (header, body) = message.split_at(end);
    let mut out = format!(
        "From: \"Sender {d} News\" <news@{}>\r\n",
        sender_domain(domain),
        d = domain + 1
    )
    .into_bytes();
    let mut keep = true;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let lower = line.to_ascii_lowercase();
            keep = !(lower.starts_with(b"from:") || lower.starts_with(b"to:") || lower.starts_with(b"message-id:"));
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    let mut body = body.to_vec();
    if i.is_multiple_of(8) {
        let mark = b"Content-Transfer-Encoding: 8bit\r\n\r\n";
        let at = find(&body, mark).map_or(2, |at| at + mark.len());
        let dotted = b".\r\n..two dots lead this line\r\n.one dot leads this one\r\n";
        body.splice(at..at, dotted.iter().copied());
    }
    out.extend_from_slice(&body);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// RFC 5321 §4.5.2: a line that starts with "." gets one more.
fn dot_stuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}

/// The DKIM-Signature field for `raw` (relaxed/relaxed, the SIGNED fields).
fn dkim_sign(key: &DkimKey, raw: &[u8]) -> String {
    fn sign<T: SigningKey<Hasher = Sha256>>(signer: DkimSigner<T, NeedDomain>, key: &DkimKey, raw: &[u8]) -> String {
        signer
            .domain(key.domain.clone())
            .selector(key.selector.clone())
            .headers(SIGNED)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(raw)
            .expect("DKIM signature")
            .to_header()
    }
    match key.algorithm {
        DkimAlgorithm::RsaSha256 => {
            let der = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(key.private_key.as_slice()));
            sign(
                DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).expect("RSA key")),
                key,
                raw,
            )
        }
        DkimAlgorithm::Ed25519Sha256 => sign(
            DkimSigner::from_key(Ed25519Key::from_pkcs8_der(&key.private_key).expect("Ed25519 key")),
            key,
            raw,
        ),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Which protocol a server takes mail in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Smtp,
    Lmtp,
}

/// One server under test.
#[derive(Clone)]
struct Peer {
    name: &'static str,
    port: u16,
    protocol: Protocol,
    /// The PID whose process tree is the server (Tern's process, Dovecot's master).
    pid: u32,
}

impl Peer {
    fn cpu(&self) -> f64 {
        tree_cpu_seconds(self.pid)
    }
}

/// One SMTP or LMTP connection of the load client.
struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    protocol: Protocol,
    pipelining: bool,
    eight_bit: bool,
    line: Vec<u8>,
    commands: Vec<u8>,
}

impl Connection {
    /// Connects, reads the greeting and says EHLO (LHLO for LMTP).
    async fn open(peer: &Peer, helo: &str) -> Result<Connection, String> {
        let stream = TcpStream::connect(("127.0.0.1", peer.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (r, w) = stream.into_split();
        let mut c = Connection {
            reader: BufReader::with_capacity(16 * 1024, r),
            writer: w,
            protocol: peer.protocol,
            pipelining: false,
            eight_bit: false,
            line: Vec::with_capacity(512),
            commands: Vec::with_capacity(512),
        };
        c.expect_reply("greeting", 220).await?;
        let hello = match peer.protocol {
            Protocol::Smtp => "EHLO",
            Protocol::Lmtp => "LHLO",
        };
        c.send(format!("{hello} {helo}\r\n").as_bytes()).await?;
        let extensions = c.expect_reply(hello, 250).await?;
        for line in extensions.lines() {
            let keyword = line.get(4..).unwrap_or("").split(' ').next().unwrap_or("");
            c.pipelining |= keyword.eq_ignore_ascii_case("PIPELINING");
            c.eight_bit |= keyword.eq_ignore_ascii_case("8BITMIME");
        }
        Ok(c)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer.write_all(bytes).await.map_err(|e| format!("write: {e}"))
    }

    /// One whole reply (RFC 5321 §4.2.1: `250-` lines continue it): its code and text.
    async fn reply(&mut self) -> Result<(u16, String), String> {
        let mut text = String::new();
        loop {
            self.line.clear();
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_until(b'\n', &mut self.line))
                .await
                .map_err(|_| format!("no reply within {REPLY_TIMEOUT:?}"))?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "the server closed the connection{}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(" after {}", text.trim_end())
                    }
                ));
            }
            let line = String::from_utf8_lossy(&self.line);
            text.push_str(&line);
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(format!("not a reply: {}", line.trim_end()));
            };
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
    }

    /// A reply that must have code `want`; its text.
    async fn expect_reply(&mut self, what: &str, want: u16) -> Result<String, String> {
        let (code, text) = self.reply().await?;
        if code != want {
            return Err(format!("{what}: {}", text.trim_end()));
        }
        Ok(text)
    }

    /// One mail transaction: MAIL, RCPTs and DATA (pipelined when offered), the
    /// message, and the final reply or replies, all of which must be 250.
    async fn transaction(&mut self, from: &str, to: &[String], data: &[u8]) -> Result<(), String> {
        let body = if self.eight_bit { " BODY=8BITMIME" } else { "" };
        self.commands.clear();
        let mut steps = Vec::with_capacity(to.len() + 2);
        write!(self.commands, "MAIL FROM:<{from}>{body}\r\n").expect("write to a Vec");
        steps.push((self.commands.len(), "MAIL", 250));
        for r in to {
            write!(self.commands, "RCPT TO:<{r}>\r\n").expect("write to a Vec");
            steps.push((self.commands.len(), "RCPT", 250));
        }
        self.commands.extend_from_slice(b"DATA\r\n");
        steps.push((self.commands.len(), "DATA", 354));
        let commands = std::mem::take(&mut self.commands);
        let result = async {
            if self.pipelining {
                // RFC 2920 §3.1: MAIL, RCPT and DATA in one go, then their replies.
                self.send(&commands).await?;
                for &(_, what, want) in &steps {
                    self.expect_reply(what, want).await?;
                }
            } else {
                let mut start = 0;
                for &(end, what, want) in &steps {
                    self.send(&commands[start..end]).await?;
                    self.expect_reply(what, want).await?;
                    start = end;
                }
            }
            self.send(data).await?;
            // RFC 2033 §4.2: LMTP answers the end of data once per recipient.
            let finals = match self.protocol {
                Protocol::Smtp => 1,
                Protocol::Lmtp => to.len(),
            };
            for _ in 0..finals {
                self.expect_reply("end of DATA", 250).await?;
            }
            Ok(())
        }
        .await;
        self.commands = commands;
        result
    }

    async fn quit(&mut self) -> Result<(), String> {
        self.send(b"QUIT\r\n").await?;
        self.expect_reply("QUIT", 221).await.map(|_| ())
    }
}

/// What one run of the load measured on one server.
#[derive(Default)]
struct Load {
    /// Transactions whose final reply was 250.
    delivered: usize,
    seconds: f64,
    /// Per transaction, microseconds.
    latencies: Vec<u32>,
    /// When each transaction ended, seconds after the start.
    ended: Vec<f64>,
    /// The message numbers delivered.
    sent: Vec<usize>,
    connections: usize,
    errors: Vec<String>,
}

/// `senders` connections sending messages `0..limit` of run `run` (or until `seconds`
/// are up), each number once.
async fn load(peer: &Peer, mail: Arc<Mail>, run: usize, args: &Args) -> Load {
    let senders = args.senders;
    let limit = if args.seconds.is_some() {
        usize::MAX
    } else {
        args.messages
    };
    let duration = args.seconds.map(Duration::from_secs);
    let per_connection = args.per_connection;
    let next = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(senders + 1));
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let (peer, mail, next, barrier) = (peer.clone(), mail.clone(), next.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut out = Load::default();
                let helo = format!("mta{}.{}", s + 1, sender_domain(s % SENDER_DOMAINS));
                let first = Connection::open(&peer, &helo).await;
                barrier.wait().await;
                let mut conn = match first {
                    Ok(c) => c,
                    Err(e) => {
                        out.errors.push(format!("sender {s}: opening: {e}"));
                        return out;
                    }
                };
                out.connections += 1;
                let start = Instant::now();
                let deadline = duration.map(|d| start + d);
                let mut on_this_connection = 0;
                let mut data = Vec::with_capacity(MESSAGE_SIZE * 2);
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= limit {
                        break;
                    }
                    if on_this_connection == per_connection {
                        let closed = conn.quit().await;
                        if let Err(e) = closed {
                            out.errors.push(format!("sender {s}: QUIT: {e}"));
                            break;
                        }
                        conn = match Connection::open(&peer, &helo).await {
                            Ok(c) => c,
                            Err(e) => {
                                out.errors.push(format!("sender {s}: reconnecting: {e}"));
                                break;
                            }
                        };
                        out.connections += 1;
                        on_this_connection = 0;
                    }
                    mail.data(run, n, &mut data);
                    let to: Vec<String> = mail.recipients(run, n).map(user).collect();
                    let t = Instant::now();
                    match conn.transaction(&mail.sender(n), &to, &data).await {
                        Ok(()) => {
                            out.latencies.push(t.elapsed().as_micros() as u32);
                            out.ended.push(start.elapsed().as_secs_f64());
                            out.sent.push(n);
                            out.delivered += 1;
                            on_this_connection += 1;
                        }
                        Err(e) => {
                            out.errors.push(format!("sender {s}, message {n}: {e}"));
                            // The connection's state is unknown now; this sender stops.
                            break;
                        }
                    }
                }
                out.seconds = start.elapsed().as_secs_f64();
                let _ = conn.quit().await;
                out
            })
        })
        .collect();
    barrier.wait().await;
    let started = Instant::now();
    let mut total = Load::default();
    for t in tasks {
        let one = t.await.expect("a sender task panicked");
        total.delivered += one.delivered;
        total.latencies.extend(one.latencies);
        total.ended.extend(one.ended);
        total.sent.extend(one.sent);
        total.connections += one.connections;
        total.errors.extend(one.errors);
    }
    // From the moment all senders were connected until the last final reply.
    total.seconds = started.elapsed().as_secs_f64();
    total.latencies.sort_unstable();
    total.ended.sort_by(f64::total_cmp);
    total.sent.sort_unstable();
    total
}

impl Load {
    /// Messages/s over the first and over the last quarter of the messages: how much
    /// the growing mailbox slowed delivery.
    fn quarters(&self) -> (f64, f64) {
        let e = &self.ended;
        let q = e.len() / 4;
        if q == 0 {
            return (f64::NAN, f64::NAN);
        }
        (q as f64 / e[q - 1], q as f64 / (e[e.len() - 1] - e[e.len() - 1 - q]))
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Messages in a maildir's INBOX: files in `new/` and `cur/`.
fn maildir_files(maildir: &Path) -> Vec<PathBuf> {
    ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(maildir.join(sub)).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// `STATUS INBOX (MESSAGES)` of `user` on Tern.
fn tern_count(port: u16, user: &str) -> usize {
    let mut imap = tern_bench::Imap::login(port, user, PASSWORD);
    let lines = imap.command("STATUS INBOX (MESSAGES)");
    imap.command("LOGOUT");
    lines
        .iter()
        .find_map(|l| {
            let at = l.find("MESSAGES ")? + "MESSAGES ".len();
            l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("Tern: no MESSAGES in the STATUS of {user}: {lines:?}"))
}

/// What the final check found in one server's store.
#[derive(Default)]
struct Found {
    messages: usize,
    /// Message-IDs expected and not found, found twice or more, found but not sent
    /// (or in the wrong mailbox), or whose bytes differ from what was sent.
    missing: usize,
    duplicated: usize,
    unexpected: usize,
    differing: usize,
    /// How many stored messages end with the sent bytes as sent (CRLF) and how many
    /// with LF line ends.
    crlf: usize,
    lf: usize,
    /// Tern: how many messages carry each set of results in their
    /// Authentication-Results field (`dkim=pass spf=pass dmarc=pass`).
    verdicts: std::collections::BTreeMap<String, usize>,
    examples: Vec<String>,
}

impl Found {
    fn ok(&self) -> bool {
        self.missing + self.duplicated + self.unexpected + self.differing == 0
    }

    fn summary(&self, name: &str) -> String {
        if self.ok() {
            format!(
                "{name}: {} messages, every one sent there stored exactly once, bytes as sent{}",
                thousands(self.messages as f64),
                if self.lf > 0 {
                    format!(" ({} stored with LF line ends)", thousands(self.lf as f64))
                } else {
                    String::new()
                }
            )
        } else {
            format!(
                "{name}: {} messages; {} missing, {} duplicated, {} not sent there, {} with other bytes; e.g. {}",
                self.messages,
                self.missing,
                self.duplicated,
                self.unexpected,
                self.differing,
                self.examples.join("; ")
            )
        }
    }

    /// Checks one stored message of `user` against what was sent.
    fn check(
        &mut self,
        mail: &Mail,
        expected: &HashSet<(usize, usize)>,
        seen: &mut HashSet<(usize, usize)>,
        stored: &[u8],
    ) {
        self.messages += 1;
        if let Some(results) = auth_results(stored) {
            *self.verdicts.entry(results).or_default() += 1;
        }
        let id = message_id_of(stored);
        let Some((run, n)) = id.as_deref().and_then(parse_id) else {
            self.unexpected += 1;
            self.example(format!("a message without a benchmark Message-ID ({id:?})"));
            return;
        };
        if !expected.contains(&(run, n)) {
            self.unexpected += 1;
            self.example(format!("r{run}.{n} was not sent to this mailbox"));
            return;
        }
        if !seen.insert((run, n)) {
            self.duplicated += 1;
            self.example(format!("r{run}.{n} stored twice"));
            return;
        }
        let sent = mail.message(run, n);
        if stored.ends_with(&sent) {
            self.crlf += 1;
            return;
        }
        let lf: Vec<u8> = String::from_utf8_lossy(&sent).replace("\r\n", "\n").into_bytes();
        if String::from_utf8_lossy(stored).ends_with(String::from_utf8_lossy(&lf).as_ref()) {
            self.lf += 1;
            return;
        }
        self.differing += 1;
        self.example(format!(
            "r{run}.{n}: {} bytes stored, {} sent, not its ending (hash {:x})",
            stored.len(),
            sent.len(),
            hash_bytes(stored)
        ));
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }

    fn missing_from(&mut self, expected: &HashSet<(usize, usize)>, seen: &HashSet<(usize, usize)>) {
        for &(run, n) in expected.difference(seen) {
            self.missing += 1;
            self.example(format!("r{run}.{n} missing"));
        }
    }
}

/// The Message-ID of a stored message (the first such field; the benchmark's bodies
/// have none of their own).
fn message_id_of(stored: &[u8]) -> Option<String> {
    let header_end = find(stored, b"\n\r\n")
        .or_else(|| find(stored, b"\n\n"))
        .unwrap_or(stored.len());
    let header = &stored[..header_end];
    let at = header
        .windows(12)
        .position(|w| w.eq_ignore_ascii_case(b"\nMessage-ID:"))?;
    let rest = &header[at + 12..];
    let open = rest.iter().position(|&b| b == b'<')?;
    let close = rest.iter().position(|&b| b == b'>')?;
    (open < close).then(|| String::from_utf8_lossy(&rest[open + 1..close]).into_owned())
}

/// The methods and results of the first Authentication-Results field (RFC 8601), as
/// "dkim=pass spf=pass dmarc=pass".
fn auth_results(stored: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&stored[..stored.len().min(16 * 1024)]);
    let at = text.find("Authentication-Results:")?;
    let mut field = String::new();
    for (i, line) in text[at..].split("\r\n").enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        field.push_str(line);
        field.push(' ');
    }
    let results: Vec<&str> = field
        .split([' ', ';', '\t'])
        .filter(|w| ["dkim=", "spf=", "dmarc=", "arc="].iter().any(|m| w.starts_with(m)))
        .collect();
    Some(results.join(" "))
}

/// `r<run>.<n>@domain` → (run, n).
fn parse_id(id: &str) -> Option<(usize, usize)> {
    let (local, _) = id.split_once('@')?;
    let (run, n) = local.strip_prefix('r')?.split_once('.')?;
    Some((run.parse().ok()?, n.parse().ok()?))
}

/// Which (run, message) each user should hold on one server.
fn expected_by_user(mail: &Mail, runs: &[(usize, Vec<usize>)], users: usize) -> Vec<HashSet<(usize, usize)>> {
    let mut by_user = vec![HashSet::new(); users];
    for (run, sent) in runs {
        for &n in sent {
            for u in mail.recipients(*run, n) {
                by_user[u].insert((*run, n));
            }
        }
    }
    by_user
}

/// Reads every user's INBOX from Tern over IMAP and checks it.
async fn check_tern(port: u16, mail: &Mail, expected: &[HashSet<(usize, usize)>]) -> Found {
    let mut found = Found::default();
    for (u, want) in expected.iter().enumerate() {
        let mut c = Client::login(port, &user(u), PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("Tern: LOGIN {}: {e}", user(u)));
        c.run("EXAMINE INBOX", |_| {})
            .await
            .unwrap_or_else(|e| panic!("Tern: EXAMINE INBOX: {e}"));
        let mut seen = HashSet::new();
        c.run("UID FETCH 1:* BODY.PEEK[]", |r| {
            if let Some(body) = client::first_literal(r) {
                found.check(mail, want, &mut seen, body);
            }
        })
        .await
        .unwrap_or_else(|e| panic!("Tern: UID FETCH 1:* BODY.PEEK[]: {e}"));
        c.logout().await;
        found.missing_from(want, &seen);
    }
    found
}

/// Whether every message Tern stored records the results the senders' DNS and
/// signatures call for: SPF and DMARC pass, DKIM pass (none for unsigned mail).
fn checks_passed(found: &Found, signing: Signing) -> bool {
    let dkim = if signing == Signing::None {
        "dkim=none"
    } else {
        "dkim=pass"
    };
    found.verdicts.keys().all(|v| {
        let words: Vec<&str> = v.split(' ').collect();
        words.contains(&dkim) && words.contains(&"spf=pass") && words.contains(&"dmarc=pass")
    }) && found.verdicts.values().sum::<usize>() == found.messages
}

/// Reads every user's maildir files and checks them.
fn check_dovecot(dovecot: &Dovecot, mail: &Mail, expected: &[HashSet<(usize, usize)>]) -> Found {
    let mut found = Found::default();
    for (u, want) in expected.iter().enumerate() {
        let mut seen = HashSet::new();
        for file in maildir_files(&dovecot.maildir(&user(u))) {
            let stored = std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            found.check(mail, want, &mut seen, &stored);
        }
        found.missing_from(want, &seen);
    }
    found
}

/// Results of one measure for both servers: one value per run.
struct Row {
    label: &'static str,
    /// "msg/s" (higher is better), "ms" or "s" (lower is better).
    unit: &'static str,
    values: [Vec<f64>; 2],
}

impl Row {
    fn new(label: &'static str, unit: &'static str) -> Row {
        Row {
            label,
            unit,
            values: [Vec::new(), Vec::new()],
        }
    }

    fn show(&self, peer: usize) -> String {
        let m = median(&self.values[peer]);
        match self.unit {
            "msg/s" => format!("{} msg/s", thousands(m)),
            "ms" => format!("{m:.1} ms"),
            "ms CPU" => format!("{m:.2} ms"),
            _ => format!("{m:.2} s"),
        }
    }

    fn spread(&self, peer: usize) -> String {
        let v = &self.values[peer];
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        match self.unit {
            "msg/s" => format!("{}–{}", thousands(lo), thousands(hi)),
            "ms" => format!("{lo:.1}–{hi:.1}"),
            _ => format!("{lo:.2}–{hi:.2}"),
        }
    }

    /// Tern's advantage: above 1.0 Tern is better.
    fn ratio(&self) -> f64 {
        let (t, d) = (median(&self.values[0]), median(&self.values[1]));
        if self.unit == "msg/s" { t / d } else { d / t }
    }
}

fn main() {
    let args = Args::parse();
    assert!(
        args.recipients_per_message <= args.recipients,
        "--recipients-per-message ({}) cannot exceed --recipients ({})",
        args.recipients_per_message,
        args.recipients
    );
    let tern_binary = TernProcess::find_binary(args.tern.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    tern_bench::print_header(
        &format!(
            "SMTP benchmark: Tern's MX vs Dovecot {} LMTP",
            command_output("dovecot", &["--version"])
        ),
        "smtp",
        "both servers' data",
        Some(&tern_binary),
    );
    println!("- load average at start: {}", load_average());
    println!();

    // The senders' DNS: SPF, DMARC and a DKIM key per sender domain.
    let dns = TestDns::start().unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let created = chrono::Utc::now().timestamp();
    let keys: Vec<Option<DkimKey>> = (0..SENDER_DOMAINS)
        .map(|d| {
            let domain = sender_domain(d);
            dns.set_txt(&domain, &["v=spf1 ip4:127.0.0.1 -all"]);
            dns.set_txt(&format!("_dmarc.{domain}"), &["v=DMARC1; p=reject"]);
            let algorithm = match args.dkim {
                Signing::Rsa => DkimAlgorithm::RsaSha256,
                Signing::Ed25519 => DkimAlgorithm::Ed25519Sha256,
                Signing::None => return None,
            };
            let key = tern_smtp::dkim::generate(&domain, algorithm, created, &[]).expect("a DKIM key");
            dns.set_txt(
                &tern_smtp::dkim::record_name(&key),
                &[&tern_smtp::dkim::record_value(&key)],
            );
            Some(key)
        })
        .collect();
    let mail = Arc::new(Mail::generate(
        args.seed,
        args.recipients,
        args.recipients_per_message,
        &keys,
    ));
    println!(
        "Messages: {} bodies of {:.1} KB on average with their envelope fields, from {SENDER_DOMAINS} sender domains, {}; generated in {:.1} s (seed {}).",
        mail.bodies.len(),
        mail.average_size() / 1000.0,
        args.dkim.describe(),
        t.elapsed().as_secs_f64(),
        args.seed
    );
    // Each run delivers to its own users.
    let users: Vec<String> = (0..args.recipients * args.repeat).map(user).collect();

    // Dovecot with LMTP; its users are those of Tern.
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), PASSWORD)).collect();
    let dovecot = Dovecot::builder()
        .users(&pairs)
        .lmtp(true)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let mail_fsync = command_output(
        "doveconf",
        &["-c", &dovecot.config_path().to_string_lossy(), "-h", "mail_fsync"],
    );

    // Tern: an MX on loopback that asks the benchmark's DNS, with the per-IP limits
    // raised so that one address may send this much.
    let mut tern =
        TernProcess::create(&tern_binary, &users[0], PASSWORD, args.senders + 10).unwrap_or_else(|e| panic!("{e}"));
    for u in &users[1..] {
        tern.cli(&["user", "add", u, "--password-stdin"], Some(PASSWORD))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    tern.serve_smtp(&format!(
        "[smtp]\ninbound_per_ip_per_hour = 1000000000\n\n[dns]\nnameservers = [\"{}\"]\n",
        dns.addr()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    tern.start().unwrap_or_else(|e| panic!("{e}"));

    let peers = [
        Peer {
            name: "Tern",
            port: tern.smtp_port().expect("Tern's SMTP port"),
            protocol: Protocol::Smtp,
            pid: tern.pid().expect("Tern runs"),
        },
        Peer {
            name: "Dovecot",
            port: dovecot.lmtp_port().expect("Dovecot's LMTP port"),
            protocol: Protocol::Lmtp,
            pid: master_pid(&dovecot),
        },
    ];
    println!(
        "Tern pid {} SMTP on port {} (IMAP {}); Dovecot master pid {} LMTP on port {} (mail_fsync = {mail_fsync}); DNS on {}.",
        peers[0].pid,
        peers[0].port,
        tern.imap_port(),
        peers[1].pid,
        peers[1].port,
        dns.addr()
    );
    println!(
        "Load: {} senders, {} per run and server, {} recipient(s) per message over {} user(s) (other users each run), {} transactions per connection.",
        args.senders,
        match args.seconds {
            Some(s) => format!("{s} s"),
            None => format!("{} messages", thousands(args.messages as f64)),
        },
        args.recipients_per_message,
        args.recipients,
        args.per_connection
    );
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut rows = [
        Row::new("messages/s (durable)", "msg/s"),
        Row::new("latency p50 (MAIL to final 250)", "ms"),
        Row::new("latency p99", "ms"),
        Row::new("server CPU per message", "ms CPU"),
        Row::new("client CPU per run", "s"),
    ];
    let mut sent: [Vec<(usize, Vec<usize>)>; 2] = [Vec::new(), Vec::new()];
    let mut counts = [vec![0usize; users.len()], vec![0usize; users.len()]];
    let mut dns_queries = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    println!(
        "| run | server | messages | seconds | msg/s | first / last quarter | p50 | p99 | server CPU | client CPU | connections |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for run in 0..args.repeat {
        let order = if run.is_multiple_of(2) { [0, 1] } else { [1, 0] };
        for i in order {
            let p = &peers[i];
            // Earlier runs' writes must not be flushed on this run's time.
            let _ = std::process::Command::new("sync").status();
            let queries = dns.queries();
            let (s0, c0) = (p.cpu(), own_cpu_seconds());
            let result = rt.block_on(load(p, mail.clone(), run, &args));
            let (server_cpu, client_cpu) = (p.cpu() - s0, own_cpu_seconds() - c0);
            if i == 0 {
                dns_queries.push(dns.queries() - queries);
            }
            let rate = result.delivered as f64 / result.seconds;
            let (p50, p99) = (percentile(&result.latencies, 0.5), percentile(&result.latencies, 0.99));
            let (first, last) = result.quarters();
            println!(
                "| {} | {} | {} | {:.2} | {} | {} / {} | {p50:.1} ms | {p99:.1} ms | {server_cpu:.2} s | {client_cpu:.2} s | {} |",
                run + 1,
                p.name,
                thousands(result.delivered as f64),
                result.seconds,
                thousands(rate),
                thousands(first),
                thousands(last),
                result.connections
            );
            rows[0].values[i].push(rate);
            rows[1].values[i].push(p50);
            rows[2].values[i].push(p99);
            rows[3].values[i].push(server_cpu * 1000.0 / result.delivered.max(1) as f64);
            rows[4].values[i].push(client_cpu);
            for e in result.errors.iter().take(10) {
                failures.push(format!("{} run {}: {e}", p.name, run + 1));
            }
            if result.errors.len() > 10 {
                failures.push(format!(
                    "{} run {}: … {} errors in all",
                    p.name,
                    run + 1,
                    result.errors.len()
                ));
            }
            if args.seconds.is_none() && result.delivered != args.messages && result.errors.is_empty() {
                failures.push(format!(
                    "{} run {}: {} messages delivered, {} sent",
                    p.name,
                    run + 1,
                    result.delivered,
                    args.messages
                ));
            }
            // Each user's count, at once: a lost or doubled message shows here.
            for &n in &result.sent {
                for u in mail.recipients(run, n) {
                    counts[i][u] += 1;
                }
            }
            let this_run = run * args.recipients..(run + 1) * args.recipients;
            for (u, &want) in counts[i].iter().enumerate().take(this_run.end).skip(this_run.start) {
                let have = match i {
                    0 => tern_count(tern.imap_port(), &users[u]),
                    _ => maildir_files(&dovecot.maildir(&users[u])).len(),
                };
                if have != want {
                    failures.push(format!(
                        "{} run {}: {} holds {have} messages, {want} were delivered to it",
                        p.name,
                        run + 1,
                        users[u]
                    ));
                }
            }
            sent[i].push((run, result.sent));
            if !failures.is_empty() {
                break;
            }
        }
        if !failures.is_empty() {
            break;
        }
    }
    println!();

    // Every message, read back from both stores.
    let t = Instant::now();
    let tern_found = rt.block_on(check_tern(
        tern.imap_port(),
        &mail,
        &expected_by_user(&mail, &sent[0], users.len()),
    ));
    let dovecot_found = check_dovecot(&dovecot, &mail, &expected_by_user(&mail, &sent[1], users.len()));
    println!(
        "Delivery check ({:.1} s): {}. {}.",
        t.elapsed().as_secs_f64(),
        tern_found.summary("Tern"),
        dovecot_found.summary("Dovecot")
    );
    let verdicts: Vec<String> = tern_found
        .verdicts
        .iter()
        .map(|(v, n)| format!("{} with {v}", thousands(*n as f64)))
        .collect();
    println!("Tern's Authentication-Results: {}.", verdicts.join(", "));
    if !tern_found.ok() {
        failures.push(tern_found.summary("Tern"));
    }
    if !checks_passed(&tern_found, args.dkim) {
        failures.push(format!(
            "Tern: not every message passed SPF, DKIM and DMARC: {}",
            verdicts.join(", ")
        ));
    }
    if !dovecot_found.ok() {
        failures.push(dovecot_found.summary("Dovecot"));
    }
    println!();

    if failures.is_empty() {
        println!(
            "## Results (median of {} runs; ratio = Tern / Dovecot for messages/s, Dovecot / Tern for times, ≥ 1.0 means Tern is better)",
            args.repeat
        );
        println!();
        println!("| measure | Tern | Dovecot | ratio | Tern min–max | Dovecot min–max |");
        println!("|---|---|---|---|---|---|");
        for r in &rows {
            // The client's CPU is not a server's merit.
            let ratio = if r.label.starts_with("client") {
                String::new()
            } else {
                format!("**{:.2}**", r.ratio())
            };
            println!(
                "| {} | {} | {} | {ratio} | {} | {} |",
                r.label,
                r.show(0),
                r.show(1),
                r.spread(0),
                r.spread(1)
            );
        }
        println!();
        println!(
            "Tern checked SPF, DKIM and DMARC of every message (DNS queries it made per run: {:?}); Dovecot's LMTP checks none. Both fsync before their 250: Tern's store group commit, Dovecot with mail_fsync = {mail_fsync}.",
            dns_queries
        );
    }
    println!();
    println!("Load average at end: {}", load_average());
    let log = tern.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    if !warnings.is_empty() {
        println!("Tern logged {} warnings or errors; the first:", warnings.len());
        for l in warnings.iter().take(5) {
            println!("    {l}");
        }
    }
    let dovecot_errors: Vec<String> = dovecot
        .log()
        .lines()
        .filter(|l| l.contains("Error") || l.contains("Panic") || l.contains("Fatal"))
        .map(String::from)
        .collect();
    if !dovecot_errors.is_empty() {
        println!("Dovecot logged {} errors; the first:", dovecot_errors.len());
        for l in dovecot_errors.iter().take(5) {
            println!("    {l}");
        }
    }
    drop(rt);
    // Dropping stops both servers and removes their folders, which exit() would not.
    drop(tern);
    drop(dovecot);
    if !failures.is_empty() {
        eprintln!("The benchmark FAILED:");
        for f in &failures {
            eprintln!("- {f}");
        }
        std::process::exit(1);
    }
}

fn master_pid(dovecot: &Dovecot) -> u32 {
    std::fs::read_to_string(dovecot.dir().join("run").join("master.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("Dovecot's master.pid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_and_ids() {
        assert_eq!(dot_stuff(b"a\r\n.\r\n..b\r\n"), b"a\r\n..\r\n...b\r\n");
        assert_eq!(parse_id("r2.1234@sender1.test"), Some((2, 1234)));
        let stored = b"Return-Path: <x@y>\r\nMessage-ID: <r0.7@sender4.test>\r\nTo: a\r\n\r\nbody\r\n";
        assert_eq!(message_id_of(stored).as_deref(), Some("r0.7@sender4.test"));
        let mail = Mail {
            bodies: vec![Body {
                domain: 0,
                raw: b"From: a\r\n\r\n.x\r\n".to_vec(),
                stuffed: b"From: a\r\n\r\n..x\r\n.\r\n".to_vec(),
            }],
            users: 3,
            per_message: 2,
        };
        assert_eq!(mail.recipients(0, 1).collect::<Vec<_>>(), [2, 0]);
        assert_eq!(mail.recipients(2, 1).collect::<Vec<_>>(), [8, 6]);
        let mut data = Vec::new();
        mail.data(1, 5, &mut data);
        assert!(data.ends_with(b"\r\n..x\r\n.\r\n"));
        assert_eq!(message_id_of(&mail.message(1, 5)).as_deref(), Some("r1.5@sender1.test"));
    }
}
