//! IMAP benchmark (IMAP server issue): Tern's IMAP server beside Dovecot 2.3 (Debian's
//! dovecot-imapd, maildir), both real processes on loopback, loaded with the same
//! generated mailbox, same workload, in one run. For each workload it prints both
//! results and the ratio Tern speed / Dovecot speed (above 1.0: Tern is faster).
//!
//! The mailbox: `--messages` (default 10,000) messages from `tern_testkit::corpus`, of
//! mixed sizes (most 2–10 KB, 10% 30–60 KB, 2% 150–300 KB), CRLF line endings, with
//! flags (\Seen 80%, \Answered 10%, \Flagged 2%, keyword $Work 5%) and marker words for
//! searching. It is written once as a Maildir, which is Dovecot's mailbox; Tern gets
//! the same files with `tern import maildir`. Before timing, every body is fetched from
//! both and compared with the corpus, so both serve the same bytes under the same UIDs.
//!
//! Workloads (1–4 in one session at a time, repeated `--repeat` times alternating which
//! server goes first; the median is shown):
//!
//! 1. connect, LOGIN, `SELECT INBOX`, `FETCH 1:* (UID FLAGS ENVELOPE)`;
//! 2. every body: `UID FETCH 1:* BODY.PEEK[]`, and again in chunks of 500 UIDs;
//! 3. `UID SEARCH TEXT <word>` for words in about 50%, 10%, 1% and nearly all messages;
//! 4. `UID STORE 1:1000 +FLAGS (\Flagged)` then `-FLAGS`, three rounds;
//! 5. `--sessions` (default 50) concurrent sessions for `--seconds` (default 30), each
//!    logged in with INBOX selected, looping over NOOP, `UID FETCH` of 20 random UIDs
//!    (FLAGS ENVELOPE), `UID FETCH` of one random body, `UID SEARCH` of a flag or
//!    keyword, `UID STORE` of one flag on one random message; completed commands/s.
//!
//! Both use the same password hash: Argon2id with Tern's parameters (Dovecot checks the
//! `{ARGON2ID}` scheme with libsodium). Connection limits are raised on both so that
//! `--sessions` connections from 127.0.0.1 for one user are allowed (Dovecot's
//! mail_max_userip_connections, Tern's limits.max_connections_per_ip).
//!
//! Run: `cargo build --release -p tern && cargo run --release -p tern-bench --bin imap`
//! (options: --messages N --seconds S --sessions N --repeat N --only 1,2,…). It needs
//! Dovecot (scripts/test.sh installs it).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tern_bench::client::{self, Client};
use tern_bench::tern_process::{TernProcess, own_cpu_seconds, tree_cpu_seconds};
use tern_bench::{command_output, load_average, median, thousands};
use tern_testkit::corpus;
use tern_testkit::dovecot::Dovecot;

