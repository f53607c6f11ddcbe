//! `tern migrate` as an administrator uses it, against a real Dovecot: the whole
//! journey from adding a source to `finish`, a worker killed with SIGKILL mid-pass,
//! passes run by `tern serve`, and Tern as the old provider of another Tern.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tern_testkit::dovecot::Dovecot;
use tern_testkit::migration_corpus::{self, CorpusSpec};

const USER: &str = "alice@example.test";

fn dovecot(test: &str) -> Option<Dovecot> {
    if Dovecot::skip_if_missing(test) {
        return None;
    }
    Some(
        Dovecot::builder()
            .users(&[("alice", "old-secret")])
            .special_use(true)
            .start()
            .unwrap(),
    )
}

/// A data folder with example.test and alice, and Dovecot as the source "old".
fn prepare(data: &Path, dovecot: &Dovecot) {
    ok(&tern(
        data,
        &["init", "--domain", "example.test", "--hostname", "mail.example.test"],
    ));
    ok(&tern_stdin(
        data,
        &["user", "add", USER, "--password-stdin"],
        "tern-password\n",
    ));
    add_source(data, dovecot.imap_port());
}

/// alice's mailbox at the source "old", with her password there.
fn add_alice(data: &Path) {
    add_migration(data, USER, "alice", "old-secret");
}

fn status(data: &Path) -> serde_json::Value {
    let out = ok(&tern(data, &["migrate", "status", "--json"]));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

fn verify_json(data: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&tern(data, &["migrate", "verify", USER, "--json"]))).unwrap()
}

/// Every folder: nothing missing, no duplicates, flags and dates equal.
fn assert_identical(verdict: &serde_json::Value) {
    for f in verdict["folders"].as_array().unwrap() {
        for key in ["missing", "flags_differ", "dates_differ", "extra_in_tern"] {
            assert_eq!(f[key], 0, "{key} in {f}");
        }
    }
}

