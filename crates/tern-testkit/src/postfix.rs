//! A real Postfix on loopback, on either side of Tern's SMTP: a **sink** that plays a
//! remote domain's MX (Tern's outbound queue delivers to it), or a **relay** that plays
//! a sending MTA (it forwards everything to Tern's inbound port).
//!
//! Each [`Postfix`] is a private instance, not the system one: its main.cf and
//! master.cf, queue, data directory, log and maildirs live in a temporary folder; its
//! smtpd listens on a free port of 127.0.0.1; it looks nothing up in DNS. The fixture
//! starts the `master` daemon itself, as its own child, and stops it by PID (SIGTERM,
//! then SIGKILL to its process group), so any number run side by side and nothing is
//! left behind. /etc/postfix is only read (Postfix's own file lists) and never
//! written; as root, `postfix -c DIR` needs no `alternate_config_directories` entry.
//!
//! Postfix's master must run as root; its daemons run as the `postfix` user and
//! `postdrop` group that Debian's package creates. [`Postfix::installed`] is false
//! without root or the package.
//!
//! ```no_run
//! use std::time::Duration;
//! use tern_testkit::postfix::Postfix;
//! // A remote MX for remote.test; bounce@ is refused with 550, later@ with 450.
//! let sink = Postfix::sink(&["remote.test"])
//!     .reject("bounce@remote.test")
//!     .tempfail("later@remote.test")
//!     .start()
//!     .expect("Postfix sink");
//! // ... Tern delivers to 127.0.0.1:sink.smtp_port() ...
//! let mail = sink.wait_for("alice@remote.test", 1, Duration::from_secs(10)).expect("delivered");
//!
//! // A sending MTA whose relayhost is Tern's inbound port.
//! let tern_inbound: std::net::SocketAddr = "127.0.0.1:2525".parse().unwrap();
//! let relay = Postfix::relay(tern_inbound).start().expect("Postfix relay");
//! relay.submit("bob@sender.test", &["alice@tern.test"], b"Subject: hi\r\n\r\nhello\r\n").expect("queued");
//! relay.wait_log("status=sent", Duration::from_secs(10)).expect("relayed");
//! ```
//!
//! The sink's maildirs are per domain (`mail/<domain>/`): Postfix's virtual(8) refuses
//! a regexp table that computes a path per recipient. [`Postfix::messages`] tells the
//! recipients apart by the `Delivered-To:` header virtual(8) prepends to each copy, so
//! any local part works.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::smtp_peer;

/// Postfix's command and the folder of its daemons (Debian layout, `postconf -d
/// daemon_directory`).
const POSTFIX: &str = "/usr/sbin/postfix";
const POSTCONF: &str = "/usr/sbin/postconf";
const POSTQUEUE: &str = "/usr/sbin/postqueue";
const MASTER: &str = "/usr/lib/postfix/sbin/master";

/// What to tell someone whose machine lacks Postfix.
const NOT_INSTALLED: &str = "Postfix is not installed: install postfix, e.g. \
     `DEBIAN_FRONTEND=noninteractive apt-get install postfix`; scripts/test.sh does this";
/// What to tell someone who is not root.
const NOT_ROOT: &str = "the Postfix fixture must run as root (Postfix's master daemon refuses \
     to run otherwise); run the tests as root, e.g. in the CI container";

/// The largest message either mode accepts: 30 MiB.
pub const MESSAGE_SIZE_LIMIT: usize = 30 * 1024 * 1024;
/// The uid and gid the sink's virtual(8) writes maildirs as (`nobody`).
const MAILDIR_OWNER: u32 = 65534;

/// How long Postfix may take to greet on its port after starting.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long SIGTERM may take to stop the master and its children.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Starts retried when another process took the chosen port first.
const PORT_ATTEMPTS: usize = 5;

/// Which side of Tern the instance plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A remote MX: accepts mail for these domains (and relays nothing) and delivers
    /// each recipient's copy to the domain's maildir.
    Sink { domains: Vec<String> },
    /// A sending MTA: accepts mail from 127.0.0.0/8 for anyone and relays all of it to
    /// this address (`relayhost = [ip]:port`, no MX lookup).
    Relay { relayhost: SocketAddr },
}