#[derive(Parser)]
struct Args {
    /// Messages in the mailbox.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one())]
    messages: usize,
    /// Length of the concurrent mixed load (workload 5), per server.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Concurrent sessions of workload 5.
    #[arg(long, default_value_t = 50, value_parser = at_least_one())]
    sessions: usize,
    /// Runs of each of workloads 1–4 per server (the median is shown).
    #[arg(long, default_value_t = 5, value_parser = at_least_one())]
    repeat: usize,
    /// Only these workloads (e.g. `--only 1,5`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
    /// Seed of the generated mailbox.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The Tern binary (default: `tern` beside this benchmark, i.e. target/release/tern).
    #[arg(long)]
    tern: Option<PathBuf>,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

const USER: &str = "bench@bench.test";
const PASSWORD: &str = "bench-Secret-2026";
/// Words `UID SEARCH TEXT` looks for; the first three are put into the corpus (see
/// MARKERS), the last is one of the corpus generator's own words.
const SEARCH_WORDS: [&str; 4] = ["ocelot", "walrus", "pelican", "holiday"];
/// Marker words and the 1-in-N share of messages whose text gets each.
const MARKERS: [(&str, u32); 3] = [("ocelot", 2), ("walrus", 10), ("pelican", 100)];
/// Message sizes (bytes) and their shares of the mailbox, in per mille.
const SIZES: [(usize, usize); 9] = [
    (2_000, 200),
    (4_000, 200),
    (6_000, 200),
    (8_000, 150),
    (10_000, 130),
    (30_000, 60),
    (60_000, 40),
    (150_000, 15),
    (300_000, 5),
];
const STORE_MESSAGES: u32 = 1000;
const STORE_ROUNDS: usize = 3;
const BODY_CHUNK: u32 = 500;
const MIXED_RANGE: u32 = 20;

/// One server under test, as the workloads see it.
#[derive(Clone)]
struct Peer {
    name: &'static str,
    port: u16,
    /// The PID whose process tree is the server (Tern's process, Dovecot's master).
    pid: u32,
}

impl Peer {
    fn cpu(&self) -> f64 {
        tree_cpu_seconds(self.pid)
    }
}

/// The generated mailbox, in UID order.
struct Mailbox {
    messages: Vec<Vec<u8>>,
    /// Maildir info flags of each message (`FRSa`…), `a` being $Work.
    flags: Vec<String>,
}

impl Mailbox {
    fn generate(seed: u64, count: usize) -> Mailbox {
        let mut all = Vec::with_capacity(count);
        let mut left = count;
        for (class, &(size, per_mille)) in SIZES.iter().enumerate().rev() {
            // The smallest class takes the rounding remainder.
            let n = if class == 0 {
                left
            } else {
                (count * per_mille / 1000).min(left)
            };
            left -= n;
            all.extend(corpus::messages(seed * 100 + class as u64, n, size));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        all.shuffle(&mut rng);
        for m in &mut all {
            let words: Vec<&str> = MARKERS
                .iter()
                .filter(|(_, one_in)| rng.random_ratio(1, *one_in))
                .map(|(w, _)| *w)
                .collect();
            if words.is_empty() {
                continue;
            }
            // At the start of the text part (the first 8bit part), so it is body text
            // for every server, not a MIME preamble.
            let mark = b"Content-Transfer-Encoding: 8bit\r\n\r\n";
            if let Some(at) = find(m, mark) {
                let line = format!("{}\r\n", words.join(" "));
                let at = at + mark.len();
                m.splice(at..at, line.into_bytes());
            }
        }
        let flags = (0..all.len())
            .map(|i| {
                let mut f = String::new();
                if i % 50 == 7 {
                    f.push('F');
                }
                if i % 10 == 1 {
                    f.push('R');
                }
                if i % 5 != 0 {
                    f.push('S');
                }
                if i % 20 == 3 {
                    f.push('a');
                }
                f
            })
            .collect();
        Mailbox { messages: all, flags }
    }

    fn bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.len() as u64).sum()
    }

    /// Messages containing `word`, ASCII case-insensitively (as Dovecot's TEXT).
    fn containing(&self, word: &str) -> usize {
        let w = word.to_ascii_lowercase().into_bytes();
        self.messages
            .iter()
            .filter(|m| m.windows(w.len()).any(|x| x.eq_ignore_ascii_case(&w)))
            .count()
    }

    fn count_flag(&self, letter: char) -> usize {
        self.flags.iter().filter(|f| f.contains(letter)).count()
    }

