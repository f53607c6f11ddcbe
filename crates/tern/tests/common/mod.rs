//! What the binary's tests share: running `tern` on a data folder, checking its exit and
//! output, and finding free ports for a server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn tern(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run tern")
}

pub fn tern_stdin(data: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tern");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tern failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A failure is exactly one line on stderr, starting with "tern: error:".
pub fn one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("tern: error: "), "{err:?}");
    err
}

/// The migration source "old": an IMAP server on loopback `port` without TLS (the test
/// Dovecot).
pub fn add_source(data: &Path, port: u16) {
    ok(&tern(
        data,
        &[
            "migrate",
            "source",
            "add",
            "old",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--tls",
            "none",
        ],
    ));
}

/// A migration of `user`'s mailbox from the source "old", logging in there as
/// `remote_user` with `password`.
pub fn add_migration(data: &Path, user: &str, remote_user: &str, password: &str) {
    ok(&tern_stdin(
        data,
        &[
            "migrate",
            "add",
            "--source",
            "old",
            "--user",
            user,
            "--remote-user",
            remote_user,
            "--password-stdin",
        ],
        &format!("{password}\n"),
    ));
}

pub fn free_offset() -> u16 {
    // An offset whose quickstart ports are all free right now.
    for _ in 0..50 {
        let offset = 20000 + (rand_u16() % 20000);
        let ports = [1143, 1993, 1110, 1995, 2525, 1587, 1465, 8080, 8443].map(|p| p + offset);
        if ports
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return offset;
        }
    }
    panic!("no free port range");
}

pub fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ std::process::id()) as u16
}

/// `tern quickstart` running on a fresh data folder in a temporary folder, on free
/// ports; killed (and its folder removed) when dropped. Its log (stderr) is kept in
/// `tern.log` beside the data folder, for failure reports.
pub struct Quickstart {
    /// The first account's password, as quickstart printed it.
    pub admin_password: String,
    pub data: PathBuf,
    pub offset: u16,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Quickstart {
    /// Starts it and waits until it says it runs (every listener is bound by then).
    pub fn start() -> Quickstart {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("tern-data");
        let log = dir.path().join("tern.log");
        let offset = free_offset();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("--data")
            .arg(&data)
            .args(["quickstart", "--port-offset", &offset.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the banner, then keeps draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = Quickstart {
            admin_password: String::new(),
            data,
            offset,
            log,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("quickstart did not start: {seen:?}\n{}", server.log_tail(30)));
            if let Some(rest) = line.strip_prefix("Log in as admin@example.test with password ") {
                server.admin_password = rest.trim().to_string();
            }
            let done = line.starts_with("Stop with Ctrl-C");
            seen.push(line);
            if done {
                break;
            }
        }
        assert!(!server.admin_password.is_empty(), "no password in {seen:?}");
        server
    }

    pub fn port(&self, base: u16) -> u16 {
        base + self.offset
    }

    /// Adds an account with the CLI while the server runs.
    pub fn add_user(&self, address: &str, name: &str, password: &str) {
        ok(&tern_stdin(
            &self.data,
            &["user", "add", address, "--name", name, "--password-stdin"],
            &format!("{password}\n"),
        ));
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Quickstart {
    /// Runs the browser script at `script` (an ES module, tern_testkit::browser) with
    /// `env`. Panics with everything the run saw, and the end of the server's log, if
    /// it fails, or if a page threw, broke its Content-Security-Policy, or logged a
    /// console error that `provoked` (the refusals the script causes on purpose) does
    /// not account for.
    pub fn browse(
        &self,
        script: &Path,
        env: &[(&str, &str)],
        timeout: Duration,
        screenshots: Option<&Path>,
        provoked: impl Fn(&str) -> bool,
    ) -> tern_testkit::browser::Output {
        let mut chromium = tern_testkit::browser::require().with_timeout(timeout);
        if let Some(dir) = screenshots {
            chromium = chromium.with_screenshots(dir);
        }
        let output = chromium
            .run(script, env)
            .unwrap_or_else(|e| panic!("{e}\n--- the end of tern's log:\n{}", self.log_tail(40)));
        let console: Vec<&String> = output.console.iter().filter(|c| !provoked(c)).collect();
        assert!(
            console.is_empty() && output.csp_violations.is_empty() && output.page_errors.is_empty(),
            "{}: the pages said more than expected\nconsole errors: {console:#?}\nCSP violations: {:#?}\n\
             page errors: {:#?}\nsteps: {:#?}",
            script.display(),
            output.csp_violations,
            output.page_errors,
            output.steps
        );
        output
    }
}

/// Where a screenshot test writes: docs/screenshots/ only with
/// `TERN_UPDATE_SCREENSHOTS=1`, so a test run leaves the tree clean; a scratch folder
/// otherwise (removed with this).
pub struct Screenshots {
    pub dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Screenshots {
    pub fn new() -> Screenshots {
        let scratch = tempfile::tempdir().unwrap();
        let update = std::env::var_os("TERN_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1");
        let dir = if update {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
        } else {
            scratch.path().to_path_buf()
        };
        Screenshots { dir, _scratch: scratch }
    }

    /// The file names of the screenshots a run took, in order.
    pub fn taken(output: &tern_testkit::browser::Output) -> Vec<String> {
        output
            .screenshots
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}
