//! Webmail benchmark (webmail issue, issue 6): the server time of Tern's webmail on a
//! 100,000-message INBOX, beside the same operations done the way a webmail on IMAP
//! does them against Dovecot 2.3 (Debian's dovecot-imapd, maildir) holding the same
//! messages under the same UIDs. Both are real processes on loopback.
//!
//! Measured (each operation `--samples` times, default 200, after `--warmup` requests,
//! default 20): the time from writing the request to having read the whole response,
//! one request at a time over one kept-alive HTTP/1.1 connection (Tern) or one IMAP
//! session with INBOX selected (Dovecot). The client is this benchmark's own, blocking,
//! on a raw `TcpStream`.
//!
//! | operation | Tern (logged in, `Accept: text/html`) | Dovecot (a webmail on IMAP) |
//! |---|---|---|
//! | (a) list, first page | `GET /mail?folder=INBOX` (50 rows, newest first) | `UID SORT (REVERSE ARRIVAL) UTF-8 ALL` + `UID FETCH <first 50> (ENVELOPE FLAGS RFC822.SIZE)` |
//! | list, page 1,000 | `…&page=1000` (offset 50,000) | the same SORT + FETCH of entries 50,001–50,050 |
//! | list by sender | `…&sort=from` | `UID SORT (DISPLAYFROM) UTF-8 ALL` + FETCH of 50 |
//! | list by subject | `…&sort=subject` | `UID SORT (SUBJECT) UTF-8 ALL` + FETCH of 50 |
//! | (b) open a message | `GET /mail/read?…&uid=N` then `GET /mail/body?…&uid=N` | `UID FETCH N BODY.PEEK[]` |
//! | (c) search | `GET /mail?folder=INBOX&q=WORD` (first page of results) | `UID SEARCH TEXT WORD` |
//!
//! Opening uses `--samples` distinct random UIDs spread over the whole folder (the same
//! ones for both servers). Tern marks an unread message \Seen when it is opened (a
//! durable write), as a webmail does; BODY.PEEK[] does not, so the Tern figures are also
//! shown split by whether the message was unread. Search looks for two marker words put
//! into the text of about 1% and 20% of the messages. Dovecot has no full-text index in
//! Debian's default configuration, so its SEARCH TEXT reads every message: it gets
//! `--peer-search-samples` runs (default 10) instead of `--samples`.
//!
//! The mailbox: `--messages` (default 100,000) messages from
//! `tern_testkit::migration_corpus` (one folder: plain text in UTF-8 and ASCII,
//! multipart/alternative with HTML, attachments (PDF), forwarded messages, HTML with an
//! inline image; sizes log-uniform between 1 and 16 KB, about 5.4 KB on average;
//! INBOX flags and keywords; INTERNALDATEs rising from 2005 to 2026), with the From
//! field replaced by one of about 1,200 people and a few automated senders (skewed, so
//! some senders have many messages) and the marker words added. It is generated once
//! and kept under `target/bench-webmail/` (or `--cache`): Tern's data folder, filled
//! with `Store::append` in batches of 500 directly on the store (not over the network),
//! and the same messages as a Maildir in Dovecot's file naming, with the INTERNALDATE
//! as file time. Each run works on copies: Tern's data folder is copied to a temporary
//! folder (opening messages marks them \Seen, so every run starts from the same
//! flags), and the Maildir files are hard-linked into the Dovecot fixture's user, which
//! indexes them at its first SELECT (untimed). Before timing, a sample of messages is
//! fetched from both and compared byte for byte under the same UID, and the first pages
//! and search hit counts are compared.
//!
//! Targets (p95): first page ≤ 50 ms (also shown for page 1,000 and the other sorts),
//! opening a message (read + body) ≤ 30 ms, search ≤ 200 ms.
//!
//! Run: `cargo build --release -p tern && cargo run --release -p tern-bench --bin webmail`
//! (options: --messages N --samples N --warmup N --peer-search-samples N --seed N
//! --cache DIR --no-dovecot --tern PATH). It needs Dovecot (scripts/test.sh installs it).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_bench::client::{self, Client};
use tern_bench::tern_process::{self, TernProcess, tree_cpu_seconds};
use tern_bench::{command_output, load_average, thousands};
use tern_store::{EmbeddedStore, Flags, NewMessage, Store};
use tern_testkit::dovecot::Dovecot;
use tern_testkit::migration_corpus::{self, CorpusSpec};

#[derive(Parser)]
struct Args {
    /// Messages in the INBOX.
    #[arg(long, default_value_t = 100_000, value_parser = at_least(1_000))]
    messages: usize,
    /// Timed requests per operation and server.
    #[arg(long, default_value_t = 200, value_parser = at_least(1))]
    samples: usize,
    /// Untimed requests of each operation before its samples.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Timed `UID SEARCH TEXT` runs per word on Dovecot, which reads every message each time.
    #[arg(long, default_value_t = 10, value_parser = at_least(1))]
    peer_search_samples: usize,
    /// Seed of the generated mailbox and of the random UIDs.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Where the generated mailbox is kept between runs (default: target/bench-webmail).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Only Tern (no Dovecot side).
    #[arg(long)]
    no_dovecot: bool,
    /// The Tern binary (default: `tern` beside this benchmark, i.e. target/release/tern).
    #[arg(long)]
    tern: Option<PathBuf>,
}

fn at_least(n: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(n..)
}

const USER: &str = "bench@bench.test";
const PASSWORD: &str = "bench-Secret-2026";
const HOSTNAME: &str = "mail.bench.test";
/// Rows of a webmail list page (Tern's `PAGE_SIZE`).
const PAGE: usize = 50;
/// The deep page: page 1,000 counting from 0, i.e. rows 50,001–50,050 (the middle page
/// in a mailbox of fewer than 100,000 messages).
const DEEP_PAGE: usize = 1_000;
/// Marker words and the 1-in-N share of messages whose text gets each.
const MARKERS: [(&str, u32); 2] = [("pelican", 100), ("walrus", 5)];
/// Message sizes: log-uniform between these bounds (bytes), mean about 5.4 KB.
const MESSAGE_SIZE: (usize, usize) = (1_000, 16_000);
/// Messages per `Store::append` call while filling Tern's store.
const APPEND_BATCH: usize = 500;
/// Messages compared byte for byte between the two servers before timing.
const CONTENT_CHECKS: usize = 50;
/// Targets (p95, milliseconds).
const TARGET_LIST_MS: f64 = 50.0;
const TARGET_OPEN_MS: f64 = 30.0;
const TARGET_SEARCH_MS: f64 = 200.0;
/// Bumped when the generated mailbox changes, so an old cache is not reused.
const CACHE_VERSION: u32 = 1;