/// How a [`Postfix`] is set up; from [`Postfix::sink`] or [`Postfix::relay`], chained,
/// then [`PostfixOptions::start`].
#[derive(Clone, Debug)]
pub struct PostfixOptions {
    pub mode: Mode,
    /// The instance's `myhostname`: its greeting, EHLO name and Received lines.
    /// Default "mx.<first domain>" for a sink, "relay.tern-testkit.test" for a relay.
    pub myhostname: String,
    /// Recipients refused at RCPT with `550 5.1.1` (case-insensitive).
    pub rejects: Vec<String>,
    /// Recipients refused at RCPT with `450 4.2.0` (case-insensitive).
    pub tempfails: Vec<String>,
    /// A sink offers STARTTLS with a self-signed certificate
    /// ([`Postfix::cert_pem`]); a relay tries STARTTLS to its relayhost without
    /// checking the certificate (`smtp_tls_security_level = may`). On by default.
    pub tls: bool,
}

impl PostfixOptions {
    pub fn myhostname(mut self, name: &str) -> Self {
        self.myhostname = name.to_string();
        self
    }

    /// Refuse this recipient permanently (`550 5.1.1`).
    pub fn reject(mut self, address: &str) -> Self {
        self.rejects.push(address.to_string());
        self
    }

    /// Refuse this recipient temporarily (`450 4.2.0`), every time.
    pub fn tempfail(mut self, address: &str) -> Self {
        self.tempfails.push(address.to_string());
        self
    }

    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Starts the instance.
    pub fn start(&self) -> Result<Postfix, String> {
        Postfix::start_with(self)
    }

    /// Refuses what would break main.cf or the tables.
    fn check(&self) -> Result<(), String> {
        let plain = |what: &str, s: &str| {
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
                return Err(format!("{what} {s:?} must be non-empty, without spaces or commas"));
            }
            Ok(())
        };
        plain("myhostname", &self.myhostname)?;
        if let Mode::Sink { domains } = &self.mode {
            if domains.is_empty() {
                return Err("a Postfix sink needs at least one domain".into());
            }
            for domain in domains {
                plain("domain", domain)?;
                if domain.contains(['/', '@']) {
                    return Err(format!("domain {domain:?} must not contain '/' or '@'"));
                }
            }
        }
        for address in self.rejects.iter().chain(&self.tempfails) {
            plain("address", address)?;
        }
        Ok(())
    }
}

/// A running private Postfix. Stops and removes its folder on drop.
pub struct Postfix {
    dir: tempfile::TempDir,
    smtp_port: u16,
    cert_pem: Option<String>,
    options: PostfixOptions,
    /// The master daemon, our own child and the leader of its process group.
    master: Option<Child>,
}

impl Postfix {
    /// Options for a sink that is the MX of `domains`.
    pub fn sink(domains: &[&str]) -> PostfixOptions {
        let first = domains.first().copied().unwrap_or("remote.test");
        PostfixOptions {
            mode: Mode::Sink {
                domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            },
            myhostname: format!("mx.{first}"),
            rejects: Vec::new(),
            tempfails: Vec::new(),
            tls: true,
        }
    }

    /// Options for a relay that forwards everything to `relayhost`.
    pub fn relay(relayhost: SocketAddr) -> PostfixOptions {
        PostfixOptions {
            mode: Mode::Relay { relayhost },
            myhostname: "relay.tern-testkit.test".into(),
            rejects: Vec::new(),
            tempfails: Vec::new(),
            tls: true,
        }
    }

