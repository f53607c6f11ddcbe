//! SMTP through the binary: `tern serve` receiving, submitting and delivering; the
//! queue surviving kill -9; `tern queue` and `tern domain dkim|receiving`.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tern::config::Config;
use tern_testkit::dns::TestDns;
use tern_testkit::smtp_peer::{Behaviour, ScriptedSmtp};

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "alice-password";

/// A data folder with a quickstart-style config on free ports, delivering to
/// `remote_port` and resolving through `dns`, with example.test and alice.
fn data_folder(dir: &Path, offset: u16, remote_port: u16, dns: &TestDns) -> std::path::PathBuf {
    let data = dir.join("tern-data");
    std::fs::create_dir_all(&data).unwrap();
    let mut config = Config::quickstart("mail.example.test", offset).unwrap();
    config.queue.remote_port = remote_port;
    config.queue.first_retry_seconds = 1;
    config.dns.nameservers = vec![dns.addr()];
    std::fs::write(data.join("tern.toml"), config.to_toml_string()).unwrap();
    tern::tls::generate_self_signed(
        &config.hostname,
        &config.tls.certificate_path(&data),
        &config.tls.private_key_path(&data),
    )
    .unwrap();
    ok(&tern(&data, &["domain", "add", "example.test"]));
    ok(&tern_stdin(
        &data,
        &["user", "add", ALICE, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    ));
    data
}

fn serve(data: &Path, smtp_port: u16) -> KillOnDrop {
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--data")
        .arg(data)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "tern serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    KillOnDrop(child)
}

/// Alice submits `count` messages to x@remote.test over submission with STARTTLS.
fn submit(port: u16, count: usize) {
    let script = r#"
import smtplib, ssl, sys, json
port, count = int(sys.argv[1]), int(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", port)
s.starttls(context=ssl._create_unverified_context())
s.login("alice@example.test", "alice-password")
for i in range(count):
    msg = "From: <alice@example.test>\r\nTo: <x@remote.test>\r\nSubject: message %d\r\n\r\nbody %d\r\n" % (i, i)
    s.sendmail("alice@example.test", ["x@remote.test"], msg.encode())
s.quit()
print(json.dumps({"sent": count}))
"#;
    let out = tern_testkit::python::run_json(script, &[&port.to_string(), &count.to_string()]);
    assert_eq!(out["sent"], count);
}

fn queue_json(data: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&tern(data, &["queue", "list", "--json"]))).unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Tern data folder whose remote.test MX is a scripted server that defers
/// everything (until a test changes its behaviour).
struct Setup {
    _dns: TestDns,
    peer: ScriptedSmtp,
    _dir: tempfile::TempDir,
    offset: u16,
    data: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dns = TestDns::start().unwrap();
        dns.set_mx("remote.test", &[(10, "mx.remote.test")]);
        dns.set_a("mx.remote.test", &[Ipv4Addr::LOCALHOST]);
        let peer = ScriptedSmtp::start(Behaviour::TempfailAll).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let offset = free_offset();
        let data = data_folder(dir.path(), offset, peer.port(), &dns);
        Setup {
            _dns: dns,
            peer,
            _dir: dir,
            offset,
            data,
        }
    }
}

