//! Store benchmark (Foundation issue), Tern's embedded store beside Dovecot 2.3 (maildir,
//! its default fsync behaviour) on the same workload, in one run:
//!
//! 1. durable appends of 10 KB messages with 1 and with 8 concurrent writers
//!    (Tern: `Store::append`, acknowledged after fsync; Dovecot: IMAP APPEND over
//!    loopback, one connection per writer, acknowledged after its fsync);
//! 2. opening a 100,000-message mailbox and listing its UIDs and flags
//!    (Tern: open the store, find INBOX, `Store::messages`; Dovecot: log in, SELECT,
//!    `UID FETCH 1:* (FLAGS)`);
//! 3. bytes of overhead per message on disk for that mailbox.
//!
//! Run: `cargo run --release -p tern-bench --bin store -- [--appends N] [--mailbox N]`
//! (defaults 4000 and 100000). It needs Dovecot (scripts/test.sh installs it).

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use tern_bench::{Imap, disk_usage};
use tern_store::{EmbeddedStore, Flags, NewAccount, NewMessage, Store};
use tern_testkit::corpus;
use tern_testkit::dovecot::Dovecot;

#[derive(Parser)]
struct Args {
    /// Messages appended per writer configuration.
    #[arg(long, default_value_t = 4000)]
    appends: usize,
    /// Messages in the mailbox that is opened and listed.
    #[arg(long, default_value_t = 100_000)]
    mailbox: usize,
}

const USER: &str = "bench";
const PASSWORD: &str = "bench-secret";