#[test]
fn from_source_to_finish_with_a_csv() {
    let Some(dovecot) = dovecot("cli_journey") else { return };
    let corpus = migration_corpus::mailbox(&CorpusSpec::small());
    dovecot.fill("alice", &corpus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    prepare(data, &dovecot);

    // Bad input: one line, exit 1, nothing stored.
    let err = one_line_error(&tern(
        data,
        &[
            "migrate",
            "source",
            "add",
            "far",
            "--host",
            "mail.old.example",
            "--tls",
            "none",
        ],
    ));
    assert!(err.contains("clear text"), "{err}");
    let err = one_line_error(&tern(data, &["migrate", "add", "--source", "old", "--user", USER]));
    assert!(err.contains("--password-stdin"), "{err}");
    let err = one_line_error(&tern(data, &["migrate", "schedule", "--window", "Someday 9-5"]));
    assert!(err.contains("Mon-Fri"), "{err}");

    let csv = data.join("users.csv");
    std::fs::write(
        &csv,
        "EmailAddress,UserName,Password\r\nalice@example.test,alice,old-secret\r\n",
    )
    .unwrap();
    let out = ok(&tern(
        data,
        &["migrate", "add", "--source", "old", "--csv", csv.to_str().unwrap()],
    ));
    assert!(out.contains("Added 1 mailbox"), "{out}");
    // The password is stored sealed: not in the database file in clear.
    let db = std::fs::read(data.join("store/tern.db")).unwrap();
    assert!(!db.windows(10).any(|w| w == b"old-secret"));

    ok(&tern(data, &["migrate", "start", "--pass", "full"]));
    assert_eq!(status(data)["phase"], "queued");
    let table = ok(&tern(data, &["migrate", "run"]));
    assert!(table.contains(USER) && table.contains("passed"), "{table}");
    let s = status(data);
    let total: u64 = corpus.iter().map(|f| f.messages.len() as u64).sum();
    assert_eq!(s["progress"]["pass_copied"], total, "{s}");
    assert_identical(&verify_json(data));
    let text = ok(&tern(data, &["migrate", "verify", USER]));
    assert!(text.contains("Identical"), "{text}");

    let report = ok(&tern(data, &["migrate", "report", USER, "--deliver"]));
    assert!(report.contains("Käse & Brot") && report.contains("Sent"), "{report}");

    ok(&tern(data, &["migrate", "finish", USER]));
    ok(&tern(data, &["migrate", "run"]));
    let s = status(data);
    assert_eq!(s["phase"], "done", "{s}");
    assert_eq!(s["has_credentials"], false);
    // After finish, verify cannot log in any more, and says why.
    let err = one_line_error(&tern(data, &["migrate", "verify", USER]));
    assert!(err.contains("credentials"), "{err}");
    let err = one_line_error(&tern(data, &["migrate", "start", "--user", USER]));
    assert!(err.contains("finished"), "{err}");
    // Added again (new credentials), it can run a pass, which finds nothing new.
    add_alice(data);
    ok(&tern(data, &["migrate", "start", "--user", USER, "--pass", "delta"]));
    ok(&tern(data, &["migrate", "run"]));
    let s = status(data);
    assert_eq!(
        (s["phase"].as_str(), s["progress"]["pass_copied"].as_u64()),
        (Some("passed"), Some(0)),
        "{s}"
    );
}

#[test]
fn a_worker_killed_mid_pass_resumes_to_an_exact_copy() {
    let Some(dovecot) = dovecot("cli_kill") else { return };
    let corpus = migration_corpus::mailbox(&CorpusSpec {
        messages: 300,
        large_messages: 1,
        ..CorpusSpec::small()
    });
    let total: u64 = corpus.iter().map(|f| f.messages.len() as u64).sum();
    dovecot.fill("alice", &corpus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    prepare(data, &dovecot);
    add_alice(data);
    // Slow enough to be caught in the middle.
    ok(&tern(data, &["migrate", "schedule", "--mailbox-max-rate", "200KB/s"]));
    ok(&tern(data, &["migrate", "start", "--pass", "full"]));

    for round in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("--data")
            .arg(data)
            .args(["migrate", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let before = status(data)["progress"]["copied"].as_u64().unwrap_or(0);
        let started = Instant::now();
        loop {
            let copied = status(data)["progress"]["copied"].as_u64().unwrap_or(0);
            if copied > before || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100 + round * 150));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let s = status(data);
    let copied = s["progress"]["copied"].as_u64().unwrap();
    assert!(
        copied > 0 && copied < total,
        "the kills came too late to test anything: {s}"
    );

    ok(&tern(data, &["migrate", "schedule", "--mailbox-max-rate", "none"]));
    ok(&tern(data, &["migrate", "run"]));
    assert_eq!(status(data)["phase"], "passed");
    assert_identical(&verify_json(data));
}

#[test]
fn tern_serve_runs_the_passes_and_a_tern_can_migrate_from_another_tern() {
    let Some(dovecot) = dovecot("cli_serve") else { return };
    let corpus = migration_corpus::mailbox(&CorpusSpec {
        messages: 60,
        ..CorpusSpec::small()
    });
    dovecot.fill("alice", &corpus).unwrap();

    // Tern A runs; the CLI asks, A's worker copies from Dovecot.
    let dir_a = tempfile::tempdir().unwrap();
    let a = dir_a.path().join("tern-data");
    let offset = free_offset();
    let mut server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("--data")
            .arg(&a)
            .args(["quickstart", "--port-offset", &offset.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let imap_port = 1143 + offset;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", imap_port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "quickstart did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&tern_stdin(
        &a,
        &["user", "add", USER, "--password-stdin"],
        "tern-password\n",
    ));
    add_source(&a, dovecot.imap_port());
    add_alice(&a);
    let out = ok(&tern(&a, &["migrate", "start", "--pass", "full", "--wait"]));
    assert!(out.contains("passed"), "{out}");
    assert_identical(&verify_json(&a));

    // Tern B migrates alice from A's IMAP server.
    let dir_b = tempfile::tempdir().unwrap();
    let b = dir_b.path();
    ok(&tern(
        b,
        &["init", "--domain", "example.test", "--hostname", "mail.example.test"],
    ));
    ok(&tern_stdin(
        b,
        &["user", "add", USER, "--password-stdin"],
        "b-password\n",
    ));
    add_source(b, imap_port);
    ok(&tern_stdin(
        b,
        &["migrate", "add", "--source", "old", "--user", USER, "--password-stdin"],
        "tern-password\n",
    ));
    ok(&tern(b, &["migrate", "start", "--pass", "full"]));
    ok(&tern(b, &["migrate", "run"]));
    assert_eq!(status(b)["phase"], "passed", "{}", status(b));
    assert_identical(&verify_json(b));
    // And B holds exactly what Dovecot had.
    let from_dovecot = status(&a)["progress"]["copied"].clone();
    assert_eq!(status(b)["progress"]["copied"], from_dovecot);

    // SIGTERM: the server stops its worker and exits cleanly.
    Command::new("kill").arg(server.0.id().to_string()).status().unwrap();
    assert!(server.0.wait().unwrap().success());
}

/// A server that must not outlive a failed test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