#[test]
fn queued_mail_survives_kill_9_and_is_delivered_exactly_once() {
    let Setup {
        _dns,
        peer,
        _dir,
        offset,
        data,
    } = Setup::new();
    let mut server = serve(&data, 2525 + offset);
    submit(1587 + offset, 5);
    // Every message has been tried (and deferred) at least once.
    wait_until("five deferred attempts", Duration::from_secs(30), || {
        let q = queue_json(&data);
        q.as_array().unwrap().len() == 5
            && q.as_array()
                .unwrap()
                .iter()
                .all(|e| e["envelope"]["attempts"].as_u64() >= Some(1))
    });
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    assert_eq!(queue_json(&data).as_array().unwrap().len(), 5, "the queue survived");
    assert!(peer.transactions().is_empty());

    // The remote recovers; a new server delivers everything, once.
    peer.set_behaviour(Behaviour::Accept);
    let _server = serve(&data, 2525 + offset);
    ok(&tern(&data, &["queue", "retry", "--all"]));
    wait_until("the queue to empty", Duration::from_secs(60), || {
        queue_json(&data).as_array().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut subjects: Vec<String> = peer
        .transactions()
        .iter()
        .map(|t| {
            let text = String::from_utf8_lossy(&t.data).to_string();
            text.lines().find(|l| l.starts_with("Subject: ")).unwrap().to_string()
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        (0..5).map(|i| format!("Subject: message {i}")).collect::<Vec<_>>(),
        "each message delivered exactly once"
    );
    // Signed with both of example.test's keys, made at `tern domain add`.
    let first = String::from_utf8_lossy(&peer.transactions()[0].data).to_string();
    assert_eq!(first.matches("DKIM-Signature:").count(), 2, "{first}");
}

#[test]
fn queue_and_dkim_commands() {
    let Setup {
        _dns,
        peer: _peer,
        _dir,
        offset,
        data,
    } = Setup::new();

    // DKIM: two keys, their records, rotation, deletion rules.
    let records = ok(&tern(&data, &["domain", "dkim", "example.test"]));
    assert!(
        records.contains("._domainkey.example.test. 3600 IN TXT ( \"v=DKIM1; k=rsa; p=MII"),
        "{records}"
    );
    assert!(records.contains("\"v=DKIM1; k=ed25519; p="), "{records}");
    let selector = records
        .lines()
        .find(|l| l.contains("k=rsa"))
        .and_then(|l| l.split("._domainkey").next())
        .unwrap()
        .to_string();
    let err = one_line_error(&tern(&data, &["domain", "dkim", "example.test", "--delete", &selector]));
    assert!(err.contains("still signing mail"), "{err}");
    let rotated = ok(&tern(&data, &["domain", "dkim", "example.test", "--rotate"]));
    assert_eq!(rotated.matches("IN TXT").count(), 4, "{rotated}");
    assert_eq!(rotated.matches("retired").count(), 2, "{rotated}");
    ok(&tern(&data, &["domain", "dkim", "example.test", "--delete", &selector]));
    assert_eq!(
        ok(&tern(&data, &["domain", "dkim", "example.test"]))
            .matches("IN TXT")
            .count(),
        3
    );
    let err = one_line_error(&tern(&data, &["domain", "dkim", "nowhere.test"]));
    assert!(err.contains("does not exist"), "{err}");

    // Receiving: off and on.
    ok(&tern(&data, &["domain", "receiving", "example.test", "no"]));
    assert!(ok(&tern(&data, &["domain", "list"])).contains("not yet"));
    ok(&tern(&data, &["domain", "receiving", "example.test", "yes"]));

    // The queue: a deferred message, shown, retried, deleted.
    let mut server = serve(&data, 2525 + offset);
    submit(1587 + offset, 1);
    wait_until("a deferred attempt", Duration::from_secs(30), || {
        queue_json(&data)
            .as_array()
            .unwrap()
            .first()
            .is_some_and(|e| e["envelope"]["attempts"].as_u64() >= Some(1))
    });
    Command::new("kill").arg(server.0.id().to_string()).status().unwrap();
    assert!(server.0.wait().unwrap().success(), "SIGTERM stops the server cleanly");
    let list = ok(&tern(&data, &["queue", "list"]));
    assert!(
        list.contains("alice@example.test") && list.contains("x@remote.test"),
        "{list}"
    );
    let id = queue_json(&data)[0]["id"].as_i64().unwrap().to_string();
    let show = ok(&tern(&data, &["queue", "show", &id]));
    assert!(show.contains("pending") && show.contains("451 4.3.0"), "{show}");
    assert!(show.contains("mx.remote.test"), "{show}");
    ok(&tern(&data, &["queue", "retry", &id]));
    ok(&tern(&data, &["queue", "delete", &id]));
    assert!(ok(&tern(&data, &["queue", "list"])).contains("The queue is empty."));
    let err = one_line_error(&tern(&data, &["queue", "show", &id]));
    assert!(err.contains("no queued message"), "{err}");
}

/// A server that must not outlive a failed test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