async fn tern_store(dir: &std::path::Path) -> (Arc<EmbeddedStore>, tern_store::MailboxId) {
    let store = Arc::new(EmbeddedStore::open(&dir.join("store")).unwrap());
    store.create_domain("bench.test").await.unwrap();
    let a = store
        .create_account(NewAccount {
            address: "bench@bench.test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap();
    (store, inbox.id)
}

async fn tern_appends(corpus: Arc<Vec<Vec<u8>>>, writers: usize) -> f64 {
    let dir = tempfile::tempdir_in(".").unwrap();
    let (store, inbox) = tern_store(dir.path()).await;
    let t = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (s, c) = (store.clone(), corpus.clone());
            tokio::spawn(async move {
                for m in c.iter().skip(w).step_by(writers) {
                    s.append(inbox, vec![NewMessage::new(m.clone())]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = corpus.len() as f64 / t.elapsed().as_secs_f64();
    store.close().await.unwrap();
    rate
}

fn dovecot_appends(corpus: Arc<Vec<Vec<u8>>>, writers: usize) -> f64 {
    let dovecot = Dovecot::start_with_users(&[(USER, PASSWORD)]).expect("start Dovecot");
    let port = dovecot.imap_port();
    let t = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let c = corpus.clone();
            std::thread::spawn(move || {
                let mut imap = Imap::login(port, USER, PASSWORD);
                for m in c.iter().skip(w).step_by(writers) {
                    imap.append("INBOX", m);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    corpus.len() as f64 / t.elapsed().as_secs_f64()
}

fn small_messages(n: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(|i| {
        format!("From: a@bench.test\r\nTo: b@bench.test\r\nSubject: message {i}\r\nMessage-ID: <{i}@bench.test>\r\n\r\n{}\r\n", "x".repeat(1900))
            .into_bytes()
    })
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# Store benchmark: Tern embedded store vs Dovecot {} (maildir)",
        dovecot_version()
    );
    println!(
        "# machine: {} cores, {}",
        num_cpus(),
        first_line("/proc/cpuinfo", "model name")
    );
    println!();

    let corpus = Arc::new(corpus::messages(42, args.appends, 10_000));
    println!("## Durable appends of {} messages of 10 KB", args.appends);
    println!(
        "{:<10} {:>14} {:>14} {:>14}",
        "writers", "Tern msg/s", "Dovecot msg/s", "Tern/Dovecot"
    );
    for writers in [1, 8] {
        let tern = rt.block_on(tern_appends(corpus.clone(), writers));
        let peer = dovecot_appends(corpus.clone(), writers);
        println!("{writers:<10} {tern:>14.0} {peer:>14.0} {:>13.2}x", tern / peer);
    }
    println!();

    println!(
        "## Open a {}-message mailbox and list UIDs and flags (messages of 2 KB)",
        args.mailbox
    );
    // Tern: fill with batched multi-appends, close, then time a cold open + listing.
    let dir = tempfile::tempdir_in(".").unwrap();
    let payload: u64;
    {
        let (store, inbox) = rt.block_on(tern_store(dir.path()));
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for m in small_messages(args.mailbox) {
            bytes += m.len() as u64;
            let mut msg = NewMessage::new(m);
            msg.flags = Flags::from_names(["\\Seen"]);
            batch.push(msg);
            if batch.len() == 1000 {
                rt.block_on(store.append(inbox, std::mem::take(&mut batch))).unwrap();
            }
        }
        if !batch.is_empty() {
            rt.block_on(store.append(inbox, batch)).unwrap();
        }
        rt.block_on(store.close()).unwrap();
        payload = bytes;
    }
    // A running server has its store open; opening the store is timed on its own, then
    // the mailbox open (find it, list every UID with flags) is what compares with
    // Dovecot's SELECT + UID FETCH 1:* (FLAGS) (which also includes its login).
    let t = Instant::now();
    let store = EmbeddedStore::open(&dir.path().join("store")).unwrap();
    let store_open = t.elapsed().as_secs_f64();
    let mut listed = 0;
    let tern_open = median_of_3(|| {
        let t = Instant::now();
        listed = rt.block_on(async {
            let account = store.account("bench@bench.test").await.unwrap();
            let inbox = store.mailbox(account.id, "INBOX").await.unwrap();
            store.messages(inbox.id).await.unwrap().len()
        });
        t.elapsed().as_secs_f64()
    });
    rt.block_on(store.close()).unwrap();
    assert_eq!(listed, args.mailbox);
    println!("(Tern opening its store, before the mailbox: {store_open:.3}s)");
    let tern_bytes = disk_usage(&dir.path().join("store"));
    let part = |f: &str| disk_usage(&dir.path().join("store").join(f)) as f64 / args.mailbox as f64;
    println!(
        "(Tern's bytes per message by file: tern.db {:.0}, index.db {:.0}, large-body files {:.0})",
        part("tern.db"),
        part("index.db"),
        part("blobs")
    );

    // Dovecot: APPEND fsyncs every message (about 8 ms each here), so filling 100,000
    // that way would take a quarter of an hour. The messages are written straight into
    // the maildir as Dovecot names them (flag S: seen), as a delivery agent would; a
    // first session makes Dovecot index them (timed on its own), a second one is the
    // open that is compared.
    let dovecot = Dovecot::start_with_users(&[(USER, PASSWORD)]).expect("start Dovecot");
    let mut imap = Imap::login(dovecot.imap_port(), USER, PASSWORD);
    imap.command("SELECT INBOX"); // creates the maildir
    imap.command("LOGOUT");
    let cur = dovecot.maildir(USER).join("cur");
    let stamp = 1_700_000_000u64;
    for (i, m) in small_messages(args.mailbox).enumerate() {
        let name = format!("{}.M{i}P1.bench,S={}:2,S", stamp + i as u64, m.len());
        std::fs::write(cur.join(name), &m).unwrap();
    }
    let t = Instant::now();
    let mut imap = Imap::login(dovecot.imap_port(), USER, PASSWORD);
    imap.command("SELECT INBOX");
    imap.command("UID FETCH 1:* (FLAGS)");
    imap.command("LOGOUT");
    let peer_first = t.elapsed().as_secs_f64();
    let mut fetched = 0;
    let peer_open = median_of_3(|| {
        let t = Instant::now();
        let mut imap = Imap::login(dovecot.imap_port(), USER, PASSWORD);
        imap.command("SELECT INBOX");
        fetched = imap.command("UID FETCH 1:* (FLAGS)").len();
        let elapsed = t.elapsed().as_secs_f64();
        imap.command("LOGOUT");
        elapsed
    });
    assert!(fetched >= args.mailbox, "Dovecot listed {fetched}");
    println!("(Dovecot's first open, building its index of the maildir: {peer_first:.3}s)");
    let peer_bytes = disk_usage(&dovecot.maildir(USER));
    println!(
        "{:<10} {:>14} {:>14} {:>14}",
        "median of 3", "Tern", "Dovecot", "Dovecot/Tern"
    );
    println!(
        "{:<10} {:>13.3}s {:>13.3}s {:>13.2}x",
        "open+list",
        tern_open,
        peer_open,
        peer_open / tern_open
    );
    println!();
    println!("## Bytes on disk per message beyond the message itself (2 KB messages)");
    let per = |total: u64| (total as f64 - payload as f64) / args.mailbox as f64;
    println!(
        "{:<10} {:>14.0} {:>14.0} {:>13.2}x",
        "overhead",
        per(tern_bytes),
        per(peer_bytes),
        per(peer_bytes) / per(tern_bytes)
    );
}

/// The median of three timed runs, so one hiccup of either server does not decide.
fn median_of_3(mut run: impl FnMut() -> f64) -> f64 {
    let mut t = [run(), run(), run()];
    t.sort_by(f64::total_cmp);
    t[1]
}

fn dovecot_version() -> String {
    std::process::Command::new("dovecot")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn first_line(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}