    /// Starts an instance as `options` describe.
    pub fn start_with(options: &PostfixOptions) -> Result<Postfix, String> {
        options.check()?;
        if let Some(why) = Self::unavailable() {
            return Err(why.to_string());
        }
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_launch(options)? {
                Ok(postfix) => return Ok(postfix),
                Err(port_taken) => last = port_taken,
            }
        }
        Err(format!(
            "Postfix could not bind a free port in {PORT_ATTEMPTS} attempts: {last}"
        ))
    }

    /// Why this machine cannot run the fixture, if it cannot.
    fn unavailable() -> Option<&'static str> {
        if ![POSTFIX, POSTCONF, POSTQUEUE, MASTER]
            .iter()
            .all(|p| Path::new(p).exists())
        {
            return Some(NOT_INSTALLED);
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if !root {
            return Some(NOT_ROOT);
        }
        None
    }

    /// Whether this machine can run the fixture: Postfix installed and we are root.
    pub fn installed() -> bool {
        Self::unavailable().is_none()
    }

    /// For a test to skip where the fixture cannot run: true (after printing why to
    /// stderr) when Postfix is missing or we are not root.
    pub fn skip_if_missing(test: &str) -> bool {
        match Self::unavailable() {
            None => false,
            Some(why) => {
                eprintln!("skipping {test}: {why}");
                true
            }
        }
    }

    /// The smtpd port on 127.0.0.1.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The smtpd address.
    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.smtp_port))
    }

    /// The sink's STARTTLS certificate (PEM, for "localhost", 127.0.0.1 and
    /// myhostname), when it offers STARTTLS.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// What the instance was started with.
    pub fn options(&self) -> &PostfixOptions {
        &self.options
    }

    /// The instance's folder: `etc/` (main.cf, master.cf, tables), `spool/` (the
    /// queue), `lib/`, `mail/<domain>/` (a sink's maildirs) and `maillog`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config directory, for `postconf -c`, `postqueue -c` and friends.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// Every message delivered to `address` on a sink, oldest first, as stored: virtual(8)
    /// prepends `Return-Path:`, `X-Original-To:` and `Delivered-To:` and stores LF line
    /// endings; Postfix's smtpd added a `Received:` line. Empty for an address of a domain
    /// the sink does not host, or on a relay.
    pub fn messages(&self, address: &str) -> Vec<Vec<u8>> {
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for (_, bytes) in maildir_files(&self.maildir(domain)) {
            if delivered_to(&bytes).is_some_and(|to| to.eq_ignore_ascii_case(address)) {
                found.push(bytes);
            }
        }
        found
    }

    /// Every message a sink delivered, to anyone, oldest first within each domain.
    pub fn all_messages(&self) -> Vec<Vec<u8>> {
        let Mode::Sink { domains } = &self.options.mode else {
            return Vec::new();
        };
        domains
            .iter()
            .flat_map(|d| maildir_files(&self.maildir(d)))
            .map(|(_, bytes)| bytes)
            .collect()
    }

    /// Waits until `address` has at least `count` messages and returns them all
    /// ([`Postfix::messages`]); on timeout the error carries the log.
    pub fn wait_for(&self, address: &str, count: usize, timeout: Duration) -> Result<Vec<Vec<u8>>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages(address);
            if messages.len() >= count {
                return Ok(messages);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{address} got {} of {count} messages within {timeout:?}; Postfix's log:\n{}",
                    messages.len(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Hands a message to the instance's smtpd (plain SMTP from 127.0.0.1, see
    /// [`smtp_peer::send_mail`]) and returns its final reply ("250 2.0.0 Ok: queued
    /// as ..."). On a relay this queues it for the relayhost.
    pub fn submit(&self, from: &str, to: &[&str], message: &[u8]) -> Result<String, String> {
        smtp_peer::send_mail(self.smtp_addr(), from, to, message)
    }

    /// Retries every deferred message now (`postqueue -f`) instead of after the backoff.
    pub fn flush(&self) -> Result<(), String> {
        self.postqueue("-f").map(drop)
    }

    /// How many messages are in the queue (`postqueue -j`).
    pub fn queued(&self) -> Result<usize, String> {
        Ok(self.postqueue("-j")?.lines().filter(|l| l.starts_with('{')).count())
    }

    fn postqueue(&self, flag: &str) -> Result<String, String> {
        let output = Command::new(POSTQUEUE)
            .arg("-c")
            .arg(self.config_dir())
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {POSTQUEUE}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "postqueue {flag} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                self.log()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The instance's mail log so far (smtpd, qmgr, smtp, virtual ...).
    pub fn log(&self) -> String {
        std::fs::read(self.dir.path().join("maillog"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the log contains `needle` (e.g. "status=sent") and returns the log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(log);
            }
            if Instant::now() > deadline {
                return Err(format!("Postfix's log has no {needle:?} after {timeout:?}:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the instance but keeps its folder, so a test can read maildirs and the log
    /// while nothing writes to them. Dropping does this too; calling it twice is harmless.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut master) = self.master.take() else {
            return Ok(());
        };
        let pid = master.id();
        // The master runs setsid(): its PID is its children's process group. On SIGTERM
        // it signals that group and exits; the children follow.
        signal("-TERM", &pid.to_string());
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = master.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            signal("-KILL", &format!("-{pid}"));
            let _ = master.kill();
            let _ = master.wait();
        }
        while Instant::now() < deadline && !group_members(pid).is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = group_members(pid);
        if !left.is_empty() {
            signal("-KILL", &format!("-{pid}"));
        }
        match (exited, left.is_empty()) {
            (true, true) => Ok(()),
            (false, _) => Err(format!(
                "Postfix master {pid} did not stop within {STOP_TIMEOUT:?} and was killed"
            )),
            (true, false) => Err(format!(
                "Postfix daemons {left:?} outlived their master {pid} by {STOP_TIMEOUT:?} and were killed"
            )),
        }
    }

    fn maildir(&self, domain: &str) -> PathBuf {
        self.dir.path().join("mail").join(domain.to_ascii_lowercase())
    }

    /// One start. The outer error is final; the inner one means "the port was taken".
    fn try_launch(options: &PostfixOptions) -> Result<Result<Postfix, String>, String> {
        let dir = tempfile::Builder::new()
            .prefix("tern-postfix-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder for Postfix: {e}"))?;
        let root = dir.path().to_path_buf();
        let io = |what: &str, e: std::io::Error| format!("cannot {what} in {}: {e}", root.display());
        // The daemons run as `postfix` and virtual(8) as nobody: they must traverse it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("open up the folder", e))?;
        // etc/ and spool/ stay root's (postfix check insists); lib/ and the queue's
        // subfolders are created by `postfix check` with their owners.
        for sub in ["etc", "spool"] {
            std::fs::create_dir(root.join(sub)).map_err(|e| io("create a subfolder", e))?;
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io("set a subfolder's mode", e))?;
        }
        let write = |name: &str, text: &str| {
            std::fs::write(root.join("etc").join(name), text).map_err(|e| io(&format!("write etc/{name}"), e))
        };
        if let Mode::Sink { domains } = &options.mode {
            let mail = root.join("mail");
            std::fs::create_dir(&mail).map_err(|e| io("create mail/", e))?;
            std::os::unix::fs::chown(&mail, Some(MAILDIR_OWNER), Some(MAILDIR_OWNER))
                .map_err(|e| io("hand mail/ to nobody", e))?;
            let mut table = String::new();
            for domain in domains {
                // No substitution: virtual(8) refuses `$1` in a path it writes to.
                let _ = writeln!(table, "/@{}$/ {domain}/", regex_escape(domain));
            }
            write("virtual_mailboxes", &table)?;
        }
        let mut access = String::new();
        for address in &options.rejects {
            let _ = writeln!(
                access,
                "/^{}$/ 550 5.1.1 <{address}>: Recipient address rejected: scripted rejection",
                regex_escape(address)
            );
        }
        for address in &options.tempfails {
            let _ = writeln!(
                access,
                "/^{}$/ 450 4.2.0 <{address}>: Recipient address rejected: scripted tempfail, try again later",
                regex_escape(address)
            );
        }
        write("recipient_access", &access)?;
        let cert_pem = if options.tls && matches!(options.mode, Mode::Sink { .. }) {
            let names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                options.myhostname.clone(),
            ];
            let certified = rcgen::generate_simple_self_signed(names)
                .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
            let cert = certified.cert.pem();
            // smtpd reads it as root before dropping privileges.
            let chain = root.join("etc").join("tls.pem");
            std::fs::write(&chain, format!("{}{cert}", certified.signing_key.serialize_pem()))
                .and_then(|()| std::fs::set_permissions(&chain, std::fs::Permissions::from_mode(0o600)))
                .map_err(|e| io("write etc/tls.pem", e))?;
            Some(cert)
        } else {
            None
        };

        let smtp_port = free_port()?;
        write("main.cf", &main_cf(&root, options))?;
        write("master.cf", &master_cf(smtp_port))?;
        check_config(&root)?;
        let postfix_check = Command::new(POSTFIX)
            .arg("-c")
            .arg(root.join("etc"))
            .arg("check")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {POSTFIX}: {e} ({NOT_INSTALLED})"))?;
        if !postfix_check.status.success() {
            return Err(format!(
                "`postfix -c {} check` failed ({}): {}{}",
                root.join("etc").display(),
                postfix_check.status,
                String::from_utf8_lossy(&postfix_check.stderr),
                std::fs::read_to_string(root.join("maillog")).unwrap_or_default()
            ));
        }

        // Not `postfix start`: that backgrounds the master (`master -w`) and stops it
        // through a pid file. Run in the foreground, the master is our child and leads
        // its own process group (it calls setsid), so we stop it by PID.
        let master = Command::new(MASTER)
            .arg("-c")
            .arg(root.join("etc"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {MASTER}: {e} ({NOT_INSTALLED})"))?;
        let mut postfix = Postfix {
            dir,
            smtp_port,
            cert_pem,
            options: options.clone(),
            master: Some(master),
        };
        match postfix.wait_for_greeting(Instant::now() + START_TIMEOUT) {
            Ok(()) => Ok(Ok(postfix)),
            Err(Startup::PortTaken(why)) => Ok(Err(why)),
            Err(Startup::Failed(why)) => Err(why),
        }
    }

    /// Waits until smtpd greets with 220 while the master still runs.
    fn wait_for_greeting(&mut self, deadline: Instant) -> Result<(), Startup> {
        let addr = self.smtp_addr();
        loop {
            if let Some(master) = self.master.as_mut()
                && let Ok(Some(status)) = master.try_wait()
            {
                self.master = None;
                let log = self.log();
                let why = format!("the Postfix master exited at start ({status}); its log:\n{log}");
                return Err(if log.contains("Address already in use") {
                    Startup::PortTaken(why)
                } else {
                    Startup::Failed(why)
                });
            }
            let log = self.log();
            if log.contains("Address already in use") {
                let _ = self.stop();
                return Err(Startup::PortTaken(format!("port {} taken:\n{log}", self.smtp_port)));
            }
            if Instant::now() > deadline {
                let _ = self.stop();
                return Err(Startup::Failed(format!(
                    "Postfix did not greet on port {} within {START_TIMEOUT:?}; its log:\n{log}",
                    self.smtp_port
                )));
            }
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("220 ") {
                    let _ = std::io::Write::write_all(&mut &stream, b"QUIT\r\n");
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // stop() has already used SIGKILL if SIGTERM was not enough. The TempDir field
        // then removes the folder.
        let _ = self.stop();
    }
}

enum Startup {
    PortTaken(String),
    Failed(String),
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// `kill SIGNAL TARGET` (a PID, or "-PGID" for a process group), ignoring failure.
fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg("--")
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Live (not zombie) processes of process group `pgid`, from /proc.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ')'.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first().is_some_and(|state| *state != "Z")
                && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        })
        .collect()
}

/// `text` as a literal inside a Postfix regexp table's `/.../` pattern.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$/".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Fails on any warning `postconf` has about main.cf, such as a parameter this
/// Postfix does not know.
fn check_config(root: &Path) -> Result<(), String> {
    let output = Command::new(POSTCONF)
        .arg("-c")
        .arg(root.join("etc"))
        .arg("-n")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {POSTCONF}: {e} ({NOT_INSTALLED})"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stderr.contains("warning") {
        return Err(format!(
            "this Postfix does not accept the fixture's main.cf ({}): {stderr}",
            output.status
        ));
    }
    Ok(())
}

/// The files of a maildir's new/ and cur/, oldest delivery first (maildir names start
/// with the delivery's seconds and carry its microseconds after `M`).
fn maildir_files(maildir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(bytes) = std::fs::read(entry.path()) {
                files.push((name, bytes));
            }
        }
    }
    let order = |name: &str| {
        let mut parts = name.split('.');
        let seconds = parts.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(u64::MAX);
        let micros = parts
            .next()
            .and_then(|p| p.rsplit_once('M'))
            .and_then(|(_, m)| m.parse::<u64>().ok())
            .unwrap_or(0);
        (seconds, micros)
    };
    files.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)).then_with(|| a.cmp(b)));
    files
}