// --- The mailbox -------------------------------------------------------------------

const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hugo", "Isabel", "Jonas", "Karin", "Liam", "Mia",
    "Noah", "Olivia", "Paul", "Quentin", "Rosa", "Sven", "Tara", "Ulrich", "Vera", "William", "Xenia", "Yusuf", "Zoë",
    "Aisha", "Bruno", "Carmen", "Dmitri", "Elena", "Farid", "Giulia", "Hannah", "Ivan", "Jürgen", "Kenji", "Lena",
    "Marek", "Nadia",
];
const LAST_NAMES: &[&str] = &[
    "Andersen",
    "Becker",
    "Costa",
    "Dubois",
    "Eriksson",
    "Fischer",
    "García",
    "Hoffmann",
    "Ivanova",
    "Jansen",
    "Kowalski",
    "Larsen",
    "Martin",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Uribe",
    "Vogel",
    "Walsh",
    "Xu",
    "Young",
    "Zimmermann",
    "Novák",
    "Silva",
    "Moreau",
    "Weber",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example.de",
    "corp.example",
    "partner.example",
    "university.example.edu",
    "agency.example.fr",
];
/// Automated senders: each sends a steady share of the mail.
const ROBOTS: &[(&str, &str)] = &[
    ("Example Shop", "orders@shop.example"),
    ("The Weekly Letter", "news@letters.example.com"),
    ("CI Server", "ci@build.corp.example"),
    ("Bank Alerts", "no-reply@bank.example"),
    ("Calendar", "calendar-notification@corp.example"),
];

/// The address's local part: ASCII letters of the name, lower case.
fn ascii_fold(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'é' | 'è' | 'ë' => Some('e'),
            'ü' => Some('u'),
            'ö' => Some('o'),
            'á' => Some('a'),
            'í' => Some('i'),
            c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A From field value: a person drawn with a skew (a few people write much of the mail),
/// or one of the automated senders; quoted names, raw UTF-8 names and bare addresses.
fn sender(rng: &mut StdRng) -> String {
    if rng.random_ratio(3, 20) {
        let (name, address) = ROBOTS[rng.random_range(0..ROBOTS.len())];
        return format!("\"{name}\" <{address}>");
    }
    let people = FIRST_NAMES.len() * LAST_NAMES.len();
    let u: f64 = rng.random();
    let k = ((people as f64) * u * u * u) as usize % people;
    let (first, last) = (FIRST_NAMES[k % FIRST_NAMES.len()], LAST_NAMES[k / FIRST_NAMES.len()]);
    let domain = DOMAINS[k % DOMAINS.len()];
    let address = format!("{}.{}@{domain}", ascii_fold(first), ascii_fold(last));
    match rng.random_range(0..20) {
        0..=14 => format!("\"{first} {last}\" <{address}>"),
        15..=17 => format!("{first} {last} <{address}>"),
        _ => address,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One message of the mailbox, as both servers get it.
struct Message {
    raw: Vec<u8>,
    flags: Vec<String>,
    keywords: Vec<String>,
    internal_date: i64,
}

/// The generated mailbox, in UID order (UID = index + 1), and what it holds.
struct Mailbox {
    messages: Vec<Message>,
    /// Messages containing each marker word.
    hits: Vec<(String, usize)>,
}

impl Mailbox {
    fn generate(seed: u64, count: usize) -> Mailbox {
        let spec = CorpusSpec {
            seed,
            messages: count,
            folders: 1,
            large_messages: 0,
            message_size: MESSAGE_SIZE,
            large_size: (0, 0),
        };
        let folder = migration_corpus::mailbox(&spec).into_iter().next().expect("INBOX");
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0057_4542_4d41_494c);
        let mut hits: Vec<(String, usize)> = MARKERS.iter().map(|(w, _)| (w.to_string(), 0)).collect();
        let messages = folder
            .messages
            .into_iter()
            .map(|m| {
                let mut raw = m.raw;
                // The From field of the top-level header (never folded by the generator).
                let header_end = find(&raw, b"\r\n\r\n").unwrap_or(raw.len());
                let from_at = if raw.starts_with(b"From: ") {
                    Some(0)
                } else {
                    find(&raw[..header_end], b"\r\nFrom: ").map(|i| i + 2)
                };
                if let Some(at) = from_at
                    && let Some(len) = find(&raw[at..], b"\r\n")
                {
                    let field = format!("From: {}", sender(&mut rng));
                    raw.splice(at..at + len, field.into_bytes());
                }
                // Marker words at the start of the first text part (after the first
                // header block ending in a 7bit or 8bit transfer encoding).
                let words: Vec<usize> = (0..MARKERS.len())
                    .filter(|&i| rng.random_ratio(1, MARKERS[i].1))
                    .collect();
                if !words.is_empty()
                    && let Some(at) = find(&raw, b"bit\r\n\r\n")
                {
                    let line = format!(
                        "About the {} plan, see below.\r\n",
                        words.iter().map(|&i| MARKERS[i].0).collect::<Vec<_>>().join(" and ")
                    );
                    let at = at + b"bit\r\n\r\n".len();
                    raw.splice(at..at, line.into_bytes());
                    for i in words {
                        hits[i].1 += 1;
                    }
                }
                Message {
                    raw,
                    flags: m.flags,
                    keywords: m.keywords,
                    internal_date: m.internal_date,
                }
            })
            .collect();
        Mailbox { messages, hits }
    }
}

// --- The cache: Tern's data folder and the Maildir, made once ------------------------

/// What a finished cache holds besides the two stores; written last, so a folder
/// without it is an interrupted generation.
struct Manifest {
    messages: usize,
    bytes: u64,
    html: usize,
    attachments: usize,
    senders: usize,
    hits: Vec<(String, usize)>,
    /// UIDs of the messages without \Seen.
    unseen: HashSet<u32>,
}

impl Manifest {
    fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut t = format!(
            "version {CACHE_VERSION}\nmessages {}\nbytes {}\nhtml {}\nattachments {}\nsenders {}\n",
            self.messages, self.bytes, self.html, self.attachments, self.senders
        );
        for (w, n) in &self.hits {
            t.push_str(&format!("hits {w} {n}\n"));
        }
        let mut unseen: Vec<u32> = self.unseen.iter().copied().collect();
        unseen.sort_unstable();
        t.push_str("unseen");
        for u in unseen {
            t.push_str(&format!(" {u}"));
        }
        t.push('\n');
        std::fs::write(path, t)
    }

    fn read(path: &Path) -> Option<Manifest> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut m = Manifest {
            messages: 0,
            bytes: 0,
            html: 0,
            attachments: 0,
            senders: 0,
            hits: Vec::new(),
            unseen: HashSet::new(),
        };
        let mut version = 0;
        for line in text.lines() {
            let mut f = line.split(' ');
            match f.next()? {
                "version" => version = f.next()?.parse().ok()?,
                "messages" => m.messages = f.next()?.parse().ok()?,
                "bytes" => m.bytes = f.next()?.parse().ok()?,
                "html" => m.html = f.next()?.parse().ok()?,
                "attachments" => m.attachments = f.next()?.parse().ok()?,
                "senders" => m.senders = f.next()?.parse().ok()?,
                "hits" => m.hits.push((f.next()?.to_string(), f.next()?.parse().ok()?)),
                "unseen" => m.unseen = f.filter_map(|u| u.parse().ok()).collect(),
                _ => {}
            }
        }
        (version == CACHE_VERSION).then_some(m)
    }
}

