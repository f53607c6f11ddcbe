//! fetchmail, the classic POP3 client, against Tern: "keep" polls that fetch only what
//! is new (by UIDL), then a poll that deletes what it fetched.

mod common;

use std::path::Path;
use std::process::Command;

use common::{PASSWORD, Server, USER};

/// One fetchmail poll in the foreground; each message is written to a file of its own
/// by a tiny MDA. Returns fetchmail's exit code and the messages it delivered.
fn poll(dir: &Path, port: u16, options: &str) -> (i32, Vec<Vec<u8>>, String) {
    use std::os::unix::fs::PermissionsExt;
    let delivered = dir.join("delivered");
    std::fs::create_dir_all(&delivered).expect("delivered folder");
    let mda = dir.join("deliver.sh");
    std::fs::write(
        &mda,
        format!(
            "#!/bin/sh\nexec cat > \"$(mktemp '{}/m.XXXXXX')\"\n",
            delivered.display()
        ),
    )
    .expect("mda");
    std::fs::set_permissions(&mda, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll 127.0.0.1 service {port} proto POP3 uidl\n  user \"{USER}\" there with password \"{PASSWORD}\" is \"alice\" here\n  {options} sslproto ''\n  mda \"{}\"\n",
            mda.display()
        ),
    )
    .expect("rc");
    // fetchmail refuses a run control file others can read.
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = Command::new("timeout")
        .arg("30")
        .arg("fetchmail")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("FETCHMAILHOME", dir)
        .args(["-f"])
        .arg(&rc)
        .args(["--nodetach", "--invisible", "--verbose"])
        .output()
        .expect("fetchmail must be installed (scripts/test.sh installs it)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = Vec::new();
    for entry in std::fs::read_dir(&delivered).expect("delivered") {
        let path = entry.expect("entry").path();
        got.push(std::fs::read(&path).expect("message"));
        std::fs::remove_file(&path).expect("take");
    }
    got.sort();
    (out.status.code().unwrap_or(-1), got, log)
}

/// [`poll`] off the async workers, so the server keeps serving while fetchmail runs.
async fn poll_off_thread(dir: &Path, port: u16, options: &'static str) -> (i32, Vec<Vec<u8>>, String) {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || poll(&dir, port, options))
        .await
        .expect("poll")
}

fn lf(raw: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(raw).replace("\r\n", "\n").into_bytes()
}

fn message(n: u32) -> Vec<u8> {
    format!("From: bob@example.org\r\nMessage-ID: <{n}@example.org>\r\nSubject: number {n}\r\n\r\nbody {n}\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn fetchmail_keeps_then_fetches_new_then_deletes() {
    let server = Server::start().await;
    let port = server.pop3.port();
    server.deliver_raw(&[&message(1), &message(2)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();

    let (code, got, log) = poll_off_thread(&d, port, "keep").await;
    assert_eq!(code, 0, "{log}");
    let mut want = vec![lf(&message(1)), lf(&message(2))];
    want.sort();
    assert_eq!(got, want, "{log}");
    assert_eq!(server.inbox_uids().await.len(), 2, "keep leaves mail on the server");

    // A new message: a keep poll fetches only it (UIDLs are stable).
    server.deliver_raw(&[&message(3)]).await;
    let (code, got, log) = poll_off_thread(&d, port, "keep").await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(got, vec![lf(&message(3))], "{log}");

    // Without keep, fetchmail fetches everything not yet seen and deletes it all.
    let (code, got, log) = poll_off_thread(&d, port, "fetchall").await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(got.len(), 3, "{log}");
    assert!(server.inbox_uids().await.is_empty(), "deleted on QUIT\n{log}");
    server.stop().await;
}