/// The address of the first `Delivered-To:` header, the one virtual(8) prepended.
fn delivered_to(message: &[u8]) -> Option<String> {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() > 13 && line[..13].eq_ignore_ascii_case(b"Delivered-To:") {
            return Some(String::from_utf8_lossy(&line[13..]).trim().to_string());
        }
    }
    None
}

/// The whole main.cf (Postfix 3.4+; written against Debian's 3.7). Nothing from
/// /etc/postfix/main.cf applies.
fn main_cf(root: &Path, options: &PostfixOptions) -> String {
    let d = root.display();
    let mut c = format!(
        "# Written by tern-testkit's Postfix fixture.
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/lib
mail_owner = postfix
setgid_group = postdrop
# The log goes to a file of our own through the postlog service (Postfix 3.4+),
# which only writes under an allowed prefix.
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {myhostname}
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP Postfix (tern-testkit)
# No DNS: the relayhost is an address, and clients are named by their address.
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
smtputf8_enable = yes
message_size_limit = {MESSAGE_SIZE_LIMIT}
mailbox_size_limit = 0
virtual_mailbox_limit = 0
# Refusals are answered at once, not after a second's sleep.
smtpd_error_sleep_time = 0s
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
# Deferred mail is retried within seconds, not minutes. A backoff of 1s races the
# delivery agent's lock on the queue file: qmgr then finds the file still being
# delivered and puts it aside for a fixed 60s.
queue_run_delay = 1s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
smtpd_tls_loglevel = 1
smtp_tls_loglevel = 1
smtpd_recipient_restrictions = check_recipient_access regexp:{d}/etc/recipient_access
",
        myhostname = options.myhostname,
    );
    match &options.mode {
        Mode::Sink { domains } => {
            let _ = write!(
                c,
                "# A remote MX: its own domains only, relaying nothing even for loopback.
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = reject_unauth_destination
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = regexp:{d}/etc/virtual_mailboxes
virtual_uid_maps = static:{MAILDIR_OWNER}
virtual_gid_maps = static:{MAILDIR_OWNER}
# Its own bounces go nowhere.
default_transport = error:5.7.1 this test sink delivers only to its own domains
relay_transport = $default_transport
smtp_tls_security_level = none
",
                domains = domains.join(", "),
            );
            if options.tls {
                let _ = write!(
                    c,
                    "smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {d}/etc/tls.pem\n# Received: lines name the TLS version and cipher.\nsmtpd_tls_received_header = yes\n"
                );
            } else {
                c.push_str("smtpd_tls_security_level = none\n");
            }
        }
        Mode::Relay { relayhost } => {
            let host = match relayhost {
                SocketAddr::V4(v4) => format!("[{}]:{}", v4.ip(), v4.port()),
                SocketAddr::V6(v6) => format!("[ipv6:{}]:{}", v6.ip(), v6.port()),
            };
            let level = if options.tls { "may" } else { "none" };
            let _ = write!(
                c,
                "# A sending MTA: takes mail from loopback for anyone, and sends all of it on.
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = {host}
smtp_tls_security_level = {level}
smtpd_tls_security_level = none
"
            );
        }
    }
    c
}