/// The Tern data folder's tern.toml: plain HTTP on loopback (logins over plain HTTP are
/// accepted from loopback).
fn write_tern_config(dir: &Path, port: u16) -> Result<(), String> {
    let config = format!(
        "# Written by tern-bench webmail: plain HTTP (webmail) on loopback only.\n\
         hostname = \"{HOSTNAME}\"\n\n\
         [tls]\ncertificate = \"tls/cert.pem\"\nprivate_key = \"tls/key.pem\"\n\n\
         [listen]\nhttp = [\"127.0.0.1:{port}\"]\n\n\
         [auth]\nallow_plaintext = \"loopback\"\n\n\
         [limits]\nmax_connections = 1000\nmax_connections_per_ip = 100\n\n\
         [log]\nlevel = \"info\"\n\n\
         [shutdown]\ngrace_seconds = 2\n"
    );
    let path = dir.join("tern.toml");
    std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Generates the mailbox and writes both stores into `dir` (which must not exist yet).
fn build_cache(binary: &Path, dir: &Path, args: &Args, rt: &tokio::runtime::Runtime) -> Result<Manifest, String> {
    let io = |what: &str, e: std::io::Error| format!("cannot {what}: {e}");
    let t = Instant::now();
    let mailbox = Mailbox::generate(args.seed, args.messages);
    let bytes: u64 = mailbox.messages.iter().map(|m| m.raw.len() as u64).sum();
    println!(
        "Generated {} messages, {:.1} MB, in {:.1} s (seed {}).",
        thousands(mailbox.messages.len() as f64),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        args.seed
    );

    // Dovecot's Maildir: INBOX is `cur/` at the root, keywords named in dovecot-keywords
    // (letters a, b, … by their number), the INTERNALDATE as the file's time.
    let t = Instant::now();
    let maildir = dir.join("maildir");
    let cur = maildir.join("cur");
    std::fs::create_dir_all(&cur).map_err(|e| io("create the maildir", e))?;
    let mut keywords: Vec<String> = Vec::new();
    for m in &mailbox.messages {
        for k in &m.keywords {
            if !keywords.contains(k) {
                keywords.push(k.clone());
            }
        }
    }
    assert!(keywords.len() <= 26, "too many keywords for maildir letters");
    let keyword_file: String = keywords.iter().enumerate().map(|(i, k)| format!("{i} {k}\n")).collect();
    std::fs::write(maildir.join("dovecot-keywords"), keyword_file).map_err(|e| io("write dovecot-keywords", e))?;
    for (i, m) in mailbox.messages.iter().enumerate() {
        // Maildir info letters in ASCII order (system flags, then keywords).
        let mut info: Vec<char> = Vec::new();
        for f in &m.flags {
            info.push(match f.as_str() {
                "\\Draft" => 'D',
                "\\Flagged" => 'F',
                "\\Answered" => 'R',
                "\\Seen" => 'S',
                "\\Deleted" => 'T',
                other => panic!("unexpected flag {other}"),
            });
        }
        for k in &m.keywords {
            let n = keywords.iter().position(|x| x == k).expect("a named keyword");
            info.push((b'a' + n as u8) as char);
        }
        info.sort_unstable();
        let info: String = info.into_iter().collect();
        let len = m.raw.len();
        // Dovecot gives new files UIDs in the order of the time and microseconds parts.
        let name = format!("{}.M{i:06}P1.bench,S={len},W={len}:2,{info}", m.internal_date);
        let path = cur.join(name);
        std::fs::write(&path, &m.raw).map_err(|e| io("write a maildir file", e))?;
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .map_err(|e| io("open a maildir file", e))?;
        file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(m.internal_date.max(0) as u64))
            .map_err(|e| io("set a maildir file's time", e))?;
    }
    println!("Maildir written in {:.1} s.", t.elapsed().as_secs_f64());

    // Tern's data folder: `tern init` and `tern user add`, then the store directly.
    let t = Instant::now();
    let data = dir.join("tern");
    let domain = USER.rsplit_once('@').map(|(_, d)| d).unwrap_or("bench.test");
    tern_process::run_cli(
        binary,
        &data,
        &["init", "--domain", domain, "--hostname", HOSTNAME],
        None,
    )?;
    let tls = data.join("tls");
    std::fs::create_dir_all(&tls).map_err(|e| io("create tls/", e))?;
    tern_net::tls::generate_self_signed(HOSTNAME, &tls.join("cert.pem"), &tls.join("key.pem"))
        .map_err(|e| format!("cannot make a certificate for Tern: {e}"))?;
    write_tern_config(&data, 0)?;
    tern_process::run_cli(
        binary,
        &data,
        &["user", "add", USER, "--password-stdin"],
        Some(PASSWORD),
    )?;
    let store = EmbeddedStore::open(&data.join("store")).map_err(|e| format!("cannot open Tern's store: {e}"))?;
    let mut html = 0;
    let mut attachments = 0;
    let mut senders = HashSet::new();
    let mut unseen = HashSet::new();
    rt.block_on(async {
        let account = store.account(USER).await.map_err(|e| e.to_string())?;
        let inbox = store.mailbox(account.id, "INBOX").await.map_err(|e| e.to_string())?;
        let mut uid = 0u32;
        for (n, chunk) in mailbox.messages.chunks(APPEND_BATCH).enumerate() {
            let batch: Vec<NewMessage> = chunk
                .iter()
                .map(|m| {
                    uid += 1;
                    html += find(&m.raw, b"text/html").is_some() as usize;
                    attachments += find(&m.raw, b"Content-Disposition: attachment").is_some() as usize;
                    if let Some(at) = find(&m.raw, b"\r\nFrom: ")
                        && let Some(len) = find(&m.raw[at + 2..], b"\r\n")
                    {
                        senders.insert(m.raw[at + 2..at + 2 + len].to_vec());
                    }
                    if !m.flags.iter().any(|f| f == "\\Seen") {
                        unseen.insert(uid);
                    }
                    let mut new = NewMessage::new(m.raw.clone());
                    new.flags = Flags::from_names(m.flags.iter().chain(&m.keywords).map(String::as_str));
                    new.internal_date = Some(m.internal_date);
                    new
                })
                .collect();
            let appended = store.append(inbox.id, batch).await.map_err(|e| e.to_string())?;
            let last = appended.last().map(|a| a.uid).unwrap_or(0);
            if last != uid {
                return Err(format!("Tern gave UID {last} to message {uid}"));
            }
            if (n + 1) % 40 == 0 {
                println!(
                    "  Tern store: {} messages appended ({:.0} s)",
                    thousands(uid as f64),
                    t.elapsed().as_secs_f64()
                );
            }
        }
        // Finishes the writes and the full-text index.
        store.close().await.map_err(|e| e.to_string())
    })?;
    println!(
        "Tern store filled in {:.1} s (Store::append, {APPEND_BATCH} per call, full-text index included).",
        t.elapsed().as_secs_f64()
    );
    let manifest = Manifest {
        messages: mailbox.messages.len(),
        bytes,
        html,
        attachments,
        senders: senders.len(),
        hits: mailbox.hits,
        unseen,
    };
    manifest
        .write(&dir.join("manifest"))
        .map_err(|e| io("write the manifest", e))?;
    Ok(manifest)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            bytes += copy_tree(&e.path(), &target)?;
        } else {
            bytes += std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(bytes)
}