    /// Writes the mailbox into Maildir `cur/` as Dovecot names its own files
    /// (`<time>.M<n>P<pid>.<host>,S=<size>,W=<size>:2,<flags>`), with a
    /// dovecot-keywords file naming `a` as $Work.
    fn write_maildir(&self, root: &Path) -> std::io::Result<()> {
        std::fs::write(root.join("dovecot-keywords"), "0 $Work\n")?;
        let cur = root.join("cur");
        std::fs::create_dir_all(&cur)?;
        let stamp = 1_700_000_000u64;
        for (i, (m, f)) in self.messages.iter().zip(&self.flags).enumerate() {
            let t = stamp + i as u64;
            let name = format!("{t}.M{i}P1.bench,S={len},W={len}:2,{f}", len = m.len());
            let path = cur.join(name);
            std::fs::write(&path, m)?;
            let file = std::fs::File::options().write(true).open(&path)?;
            file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(t))?;
        }
        Ok(())
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

/// Results of one measure for both servers: one value per run.
struct Row {
    label: String,
    /// A few words naming the row in the second table.
    short: String,
    /// "s" (lower is better) or a rate unit (higher is better).
    unit: &'static str,
    tern: Vec<f64>,
    dovecot: Vec<f64>,
    /// Server and client CPU seconds, summed over the runs.
    cpu: [(f64, f64); 2],
    note: String,
}

impl Row {
    fn new(short: impl Into<String>, label: impl Into<String>, unit: &'static str) -> Row {
        Row {
            short: short.into(),
            label: label.into(),
            unit,
            tern: Vec::new(),
            dovecot: Vec::new(),
            cpu: [(0.0, 0.0); 2],
            note: String::new(),
        }
    }
    fn push(&mut self, peer: usize, value: f64, server_cpu: f64, client_cpu: f64) {
        if peer == 0 {
            self.tern.push(value);
        } else {
            self.dovecot.push(value);
        }
        self.cpu[peer].0 += server_cpu;
        self.cpu[peer].1 += client_cpu;
    }
    fn ratio(&self) -> f64 {
        let (t, d) = (median(&self.tern), median(&self.dovecot));
        if self.unit == "s" { d / t } else { t / d }
    }
}

fn show(v: &[f64], unit: &str) -> String {
    let m = median(v);
    if unit == "s" {
        if m < 0.1 {
            format!("{:.1} ms", m * 1000.0)
        } else {
            format!("{m:.3} s")
        }
    } else {
        format!("{} {unit}", thousands(m))
    }
}

fn spread(v: &[f64], unit: &str) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() < 2 {
        return String::new();
    }
    if unit == "s" {
        format!("{:.1}–{:.1} ms", lo * 1000.0, hi * 1000.0)
    } else {
        format!("{}–{}", thousands(lo), thousands(hi))
    }
}

/// Times `f` and the server's and this client's CPU over it.
async fn measured<T, F: std::future::Future<Output = T>>(peer: &Peer, f: F) -> (T, f64, f64, f64) {
    let (s0, c0) = (peer.cpu(), own_cpu_seconds());
    let t = Instant::now();
    let out = f.await;
    let elapsed = t.elapsed().as_secs_f64();
    (out, elapsed, peer.cpu() - s0, own_cpu_seconds() - c0)
}

fn fail(peer: &Peer, what: &str, e: client::Error) -> ! {
    panic!("{}: {what}: {e}", peer.name)
}

async fn session(peer: &Peer) -> Client {
    let mut c = Client::login(peer.port, USER, PASSWORD)
        .await
        .unwrap_or_else(|e| fail(peer, "LOGIN", e));
    c.run("SELECT INBOX", |_| {})
        .await
        .unwrap_or_else(|e| fail(peer, "SELECT INBOX", e));
    c
}

/// Workload 1, split into its steps: (connect + greeting, LOGIN, SELECT, FETCH).
async fn open_and_list(peer: &Peer) -> ([f64; 4], usize) {
    let t = Instant::now();
    let mut c = Client::connect(peer.port)
        .await
        .unwrap_or_else(|e| fail(peer, "connect", e));
    let connected = t.elapsed().as_secs_f64();
    c.run(&format!("LOGIN {USER} {PASSWORD}"), |_| {})
        .await
        .unwrap_or_else(|e| fail(peer, "LOGIN", e));
    let logged_in = t.elapsed().as_secs_f64();
    c.run("SELECT INBOX", |_| {})
        .await
        .unwrap_or_else(|e| fail(peer, "SELECT", e));
    let selected = t.elapsed().as_secs_f64();
    let mut n = 0;
    c.run("FETCH 1:* (UID FLAGS ENVELOPE)", |r| {
        n += r.ends_with(b")\r\n") as usize
    })
    .await
    .unwrap_or_else(|e| fail(peer, "FETCH 1:* (UID FLAGS ENVELOPE)", e));
    let fetched = t.elapsed().as_secs_f64();
    c.logout().await;
    (
        [
            connected,
            logged_in - connected,
            selected - logged_in,
            fetched - selected,
        ],
        n,
    )
}