/// master.cf: Debian's services without chroot, smtpd on `port` of 127.0.0.1 only.
fn master_cf(port: u16) -> String {
    format!(
        "# Written by tern-testkit's Postfix fixture.
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexp_patterns_are_literal() {
        assert_eq!(regex_escape("a.b+c@x.test"), "a\\.b\\+c@x\\.test");
        assert_eq!(regex_escape("a/b"), "a\\/b");
    }

    #[test]
    fn delivered_to_is_read_from_the_header_only() {
        let message =
            b"Return-Path: <x@y>\nDelivered-To: Alice@Remote.test\nDelivered-To: old@z\n\nDelivered-To: body\n";
        assert_eq!(delivered_to(message).as_deref(), Some("Alice@Remote.test"));
        assert_eq!(delivered_to(b"Subject: x\n\nDelivered-To: a@b\n"), None);
    }

    #[test]
    fn options_that_would_break_the_config_are_refused() {
        let refused = |options: PostfixOptions| options.check().err().unwrap_or_default();
        assert!(refused(Postfix::sink(&[])).contains("at least one domain"));
        assert!(refused(Postfix::sink(&["a b.test"])).contains("without spaces"));
        assert!(refused(Postfix::sink(&["x.test"]).reject("a,b@x.test")).contains("commas"));
        assert!(refused(Postfix::sink(&["x.test"]).myhostname("")).contains("non-empty"));
    }
}
