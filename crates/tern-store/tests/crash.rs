//! Crash safety of the embedded backend: a child process appends as fast as it can and
//! reports each acknowledged append; the parent SIGKILLs it at a random moment, reopens
//! the store and proves that every acknowledged message is present and byte-exact, that
//! nothing is half-visible (a two-message append is all there or not at all, every
//! listed message reads back whole), that the counters match, and that SQLite's
//! integrity check passes. Twenty rounds on the same store; bodies both small (rows)
//! and large (blob files).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use tern_store::{EmbeddedStore, NewAccount, NewMessage, Store};

const ROUNDS: usize = 20;
const CHILD_ENV: &str = "TERN_CRASH_CHILD_DIR";
const WRITERS: usize = 4;

/// The message a writer appends as part `part` (0 or 1) of its append number `seq` in
/// `round`: deterministic, so the parent knows what every byte should be.
fn message(round: usize, writer: usize, seq: usize, part: usize) -> Vec<u8> {
    let id = format!("{round}-{writer}-{seq}-{part}");
    // Every seventh append is large enough to be stored as a blob file, not a row.
    let lines = if seq % 7 == 3 { 8000 } else { 40 + seq % 50 };
    let filler = format!("{id} lorem ipsum dolor sit amet\r\n").repeat(lines);
    format!("Subject: crash {id}\r\nMessage-ID: <{id}@crash.test>\r\n\r\n{filler}").into_bytes()
}

fn subject_id(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let line = text.lines().next()?;
    line.strip_prefix("Subject: crash ").map(str::to_string)
}

#[test]
#[ignore = "the child process of crash_safety; not a test on its own"]
fn crash_child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let round: usize = std::env::var("TERN_CRASH_ROUND").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = EmbeddedStore::open(std::path::Path::new(&dir)).unwrap();
        let acct = store.account("crash@example.test").await.unwrap();
        let inbox = store.mailbox(acct.id, "INBOX").await.unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, out) = (store.clone(), out.clone());
                tokio::spawn(async move {
                    for seq in 0.. {
                        let pair = vec![
                            NewMessage::new(message(round, w, seq, 0)),
                            NewMessage::new(message(round, w, seq, 1)),
                        ];
                        let a = store.append(inbox.id, pair).await.unwrap();
                        let mut o = out.lock().unwrap();
                        writeln!(
                            o,
                            "ACK {} {round}-{w}-{seq}-0 {} {round}-{w}-{seq}-1",
                            a[0].uid, a[1].uid
                        )
                        .unwrap();
                        o.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn crash_safety() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(&store_dir).unwrap();
        store.create_domain("example.test").await.unwrap();
        store
            .create_account(NewAccount {
                address: "crash@example.test".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        store.close().await.unwrap();
    });
    let mut acked: HashMap<String, u32> = HashMap::new();
    let mut rng = rand::rng();
    let mut killed_with_acks = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_appender",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &store_dir)
            .env("TERN_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Collect acknowledgements on a thread while the child runs.
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() == 5 && parts[0] == "ACK" {
                    acks.push((parts[2].to_string(), parts[1].parse::<u32>().unwrap()));
                    acks.push((parts[4].to_string(), parts[3].parse::<u32>().unwrap()));
                }
            }
            acks
        });
        // Kill at a random moment after the child got going.
        let started = Instant::now();
        let delay = Duration::from_millis(rng.random_range(150..700));
        while started.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        if !acks.is_empty() {
            killed_with_acks += 1;
        }
        acked.extend(acks);
        verify(&rt, &store_dir, &acked, round);
    }
    assert!(
        killed_with_acks >= ROUNDS / 2,
        "the child acknowledged appends in most rounds ({killed_with_acks})"
    );
    assert!(
        acked.len() > 100,
        "enough appends were acknowledged to mean something ({})",
        acked.len()
    );
}

fn verify(rt: &tokio::runtime::Runtime, dir: &std::path::Path, acked: &HashMap<String, u32>, round: usize) {
    rt.block_on(async {
        let store = EmbeddedStore::open(dir).unwrap();
        assert_eq!(
            store.integrity_check().await.unwrap(),
            ["ok"],
            "round {round}: SQLite integrity check"
        );
        let acct = store.account("crash@example.test").await.unwrap();
        let inbox = store.mailbox(acct.id, "INBOX").await.unwrap();
        let list = store.messages(inbox.id).await.unwrap();
        assert_eq!(inbox.messages as usize, list.len(), "round {round}: count matches");
        assert_eq!(
            inbox.size,
            list.iter().map(|m| m.size).sum::<u64>(),
            "round {round}: size matches"
        );
        let mut present: HashMap<String, u32> = HashMap::new();
        for m in &list {
            let raw = store.read_message(inbox.id, m.uid).await.unwrap();
            let id = subject_id(&raw).unwrap_or_else(|| panic!("round {round}: UID {} is not a whole message", m.uid));
            let fields: Vec<usize> = id.split('-').map(|x| x.parse().unwrap()).collect();
            assert_eq!(
                raw,
                message(fields[0], fields[1], fields[2], fields[3]),
                "round {round}: UID {} byte-exact",
                m.uid
            );
            assert_eq!(raw.len() as u64, m.size);
            present.insert(id, m.uid);
        }
        for (id, uid) in acked {
            assert_eq!(
                present.get(id),
                Some(uid),
                "round {round}: acknowledged message {id} (UID {uid}) is present"
            );
        }
        // Two-message appends are atomic: both parts or neither.
        let pairs: HashSet<String> = present.keys().map(|k| k[..k.len() - 2].to_string()).collect();
        for p in pairs {
            assert!(
                present.contains_key(&format!("{p}-0")) && present.contains_key(&format!("{p}-1")),
                "round {round}: append {p} is half visible"
            );
        }
        store.close().await.unwrap();
    });
}