/// Workload 2: every body, in one command or in chunks of UIDs. Returns bytes fetched.
async fn fetch_bodies(c: &mut Client, peer: &Peer, messages: u32, chunk: Option<u32>) -> (u64, usize) {
    let mut bytes = 0u64;
    let mut count = 0usize;
    let ranges: Vec<String> = match chunk {
        None => vec!["1:*".into()],
        Some(k) => (0..messages.div_ceil(k))
            .map(|i| format!("{}:{}", i * k + 1, ((i + 1) * k).min(messages)))
            .collect(),
    };
    for r in ranges {
        c.run(&format!("UID FETCH {r} BODY.PEEK[]"), |resp| {
            if let Some(body) = client::first_literal(resp) {
                bytes += body.len() as u64;
                count += 1;
            }
        })
        .await
        .unwrap_or_else(|e| fail(peer, "UID FETCH BODY.PEEK[]", e));
    }
    (bytes, count)
}

/// Fetches every body and checks it against the corpus: same bytes under UID i + 1.
async fn verify_content(peer: &Peer, mailbox: &Mailbox) -> Result<String, String> {
    let mut c = session(peer).await;
    let mut by_uid: HashMap<u32, u64> = HashMap::new();
    c.run("UID FETCH 1:* BODY.PEEK[]", |r| {
        if let (Some(uid), Some(body)) = (client::number_after(r, b"UID"), client::first_literal(r)) {
            by_uid.insert(uid, hash_bytes(body));
        }
    })
    .await
    .unwrap_or_else(|e| fail(peer, "UID FETCH 1:* BODY.PEEK[]", e));
    let mut flags = [0usize; 3];
    c.run("FETCH 1:* (FLAGS)", |r| {
        for (i, f) in [&b"\\Seen"[..], b"\\Flagged", b"$Work"].iter().enumerate() {
            flags[i] += find(r, f).is_some() as usize;
        }
    })
    .await
    .unwrap_or_else(|e| fail(peer, "FETCH 1:* (FLAGS)", e));
    c.logout().await;
    let expected: Vec<u64> = mailbox.messages.iter().map(|m| hash_bytes(m)).collect();
    let in_order = (0..expected.len()).all(|i| by_uid.get(&(i as u32 + 1)) == Some(&expected[i]));
    let want_flags = [
        mailbox.count_flag('S'),
        mailbox.count_flag('F'),
        mailbox.count_flag('a'),
    ];
    if flags != want_flags {
        return Err(format!(
            "{}: flags differ from the corpus: \\Seen/\\Flagged/$Work {flags:?}, expected {want_flags:?}",
            peer.name
        ));
    }
    if by_uid.len() == expected.len() && in_order {
        return Ok(format!(
            "{}: all {} bodies identical to the corpus under UIDs 1..{}; flags as written",
            peer.name,
            expected.len(),
            expected.len()
        ));
    }
    let mut a: Vec<u64> = by_uid.values().copied().collect();
    let mut b = expected.clone();
    a.sort_unstable();
    b.sort_unstable();
    if a == b {
        Err(format!(
            "{}: same bodies as the corpus but in another UID order",
            peer.name
        ))
    } else {
        Err(format!(
            "{}: {} bodies fetched, {} expected, contents differ",
            peer.name,
            by_uid.len(),
            expected.len()
        ))
    }
}

/// Workload 3: one search; returns the number of UIDs found.
async fn search(c: &mut Client, peer: &Peer, word: &str) -> usize {
    let mut hits = 0;
    c.run(&format!("UID SEARCH TEXT \"{word}\""), |r| {
        hits += client::search_count(r)
    })
    .await
    .unwrap_or_else(|e| fail(peer, "UID SEARCH TEXT", e));
    hits
}

/// Workload 4: rounds of adding and removing \Flagged on UIDs 1:1000.
async fn store_rounds(c: &mut Client, peer: &Peer, last: u32) {
    for _ in 0..STORE_ROUNDS {
        for op in ['+', '-'] {
            // Tern answers with the flags of all 1,000; Dovecot only of those whose
            // flags changed (20 of them are \Flagged from the start).
            c.run(&format!("UID STORE 1:{last} {op}FLAGS (\\Flagged)"), |_| {})
                .await
                .unwrap_or_else(|e| fail(peer, "UID STORE", e));
        }
    }
}

const KINDS: [&str; 5] = [
    "NOOP",
    "UID FETCH 20 (FLAGS ENVELOPE)",
    "UID FETCH 1 BODY.PEEK[]",
    "UID SEARCH flag/keyword",
    "UID STORE ±FLAGS 1 message",
];