// --- Tern as a process on the cached data -------------------------------------------

/// `tern serve` on a copy of the cached data folder; stopped (by its PID) on drop.
struct TernServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl TernServer {
    fn start(binary: &Path, template: &Path) -> Result<TernServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("tern-bench-webmail-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder for Tern: {e}"))?;
        let t = Instant::now();
        let bytes = copy_tree(template, dir.path()).map_err(|e| format!("cannot copy Tern's data folder: {e}"))?;
        println!(
            "Tern's data folder copied to {} ({:.0} MB, {:.1} s).",
            dir.path().display(),
            bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        let mut server = TernServer {
            child: None,
            dir,
            port: 0,
        };
        let mut last = String::new();
        for _ in 0..5 {
            server.port = tern_process::free_port()?;
            write_tern_config(server.dir.path(), server.port)?;
            match server.try_start(binary)? {
                Ok(()) => return Ok(server),
                Err(port_taken) => last = port_taken,
            }
        }
        Err(format!("Tern could not bind a free port: {last}"))
    }

    fn try_start(&mut self, binary: &Path) -> Result<Result<(), String>, String> {
        let log = |name: &str| {
            std::fs::File::create(self.dir.path().join(name)).map_err(|e| format!("cannot create Tern's {name}: {e}"))
        };
        let child = Command::new(binary)
            .arg("--data")
            .arg(self.dir.path())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let out = self.log();
                let why = format!("`tern serve` exited at start ({status}): {}", out.trim());
                return if out.contains("in use") { Ok(Err(why)) } else { Err(why) };
            }
            if Instant::now() > deadline {
                return Err(format!("Tern's webmail did not answer within 120 s: {}", self.log()));
            }
            if let Ok(mut http) = Http::connect(self.port)
                && let Ok(r) = http.send("GET", "/login", &[], b"")
                && r.status == 200
            {
                return Ok(Ok(()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("Tern runs")
    }

    fn log(&self) -> String {
        tern_process::read_logs(self.dir.path())
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            tern_process::stop_child(child);
        }
    }
}

impl Drop for TernServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- A minimal HTTP/1.1 client ------------------------------------------------------

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One kept-alive HTTP/1.1 connection (RFC 9112): a request at a time, the response
/// read whole (Content-Length or chunked).
struct Http {
    port: u16,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    cookie: String,
    /// The server said `Connection: close`, or closed: connect again before the next.
    closed: bool,
    reconnects: usize,
}