/// What workload 5 measured on one server.
#[derive(Default)]
struct Mixed {
    completed: usize,
    seconds: f64,
    /// Latencies in microseconds, per command kind.
    latencies: [Vec<u32>; 5],
    errors: Vec<String>,
}

/// Workload 5: `sessions` concurrent sessions for `seconds`.
async fn mixed(peer: &Peer, sessions: usize, seconds: u64, messages: u32) -> Mixed {
    let barrier = Arc::new(tokio::sync::Barrier::new(sessions + 1));
    let duration = Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..sessions)
        .map(|s| {
            let barrier = barrier.clone();
            let port = peer.port;
            tokio::spawn(async move {
                let mut out = Mixed::default();
                let setup = async {
                    let mut c = Client::login(port, USER, PASSWORD).await?;
                    c.run("SELECT INBOX", |_| {}).await?;
                    Ok::<_, client::Error>(c)
                }
                .await;
                barrier.wait().await;
                let mut c = match setup {
                    Ok(c) => c,
                    Err(e) => {
                        out.errors.push(format!("session {s} LOGIN/SELECT: {e}"));
                        return out;
                    }
                };
                // The same command sequence for both servers.
                let mut rng = StdRng::seed_from_u64(1000 + s as u64);
                let start = Instant::now();
                let deadline = start + duration;
                let searches = ["UID SEARCH FLAGGED", "UID SEARCH KEYWORD $Work", "UID SEARCH UNSEEN"];
                loop {
                    let kind = rng.random_range(0..KINDS.len());
                    let uid = rng.random_range(1..=messages);
                    let command = match kind {
                        0 => "NOOP".to_string(),
                        1 => {
                            let a = rng.random_range(1..=messages.saturating_sub(MIXED_RANGE - 1).max(1));
                            format!("UID FETCH {a}:{} (FLAGS ENVELOPE)", a + MIXED_RANGE - 1)
                        }
                        2 => format!("UID FETCH {uid} BODY.PEEK[]"),
                        3 => searches[rng.random_range(0..searches.len())].to_string(),
                        _ => {
                            let op = if rng.random_bool(0.5) { '+' } else { '-' };
                            format!("UID STORE {uid} {op}FLAGS (\\Answered)")
                        }
                    };
                    let t = Instant::now();
                    let result = c.run(&command, |_| {}).await;
                    let now = Instant::now();
                    if now > deadline {
                        break;
                    }
                    match result {
                        Ok(()) => {
                            out.completed += 1;
                            out.latencies[kind].push((now - t).as_micros() as u32);
                        }
                        Err(e) => {
                            out.errors.push(format!("session {s} {command}: {e}"));
                            if !matches!(e, client::Error::Refused(_)) {
                                return out;
                            }
                        }
                    }
                }
                out.seconds = start.elapsed().as_secs_f64().min(duration.as_secs_f64());
                c.logout().await;
                out
            })
        })
        .collect();
    barrier.wait().await;
    let mut total = Mixed::default();
    for t in tasks {
        let m = t.await.expect("a session task panicked");
        total.completed += m.completed;
        for (all, one) in total.latencies.iter_mut().zip(m.latencies) {
            all.extend(one);
        }
        total.errors.extend(m.errors);
    }
    total.seconds = duration.as_secs_f64();
    total
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Dovecot allows 10 connections per user and IP by default; raise it for workload 5
/// and make the master re-read its configuration.
fn raise_dovecot_connection_limit(dovecot: &Dovecot, limit: usize) {
    let mut conf = std::fs::read_to_string(dovecot.config_path()).expect("read dovecot.conf");
    conf.push_str(&format!(
        "# Added by tern-bench imap: many sessions of one user from 127.0.0.1.\nprotocol imap {{\n  mail_max_userip_connections = {limit}\n}}\n"
    ));
    std::fs::write(dovecot.config_path(), conf).expect("write dovecot.conf");
    let pid = master_pid(dovecot);
    let ok = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot make Dovecot ({pid}) reload its configuration");
    std::thread::sleep(Duration::from_secs(1));
}