impl Http {
    fn connect(port: u16) -> std::io::Result<Http> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Http {
            port,
            reader: BufReader::with_capacity(256 * 1024, stream.try_clone()?),
            writer: stream,
            cookie: String::new(),
            closed: false,
            reconnects: 0,
        })
    }

    fn reconnect(&mut self) -> std::io::Result<()> {
        let mut fresh = Http::connect(self.port)?;
        fresh.cookie = std::mem::take(&mut self.cookie);
        fresh.reconnects = self.reconnects + 1;
        *self = fresh;
        Ok(())
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Reply> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/html\r\n",
            self.port
        );
        if !self.cookie.is_empty() {
            req.push_str(&format!("Cookie: tern_session={}\r\n", self.cookie));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        self.writer.write_all(&out)?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection");
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            self.closed = true;
            return Err(eof());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("not an HTTP status line: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(eof());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        if self.reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                self.reader.read_exact(&mut body[at..])?;
                line.clear();
                self.reader.read_line(&mut line)?;
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            body.resize(len, 0);
            self.reader.read_exact(&mut body)?;
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            self.reader.read_to_end(&mut body)?;
            self.closed = true;
        }
        if get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.closed = true;
        }
        Ok(Reply { status, headers, body })
    }

    /// A timed GET: seconds from writing the request to having read the whole
    /// response. A connection the server closed since the last request is opened again
    /// first, outside the timing.
    fn timed_get(&mut self, path: &str) -> (f64, Reply) {
        for attempt in 0..2 {
            if self.closed {
                self.reconnect().expect("connect to Tern again");
            }
            let t = Instant::now();
            match self.send("GET", path, &[], b"") {
                Ok(r) => return (t.elapsed().as_secs_f64(), r),
                Err(e) if attempt == 0 && self.closed => {
                    eprintln!("(Tern closed the connection before GET {path}: {e}; connecting again)");
                }
                Err(e) => panic!("GET {path}: {e}"),
            }
        }
        unreachable!()
    }

    /// POST /login; keeps the session cookie.
    fn login(&mut self, user: &str, password: &str) -> Result<(), String> {
        let body = format!("user={}&password={}", form_encode(user), form_encode(password));
        let origin = format!("http://127.0.0.1:{}", self.port);
        let r = self
            .send(
                "POST",
                "/login",
                &[
                    ("Origin", &origin),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
            .map_err(|e| format!("POST /login: {e}"))?;
        let cookie = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| v.strip_prefix("tern_session="))
            .map(|v| v.split(';').next().unwrap_or("").to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("POST /login answered {} without a session: {}", r.status, r.text()))?;
        self.cookie = cookie;
        Ok(())
    }
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The UIDs of a list page's rows (`data-uid="N"`), in order.
fn page_uids(html: &str) -> Vec<u32> {
    html.split("data-uid=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

/// The list's length from the page's range ("1–50 of 1,234").
fn page_total(html: &str) -> Option<usize> {
    let range = html.split("id=\"range\">").nth(1)?.split('<').next()?;
    range.rsplit(" of ").next()?.replace(',', "").trim().parse().ok()
}

// --- Measures -------------------------------------------------------------------------

/// The samples of one operation on one server, in seconds.
#[derive(Default, Clone)]
struct Samples {
    secs: Vec<f64>,
    /// Server CPU seconds over all samples.
    cpu: f64,
    /// Response bytes over all samples.
    bytes: u64,
}

impl Samples {
    fn sorted(&self) -> Vec<f64> {
        let mut s = self.secs.clone();
        s.sort_by(f64::total_cmp);
        s
    }
    /// Nearest-rank percentile, in milliseconds.
    fn pct(&self, p: f64) -> f64 {
        let s = self.sorted();
        if s.is_empty() {
            return f64::NAN;
        }
        let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
        s[rank - 1] * 1000.0
    }
    fn p50(&self) -> f64 {
        self.pct(0.50)
    }
    fn p95(&self) -> f64 {
        self.pct(0.95)
    }
    fn max(&self) -> f64 {
        self.pct(1.0)
    }
    fn cpu_ms(&self) -> f64 {
        self.cpu * 1000.0 / self.secs.len().max(1) as f64
    }
    fn mean_bytes(&self) -> f64 {
        self.bytes as f64 / self.secs.len().max(1) as f64
    }
}

/// One row of the report.
struct Row {
    label: String,
    tern: Samples,
    dovecot: Option<Samples>,
    /// The Dovecot commands of the row.
    peer_does: String,
    target_ms: Option<f64>,
    note: String,
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else if x >= 1000.0 {
        format!("{:.2} s", x / 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0} ms")
    } else {
        format!("{x:.1} ms")
    }
}

/// Times `n` GETs of `path` after `warmup` untimed ones; `check` sees every reply.
fn tern_op(
    http: &mut Http,
    pid: u32,
    warmup: usize,
    n: usize,
    path: impl Fn(usize) -> String,
    check: impl Fn(&Reply),
) -> Samples {
    for i in 0..warmup {
        let (_, r) = http.timed_get(&path(n + i));
        check(&r);
    }
    let mut s = Samples::default();
    let cpu0 = tree_cpu_seconds(pid);
    for i in 0..n {
        let (secs, r) = http.timed_get(&path(i));
        check(&r);
        s.secs.push(secs);
        s.bytes += r.body.len() as u64;
    }
    s.cpu = tree_cpu_seconds(pid) - cpu0;
    s
}

fn fail(what: &str, e: client::Error) -> ! {
    panic!("Dovecot: {what}: {e}")
}

/// The numbers of an untagged `* SORT …` or `* SEARCH …` response.
fn numbers_of(responses: &[Vec<u8>], name: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for r in responses {
        if let Some(rest) = r.strip_prefix(b"* ").and_then(|r| r.strip_prefix(name)) {
            out.extend(
                rest.split(|b| b.is_ascii_whitespace())
                    .filter_map(|w| std::str::from_utf8(w).ok()?.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// A webmail's list page on IMAP: the sorted UIDs, then the page's rows. Returns the
/// seconds, the page's UIDs and the bytes received.
async fn dovecot_list(c: &mut Client, criteria: &str, offset: usize) -> (f64, Vec<u32>, u64) {
    let t = Instant::now();
    let sort = c
        .collect(&format!("UID SORT ({criteria}) UTF-8 ALL"))
        .await
        .unwrap_or_else(|e| fail("UID SORT", e));
    let sorted = numbers_of(&sort, b"SORT");
    let page: Vec<u32> = sorted.iter().skip(offset).take(PAGE).copied().collect();
    let mut bytes: u64 = sort.iter().map(|r| r.len() as u64).sum();
    let mut rows = 0;
    c.run(
        &format!("UID FETCH {} (ENVELOPE FLAGS RFC822.SIZE)", uid_set(&page)),
        |r| {
            rows += 1;
            bytes += r.len() as u64;
        },
    )
    .await
    .unwrap_or_else(|e| fail("UID FETCH (ENVELOPE FLAGS RFC822.SIZE)", e));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        rows,
        page.len(),
        "Dovecot sent {rows} rows for a page of {}",
        page.len()
    );
    assert!(
        sorted.len() >= offset + PAGE,
        "Dovecot sorted only {} UIDs",
        sorted.len()
    );
    (secs, page, bytes)
}

async fn dovecot_body(c: &mut Client, uid: u32) -> (f64, Vec<u8>) {
    let t = Instant::now();
    let mut body = None;
    c.run(&format!("UID FETCH {uid} BODY.PEEK[]"), |r| {
        if let Some(b) = client::first_literal(r) {
            body = Some(b.to_vec());
        }
    })
    .await
    .unwrap_or_else(|e| fail("UID FETCH BODY.PEEK[]", e));
    (
        t.elapsed().as_secs_f64(),
        body.unwrap_or_else(|| panic!("Dovecot sent no body for UID {uid}")),
    )
}

/// Returns the seconds, the hits and the bytes received.
async fn dovecot_search(c: &mut Client, word: &str) -> (f64, usize, u64) {
    let t = Instant::now();
    let r = c
        .collect(&format!("UID SEARCH TEXT {word}"))
        .await
        .unwrap_or_else(|e| fail("UID SEARCH TEXT", e));
    let secs = t.elapsed().as_secs_f64();
    (
        secs,
        numbers_of(&r, b"SEARCH").len(),
        r.iter().map(|l| l.len() as u64).sum(),
    )
}

fn master_pid(dovecot: &Dovecot) -> u32 {
    std::fs::read_to_string(dovecot.dir().join("run").join("master.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("Dovecot's master.pid")
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Puts the cached Maildir's files into the fixture user's (just created) Maildir as
/// hard links, and its keyword names as a copy owned by the mail user.
fn link_maildir(cache: &Path, target: &Path) -> Result<usize, String> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(target.join("cur")).map_err(|e| format!("Dovecot's maildir: {e}"))?;
    let keywords = target.join("dovecot-keywords");
    std::fs::copy(cache.join("dovecot-keywords"), &keywords).map_err(|e| format!("dovecot-keywords: {e}"))?;
    std::os::unix::fs::chown(&keywords, Some(owner.uid()), Some(owner.gid()))
        .map_err(|e| format!("chown dovecot-keywords: {e}"))?;
    let mut n = 0;
    for e in std::fs::read_dir(cache.join("cur")).map_err(|e| format!("the cached maildir: {e}"))? {
        let e = e.map_err(|e| format!("the cached maildir: {e}"))?;
        let to = target.join("cur").join(e.file_name());
        if std::fs::hard_link(e.path(), &to).is_err() {
            std::fs::copy(e.path(), &to).map_err(|e| format!("cannot link or copy into the maildir: {e}"))?;
        }
        n += 1;
    }
    Ok(n)
}

fn main() {
    let args = Args::parse();
    let tern_binary = TernProcess::find_binary(args.tern.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    tern_bench::print_header(
        &format!(
            "Webmail benchmark: Tern vs a webmail on IMAP against Dovecot {}",
            command_output("dovecot", &["--version"])
        ),
        "webmail",
        "Tern's data folder copy and Dovecot's fixture",
        Some(&tern_binary),
    );
    println!("- load average at start: {}", load_average());
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // The mailbox, generated once.
    let cache_root = args.cache.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("bench-webmail")
    });
    let cache = cache_root.join(format!("v{CACHE_VERSION}-seed{}-n{}", args.seed, args.messages));
    let manifest = match Manifest::read(&cache.join("manifest")) {
        Some(m) => {
            println!("Mailbox: reusing {}.", cache.display());
            m
        }
        None => {
            if cache.exists() {
                std::fs::remove_dir_all(&cache).unwrap_or_else(|e| panic!("cannot clear {}: {e}", cache.display()));
            }
            println!("Mailbox: generating it into {} (kept for later runs).", cache.display());
            build_cache(&tern_binary, &cache, &args, &rt).unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let n = manifest.messages;
    let hits_of = |w: &str| manifest.hits.iter().find(|(x, _)| x == w).map_or(0, |(_, h)| *h);
    println!(
        "Mailbox: {} messages in INBOX, {:.1} MB ({:.1} KB on average), {} with an HTML part, {} with attachments, {} different From fields, {} unread; marker words: {}.",
        thousands(n as f64),
        manifest.bytes as f64 / 1e6,
        manifest.bytes as f64 / n as f64 / 1e3,
        thousands(manifest.html as f64),
        thousands(manifest.attachments as f64),
        thousands(manifest.senders as f64),
        thousands(manifest.unseen.len() as f64),
        manifest
            .hits
            .iter()
            .map(|(w, h)| format!(
                "\"{w}\" in {} ({:.1}%)",
                thousands(*h as f64),
                100.0 * *h as f64 / n as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The UIDs to open: distinct, spread over the folder at random; the warm-up's first.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let picked: Vec<u32> = rand::seq::index::sample(&mut rng, n, (args.samples + args.warmup).min(n))
        .into_iter()
        .map(|i| i as u32 + 1)
        .collect();
    let (warm_uids, open_uids) = picked.split_at(args.warmup.min(picked.len()));
    let open_uids = open_uids.to_vec();
    let warm_uids = warm_uids.to_vec();

    // Tern.
    let mut tern = TernServer::start(&tern_binary, &cache.join("tern")).unwrap_or_else(|e| panic!("{e}"));
    let pid = tern.pid();
    println!("Tern pid {pid}, webmail on http://127.0.0.1:{}.", tern.port);
    let mut http = Http::connect(tern.port).expect("connect to Tern");
    let t = Instant::now();
    http.login(USER, PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "Logged in to Tern's webmail ({:.0} ms, Argon2id).",
        t.elapsed().as_secs_f64() * 1000.0
    );

    // Dovecot with the same messages.
    let mut dovecot = None;
    let mut peer: Option<Client> = None;
    let mut peer_display_sort = "DISPLAYFROM";
    if !args.no_dovecot {
        let d = Dovecot::start_with_users(&[(USER, PASSWORD)]).unwrap_or_else(|e| panic!("{e}"));
        {
            let mut imap = tern_bench::Imap::login(d.imap_port(), USER, PASSWORD);
            imap.command("SELECT INBOX"); // creates the maildir
            imap.command("LOGOUT");
        }
        let t = Instant::now();
        let linked = link_maildir(&cache.join("maildir"), &d.maildir(USER)).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "Dovecot: {linked} maildir files linked in {:.1} s.",
            t.elapsed().as_secs_f64()
        );
        let mut c = rt
            .block_on(Client::login(d.imap_port(), USER, PASSWORD))
            .unwrap_or_else(|e| fail("LOGIN", e));
        let caps = rt
            .block_on(c.collect("CAPABILITY"))
            .unwrap_or_else(|e| fail("CAPABILITY", e));
        if !caps.iter().any(|r| find(r, b"SORT=DISPLAY").is_some()) {
            peer_display_sort = "FROM";
        }
        let t = Instant::now();
        let mut exists = 0;
        rt.block_on(c.run("SELECT INBOX", |r| {
            if r.ends_with(b" EXISTS\r\n") {
                exists = client::number_after(r, b"*").unwrap_or(0);
            }
        }))
        .unwrap_or_else(|e| fail("SELECT INBOX", e));
        println!(
            "Dovecot: first SELECT (indexing the maildir) {:.1} s, master pid {}, port {}.",
            t.elapsed().as_secs_f64(),
            master_pid(&d),
            d.imap_port()
        );
        // The first sorts fill Dovecot's cache (dates, From and Subject of every message).
        for criteria in ["REVERSE ARRIVAL", peer_display_sort, "SUBJECT"] {
            let t = Instant::now();
            rt.block_on(dovecot_list(&mut c, criteria, 0));
            println!(
                "Dovecot: first `UID SORT ({criteria})` (filling its cache) {:.1} s.",
                t.elapsed().as_secs_f64()
            );
        }
        assert_eq!(exists as usize, n, "Dovecot's INBOX holds {exists} messages");
        peer = Some(c);
        dovecot = Some(d);
    }
    let peer_pid = dovecot.as_ref().map(master_pid);

    // Checks before timing: same bytes under the same UIDs, same first page.
    if let Some(c) = peer.as_mut() {
        let mut same = 0;
        for &uid in open_uids.iter().take(CONTENT_CHECKS) {
            let (_, theirs) = rt.block_on(dovecot_body(c, uid));
            let (_, ours) = http.timed_get(&format!("/mail/raw?folder=INBOX&uid={uid}"));
            assert_eq!(ours.status, 200, "GET /mail/raw uid {uid}: {}", ours.status);
            if hash_bytes(&ours.body) == hash_bytes(&theirs) {
                same += 1;
            } else {
                panic!("UID {uid}: Tern and Dovecot hold different messages");
            }
        }
        println!("Content check: {same} random UIDs hold byte-identical messages on both servers.");
    }

    let list_path = |extra: &str| format!("/mail?folder=INBOX{extra}");
    let expect_page = |want_total: usize, want_rows: usize| {
        move |r: &Reply| {
            assert_eq!(r.status, 200, "list page answered {}", r.status);
            let html = r.text();
            let rows = page_uids(&html).len();
            assert_eq!(rows, want_rows, "a list page with {rows} rows");
            assert_eq!(page_total(&html), Some(want_total), "the list's total");
        }
    };
    // Page 1,000, or the middle page of a smaller mailbox.
    let deep_page = DEEP_PAGE.min(n / PAGE / 2);
    let deep_label = format!(
        "list, page {} (rows {}–{}): `…&page={deep_page}`",
        thousands(deep_page as f64),
        thousands((deep_page * PAGE + 1) as f64),
        thousands((deep_page * PAGE + PAGE) as f64)
    );
    // First pages of both, compared.
    let mut agreement: Vec<String> = Vec::new();
    let lists: [(&str, String, &str, usize); 4] = [
        (
            "(a) list, first page: `GET /mail?folder=INBOX`",
            list_path(""),
            "REVERSE ARRIVAL",
            0,
        ),
        (
            &deep_label,
            list_path(&format!("&page={deep_page}")),
            "REVERSE ARRIVAL",
            deep_page * PAGE,
        ),
        (
            "list sorted by sender: `…&sort=from`",
            list_path("&sort=from"),
            peer_display_sort,
            0,
        ),
        (
            "list sorted by subject: `…&sort=subject`",
            list_path("&sort=subject"),
            "SUBJECT",
            0,
        ),
    ];
    for (label, path, criteria, offset) in &lists {
        let (_, r) = http.timed_get(path);
        expect_page(n, PAGE)(&r);
        let ours = page_uids(&r.text());
        if let Some(c) = peer.as_mut() {
            let (_, theirs, _) = rt.block_on(dovecot_list(c, criteria, *offset));
            let same_order = ours == theirs;
            let common = ours.iter().filter(|u| theirs.contains(u)).count();
            // Messages with the same arrival time (the corpus's exact copies) are
            // ordered by sequence number by Dovecot (RFC 5256 §3), newest UID first by
            // Tern: one adjacent pair swapped.
            let swaps = (0..ours.len().min(theirs.len()).saturating_sub(1))
                .filter(|&i| ours[i] != theirs[i] && ours[i] == theirs[i + 1] && ours[i + 1] == theirs[i])
                .count();
            let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            let short = label.split(':').next().unwrap_or(label);
            agreement.push(format!(
                "{short}: {}",
                if same_order {
                    "the same 50 UIDs in the same order".to_string()
                } else if common == PAGE && differ == 2 * swaps {
                    format!("the same 50 UIDs in the same order but for {swaps} adjacent pair(s) swapped (equal arrival times)")
                } else {
                    format!("{common} of 50 UIDs in common, {differ} in other places")
                }
            ));
        }
    }
    for line in &agreement {
        println!("Page check: {line}.");
    }
    println!();

    let mut rows: Vec<Row> = Vec::new();

    // (a) and the other list views.
    for (i, (label, path, criteria, offset)) in lists.iter().enumerate() {
        println!("Timing: {label} …");
        let tern_s = tern_op(
            &mut http,
            pid,
            args.warmup,
            args.samples,
            |_| path.clone(),
            expect_page(n, PAGE),
        );
        let peer_s = peer.as_mut().map(|c| {
            for _ in 0..args.warmup {
                rt.block_on(dovecot_list(c, criteria, *offset));
            }
            let mut s = Samples::default();
            let cpu0 = tree_cpu_seconds(peer_pid.unwrap_or(0));
            for _ in 0..args.samples {
                let (secs, _, bytes) = rt.block_on(dovecot_list(c, criteria, *offset));
                s.secs.push(secs);
                s.bytes += bytes;
            }
            s.cpu = tree_cpu_seconds(peer_pid.unwrap_or(0)) - cpu0;
            s
        });
        rows.push(Row {
            label: label.to_string(),
            tern: tern_s,
            dovecot: peer_s,
            peer_does: format!(
                "`UID SORT ({criteria}) UTF-8 ALL` + `UID FETCH` of {} (ENVELOPE FLAGS RFC822.SIZE)",
                if *offset == 0 {
                    "the first 50".to_string()
                } else {
                    format!("entries {}–{}", offset + 1, offset + PAGE)
                }
            ),
            target_ms: Some(TARGET_LIST_MS),
            note: if i == 0 {
                String::new()
            } else {
                "list target applied".into()
            },
        });
    }

    // (b) Opening messages: the page, then the body document it frames.
    println!("Timing: (b) opening {} random messages …", open_uids.len());
    for &uid in &warm_uids {
        let (_, r) = http.timed_get(&format!("/mail/read?folder=INBOX&uid={uid}"));
        assert_eq!(r.status, 200);
        let (_, r) = http.timed_get(&format!("/mail/body?folder=INBOX&uid={uid}"));
        assert_eq!(r.status, 200);
    }
    let mut read = Samples::default();
    let mut body = Samples::default();
    let mut open = Samples::default();
    let mut open_unseen = Samples::default();
    let mut open_seen = Samples::default();
    let cpu0 = tree_cpu_seconds(pid);
    for &uid in &open_uids {
        let (a, r) = http.timed_get(&format!("/mail/read?folder=INBOX&uid={uid}"));
        assert_eq!(r.status, 200, "GET /mail/read uid {uid}: {}", r.text());
        assert!(
            r.text().contains("id=\"message-body\""),
            "the message page of UID {uid} frames no body"
        );
        read.secs.push(a);
        read.bytes += r.body.len() as u64;
        let read_bytes = r.body.len();
        let (b, r) = http.timed_get(&format!("/mail/body?folder=INBOX&uid={uid}"));
        assert_eq!(r.status, 200, "GET /mail/body uid {uid}: {}", r.text());
        assert!(
            r.header("content-security-policy")
                .is_some_and(|p| p.contains("sandbox")),
            "the body document of UID {uid} is not sandboxed"
        );
        body.secs.push(b);
        body.bytes += r.body.len() as u64;
        open.secs.push(a + b);
        open.bytes += (r.body.len() + read_bytes) as u64;
        if manifest.unseen.contains(&uid) {
            open_unseen.secs.push(a + b);
        } else {
            open_seen.secs.push(a + b);
        }
    }
    let cpu = tree_cpu_seconds(pid) - cpu0;
    open.cpu = cpu;
    let peer_open = peer.as_mut().map(|c| {
        for &uid in &warm_uids {
            rt.block_on(dovecot_body(c, uid));
        }
        let mut s = Samples::default();
        let cpu0 = tree_cpu_seconds(peer_pid.unwrap_or(0));
        for &uid in &open_uids {
            let (secs, b) = rt.block_on(dovecot_body(c, uid));
            s.secs.push(secs);
            s.bytes += b.len() as u64;
        }
        s.cpu = tree_cpu_seconds(peer_pid.unwrap_or(0)) - cpu0;
        s
    });
    rows.push(Row {
        label: "(b) open: `GET /mail/read?folder=INBOX&uid=N` (the message page)".into(),
        tern: read,
        dovecot: None,
        peer_does: String::new(),
        target_ms: None,
        note: String::new(),
    });
    rows.push(Row {
        label: "(b) open: `GET /mail/body?folder=INBOX&uid=N` (the sanitised body it frames)".into(),
        tern: body,
        dovecot: None,
        peer_does: String::new(),
        target_ms: None,
        note: String::new(),
    });
    rows.push(Row {
        label: "(b) open a message: read + body, same N".into(),
        tern: open,
        dovecot: peer_open,
        peer_does: "`UID FETCH N BODY.PEEK[]`".into(),
        target_ms: Some(TARGET_OPEN_MS),
        note: format!("{} random UIDs; unread ones are marked \\Seen", open_uids.len()),
    });

    // (c) Search.
    for (word, one_in) in MARKERS {
        let expected = hits_of(word);
        println!("Timing: (c) search \"{word}\" …");
        let path = list_path(&format!("&q={word}"));
        let tern_s = tern_op(
            &mut http,
            pid,
            args.warmup.min(10),
            args.samples,
            |_| path.clone(),
            expect_page(expected, expected.min(PAGE)),
        );
        let peer_s = peer.as_mut().map(|c| {
            let (_, found, _) = rt.block_on(dovecot_search(c, word));
            assert_eq!(
                found, expected,
                "Dovecot found {found} messages with \"{word}\", the corpus has {expected}"
            );
            let mut s = Samples::default();
            let cpu0 = tree_cpu_seconds(peer_pid.unwrap_or(0));
            for _ in 0..args.peer_search_samples {
                let (secs, found, bytes) = rt.block_on(dovecot_search(c, word));
                assert_eq!(found, expected);
                s.secs.push(secs);
                s.bytes += bytes;
            }
            s.cpu = tree_cpu_seconds(peer_pid.unwrap_or(0)) - cpu0;
            s
        });
        rows.push(Row {
            label: format!(
                "(c) search, a word in ~{}% ({} hits): `GET /mail?folder=INBOX&q={word}`",
                100 / one_in,
                thousands(expected as f64)
            ),
            tern: tern_s,
            dovecot: peer_s,
            peer_does: format!("`UID SEARCH TEXT {word}` (no FTS: reads every message)"),
            target_ms: Some(TARGET_SEARCH_MS),
            note: if args.no_dovecot {
                String::new()
            } else {
                format!("Dovecot: {} runs", args.peer_search_samples)
            },
        });
    }

    // The report.
    println!();
    println!(
        "## Results: server time per request, p50 / p95 / max (Tern {} samples per operation; ratio = Dovecot time / Tern time, above 1 Tern is faster)",
        args.samples
    );
    println!();
    println!(
        "| operation | Tern p50 | Tern p95 | Tern max | target p95 | | Dovecot p50 | Dovecot p95 | Dovecot max | ratio p50 | ratio p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut missed = Vec::new();
    for r in &rows {
        let (verdict, target) = match r.target_ms {
            Some(t) => {
                let pass = r.tern.p95() <= t;
                if !pass {
                    missed.push(r.label.clone());
                }
                (if pass { "**PASS**" } else { "**MISS**" }, format!("≤ {t:.0} ms"))
            }
            None => ("", String::new()),
        };
        let (dp50, dp95, dmax, r50, r95) = match &r.dovecot {
            Some(d) => (
                ms(d.p50()),
                ms(d.p95()),
                ms(d.max()),
                format!("**{:.2}**", d.p50() / r.tern.p50()),
                format!("{:.2}", d.p95() / r.tern.p95()),
            ),
            None => Default::default(),
        };
        println!(
            "| {} | {} | {} | {} | {target} | {verdict} | {dp50} | {dp95} | {dmax} | {r50} | {r95} |",
            r.label,
            ms(r.tern.p50()),
            ms(r.tern.p95()),
            ms(r.tern.max()),
        );
    }
    println!();
    println!("### What each Dovecot figure is, CPU and bytes");
    println!();
    println!(
        "Server CPU: user + system seconds of Tern's process, or of Dovecot's master and all its children, per request (for opening: per read + body pair). Bytes: mean response size."
    );
    println!();
    println!("| operation | Dovecot commands | Tern CPU | Tern bytes | Dovecot CPU | Dovecot bytes | notes |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        if r.tern.cpu == 0.0 && r.dovecot.is_none() {
            continue;
        }
        let short = r.label.split(':').next().unwrap_or(&r.label);
        let (dcpu, dbytes) = match &r.dovecot {
            Some(d) => (format!("{:.1} ms", d.cpu_ms()), thousands(d.mean_bytes())),
            None => Default::default(),
        };
        println!(
            "| {short} | {} | {:.1} ms | {} | {dcpu} | {dbytes} | {} |",
            r.peer_does,
            r.tern.cpu_ms(),
            thousands(r.tern.mean_bytes()),
            r.note
        );
    }
    println!();
    println!("### Opening a message (read + body), by whether it was unread");
    println!();
    println!("| messages | count | p50 | p95 | max |");
    println!("|---|---|---|---|---|");
    for (label, s) in [
        ("unread (marked \\Seen: a durable write)", &open_unseen),
        ("already read", &open_seen),
    ] {
        println!(
            "| {label} | {} | {} | {} | {} |",
            s.secs.len(),
            ms(s.p50()),
            ms(s.p95()),
            ms(s.max())
        );
    }
    if !agreement.is_empty() {
        println!();
        for line in &agreement {
            println!("- Page check, {line}.");
        }
    }
    println!();
    if missed.is_empty() {
        println!("Targets: all met.");
    } else {
        println!("Targets missed: {}.", missed.join("; "));
    }
    if http.reconnects > 0 {
        println!(
            "Tern closed the kept-alive connection {} times (reconnected outside the timing).",
            http.reconnects
        );
    }
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
    if let Some(c) = peer.take() {
        rt.block_on(c.logout());
    }
    tern.stop();
    if let Some(mut d) = dovecot {
        let _ = d.stop();
    }
}