fn master_pid(dovecot: &Dovecot) -> u32 {
    std::fs::read_to_string(dovecot.dir().join("run").join("master.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("Dovecot's master.pid")
}

fn main() {
    let args = Args::parse();
    let run_it = |w: u32| args.only.is_empty() || args.only.contains(&w);
    let tern_binary = TernProcess::find_binary(args.tern.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    tern_bench::print_header(
        &format!(
            "IMAP benchmark: Tern vs Dovecot {}",
            command_output("dovecot", &["--version"])
        ),
        "imap",
        "both servers' data",
        Some(&tern_binary),
    );
    println!("- load average at start: {}", load_average());
    println!();

    // The mailbox.
    let t = Instant::now();
    let mailbox = Mailbox::generate(args.seed, args.messages);
    let n = mailbox.messages.len() as u32;
    println!(
        "Mailbox: {} messages, {:.1} MB, generated in {:.1} s (seed {}).",
        n,
        mailbox.bytes() as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        args.seed
    );

    // Dovecot with the maildir.
    let mut dovecot = Dovecot::start_with_users(&[(USER, PASSWORD)]).unwrap_or_else(|e| panic!("{e}"));
    raise_dovecot_connection_limit(&dovecot, args.sessions + 10);
    {
        let mut imap = tern_bench::Imap::login(dovecot.imap_port(), USER, PASSWORD);
        imap.command("SELECT INBOX"); // creates the maildir
        imap.command("LOGOUT");
    }
    let maildir = dovecot.maildir(USER);
    let t = Instant::now();
    mailbox.write_maildir(&maildir).expect("write the maildir");
    println!("Maildir written in {:.1} s.", t.elapsed().as_secs_f64());
    // The same Argon2id hash parameters as Tern's accounts.
    let hash = tern_store::password::hash(PASSWORD).expect("hash");
    std::fs::write(dovecot.dir().join("users"), format!("{USER}:{{ARGON2ID}}{hash}\n")).expect("users file");

    // Tern with the same maildir imported.
    let mut tern =
        TernProcess::create(&tern_binary, USER, PASSWORD, args.sessions + 10).unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let imported = tern
        .cli(&["import", "maildir", USER, &maildir.to_string_lossy()], None)
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "Tern import: {:.1} s (`tern import maildir`: {}).",
        t.elapsed().as_secs_f64(),
        imported.trim()
    );
    tern.start().unwrap_or_else(|e| panic!("{e}"));

    let peers = [
        Peer {
            name: "Tern",
            port: tern.imap_port(),
            pid: tern.pid().expect("Tern runs"),
        },
        Peer {
            name: "Dovecot",
            port: dovecot.imap_port(),
            pid: master_pid(&dovecot),
        },
    ];
    println!(
        "Tern pid {} on port {}; Dovecot master pid {} on port {}.",
        peers[0].pid, peers[0].port, peers[1].pid, peers[1].port
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // First opens: Dovecot indexes the maildir; then every body is checked.
    for p in &peers {
        let ((_, listed), secs, cpu, _) = rt.block_on(measured(p, open_and_list(p)));
        println!(
            "{}: first open (login, SELECT, FETCH ENVELOPE of {listed}): {secs:.2} s, server CPU {cpu:.2} s.",
            p.name
        );
        assert_eq!(listed, n as usize, "{} listed {listed} messages", p.name);
    }
    for p in &peers {
        match rt.block_on(verify_content(p, &mailbox)) {
            Ok(msg) => println!("Content check: {msg}."),
            Err(msg) => panic!("Content check failed: {msg}"),
        }
    }
    println!();

    let mut rows: Vec<Row> = Vec::new();
    let mut phases: [[Vec<f64>; 4]; 2] = Default::default();
    let order = |rep: usize| if rep.is_multiple_of(2) { [0, 1] } else { [1, 0] };

    if run_it(1) {
        let mut row = Row::new(
            "1. open + list",
            format!(
                "1. connect + LOGIN + SELECT + `FETCH 1:* (UID FLAGS ENVELOPE)` ({} messages)",
                thousands(n as f64)
            ),
            "s",
        );
        for rep in 0..args.repeat {
            for i in order(rep) {
                let p = &peers[i];
                let ((steps, listed), secs, cpu, ccpu) = rt.block_on(measured(p, open_and_list(p)));
                assert_eq!(listed, n as usize);
                row.push(i, secs, cpu, ccpu);
                for (all, one) in phases[i].iter_mut().zip(steps) {
                    all.push(one);
                }
            }
        }
        rows.push(row);
    }

    if run_it(2) {
        for chunk in [None, Some(BODY_CHUNK)] {
            let label = match chunk {
                None => format!(
                    "2. every body: `UID FETCH 1:* BODY.PEEK[]` ({:.0} MB)",
                    mailbox.bytes() as f64 / 1e6
                ),
                Some(k) => format!(
                    "2. every body in chunks: `UID FETCH a:a+{} BODY.PEEK[]` ×{}",
                    k - 1,
                    n.div_ceil(k)
                ),
            };
            let short = if chunk.is_none() {
                "2. bodies, one command"
            } else {
                "2. bodies, chunks"
            };
            let mut row = Row::new(short, label, "s");
            let mut sessions = [rt.block_on(session(&peers[0])), rt.block_on(session(&peers[1]))];
            for rep in 0..args.repeat.clamp(1, 3) {
                for i in order(rep) {
                    let p = &peers[i];
                    let ((bytes, count), secs, cpu, ccpu) =
                        rt.block_on(measured(p, fetch_bodies(&mut sessions[i], p, n, chunk)));
                    assert_eq!(count, n as usize, "{} sent {count} bodies", p.name);
                    assert_eq!(bytes, mailbox.bytes(), "{} sent {bytes} bytes", p.name);
                    row.push(i, secs, cpu, ccpu);
                }
            }
            let mbs = |v: &[f64]| mailbox.bytes() as f64 / 1e6 / median(v);
            row.note = format!("{:.0} MB/s vs {:.0} MB/s", mbs(&row.tern), mbs(&row.dovecot));
            for s in sessions {
                rt.block_on(s.logout());
            }
            rows.push(row);
        }
    }

    if run_it(3) {
        let mut sessions = [rt.block_on(session(&peers[0])), rt.block_on(session(&peers[1]))];
        for word in SEARCH_WORDS {
            let expected = mailbox.containing(word);
            let mut row = Row::new(
                format!("3. TEXT {word}"),
                format!(
                    "3. `UID SEARCH TEXT \"{word}\"` ({expected} hits, {:.0}%)",
                    100.0 * expected as f64 / n as f64
                ),
                "s",
            );
            let mut hits = [0usize; 2];
            for rep in 0..args.repeat {
                for i in order(rep) {
                    let p = &peers[i];
                    let (found, secs, cpu, ccpu) = rt.block_on(measured(p, search(&mut sessions[i], p, word)));
                    hits[i] = found;
                    row.push(i, secs, cpu, ccpu);
                }
            }
            if hits != [expected, expected] {
                row.note = format!("HITS DIFFER: Tern {}, Dovecot {}, corpus {expected}", hits[0], hits[1]);
            }
            rows.push(row);
        }
        for s in sessions {
            rt.block_on(s.logout());
        }
    }

    if run_it(4) {
        let last = STORE_MESSAGES.min(n);
        let mut row = Row::new(
            "4. STORE 1,000",
            format!("4. `UID STORE 1:{last} +FLAGS (\\Flagged)` then `-FLAGS`, {STORE_ROUNDS} rounds"),
            "s",
        );
        let mut sessions = [rt.block_on(session(&peers[0])), rt.block_on(session(&peers[1]))];
        for rep in 0..args.repeat {
            for i in order(rep) {
                let p = &peers[i];
                let ((), secs, cpu, ccpu) = rt.block_on(measured(p, store_rounds(&mut sessions[i], p, last)));
                row.push(i, secs, cpu, ccpu);
            }
        }
        let per = |v: &[f64]| median(v) * 1000.0 / (2 * STORE_ROUNDS) as f64;
        row.note = format!(
            "{:.1} ms vs {:.1} ms per STORE of {last}",
            per(&row.tern),
            per(&row.dovecot)
        );
        for s in sessions {
            rt.block_on(s.logout());
        }
        rows.push(row);
    }

    let mut mixed_results: Vec<Mixed> = Vec::new();
    if run_it(5) {
        let mut row = Row::new(
            "5. concurrent mixed",
            format!(
                "5. {} concurrent sessions, mixed commands, {} s (completed commands/s)",
                args.sessions, args.seconds
            ),
            "cmd/s",
        );
        for i in [0, 1] {
            let p = &peers[i];
            let (m, _, cpu, ccpu) = rt.block_on(measured(p, mixed(p, args.sessions, args.seconds, n)));
            row.push(i, m.completed as f64 / m.seconds, cpu, ccpu);
            mixed_results.push(m);
        }
        let errors: usize = mixed_results.iter().map(|m| m.errors.len()).sum();
        if errors > 0 {
            row.note = format!(
                "errors: Tern {}, Dovecot {}",
                mixed_results[0].errors.len(),
                mixed_results[1].errors.len()
            );
        }
        rows.push(row);
    }

    // The report.
    println!("## Results (median of the runs; ratio = Tern speed / Dovecot speed, ≥ 1.0 means Tern is faster)");
    println!();
    println!("| workload | Tern | Dovecot | ratio | notes |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | **{:.2}** | {} |",
            r.label,
            show(&r.tern, r.unit),
            show(&r.dovecot, r.unit),
            r.ratio(),
            r.note
        );
    }
    println!();
    println!("### Spread and CPU");
    println!();
    println!(
        "Runs per workload: {} (workload 2: {}, workload 5: 1). CPU: seconds of user + system time per run, server (Tern's process; Dovecot's master and all its children) and this client.",
        args.repeat,
        args.repeat.clamp(1, 3)
    );
    println!();
    println!("| workload | Tern min–max | Dovecot min–max | Tern CPU (client) | Dovecot CPU (client) |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        let runs = |v: &[f64]| v.len().max(1) as f64;
        println!(
            "| {} | {} | {} | {:.2} s ({:.2} s) | {:.2} s ({:.2} s) |",
            r.short,
            spread(&r.tern, r.unit),
            spread(&r.dovecot, r.unit),
            r.cpu[0].0 / runs(&r.tern),
            r.cpu[0].1 / runs(&r.tern),
            r.cpu[1].0 / runs(&r.dovecot),
            r.cpu[1].1 / runs(&r.dovecot),
        );
    }
    if run_it(1) {
        println!();
        println!("### Workload 1 by step (median)");
        println!();
        println!("| step | Tern | Dovecot |");
        println!("|---|---|---|");
        for (k, step) in [
            "connect + greeting",
            "LOGIN (Argon2id)",
            "SELECT INBOX",
            "FETCH 1:* (UID FLAGS ENVELOPE)",
        ]
        .iter()
        .enumerate()
        {
            println!(
                "| {step} | {:.1} ms | {:.1} ms |",
                median(&phases[0][k]) * 1000.0,
                median(&phases[1][k]) * 1000.0
            );
        }
    }
    if !mixed_results.is_empty() {
        println!();
        println!("### Workload 5 by command (completed; latency p50 / p99)");
        println!();
        println!("| command | Tern count | Tern p50 / p99 | Dovecot count | Dovecot p50 / p99 |");
        println!("|---|---|---|---|---|");
        for (k, name) in KINDS.iter().enumerate() {
            let cell = |m: &Mixed| {
                let mut l = m.latencies[k].clone();
                l.sort_unstable();
                (
                    thousands(l.len() as f64),
                    format!("{:.1} / {:.1} ms", percentile(&l, 0.5), percentile(&l, 0.99)),
                )
            };
            let (tc, tl) = cell(&mixed_results[0]);
            let (dc, dl) = cell(&mixed_results[1]);
            println!("| {name} | {tc} | {tl} | {dc} | {dl} |");
        }
        for (m, p) in mixed_results.iter().zip(&peers) {
            for e in m.errors.iter().take(5) {
                println!("- {} error: {e}", p.name);
            }
        }
    }
    println!();
    println!("Load average at end: {}", load_average());
    let warnings = tern
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    if warnings > 0 {
        println!("Tern logged {warnings} warnings or errors; the first:");
        for l in tern
            .log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(5)
        {
            println!("    {l}");
        }
    }
    drop(rt);
    tern.stop();
    let _ = dovecot.stop();
}
