//! A real Dovecot (IMAP, and POP3 when `dovecot-pop3d` is installed; LMTP on request
//! with `dovecot-lmtpd`) on loopback, for tests and benchmarks: the "old provider" a
//! migration copies from, and a speed reference.
//!
//! Each [`Dovecot`] runs its own master process under a temporary folder: config, sockets,
//! log and every user's home (`home/<user>/Maildir`) live there, the ports are picked
//! free at run time, and dropping the value stops the server and removes the folder. So
//! any number of fixtures can run side by side, beside a system Dovecot, and leave
//! nothing behind.
//!
//! ```no_run
//! let dovecot = tern_testkit::dovecot::Dovecot::start().expect("Dovecot");
//! // IMAP on 127.0.0.1:dovecot.imap_port(), any user name, password "secret";
//! // mail of alice@example.test lands in dovecot.maildir("alice@example.test").
//! ```
//!
//! To look like a particular provider, start it from [`DovecotOptions`]: special-use
//! folders, an `INBOX.` namespace, a master (admin) user, TLS ports. [`Dovecot::fill`]
//! loads a [`migration_corpus`](crate::migration_corpus) mailbox into it over IMAP and
//! [`Dovecot::snapshot`] reads a mailbox back (see [`crate::imap`]).
//!
//! ```no_run
//! use tern_testkit::dovecot::Dovecot;
//! use tern_testkit::migration_corpus::{mailbox, CorpusSpec};
//! let dovecot = Dovecot::builder()
//!     .users(&[("alice@example.test", "pw")])
//!     .special_use(true)
//!     .namespace("INBOX.", '.')
//!     .master_user("admin", "adminpass")
//!     .tls(true)
//!     .start()
//!     .expect("Dovecot");
//! let corpus = mailbox(&CorpusSpec::small());
//! dovecot.fill("alice@example.test", &corpus).expect("fill");
//! let snapshot = dovecot.snapshot("alice@example.test").expect("snapshot");
//! ```

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::imap::Namespace;
use crate::imap::{self, Snapshot};
use crate::migration_corpus::CorpusFolder;

/// Dovecot's master binary and the folder of its service executables (Debian layout).
const DOVECOT: &str = "/usr/sbin/dovecot";
const LIBEXEC: &str = "/usr/lib/dovecot";

/// What to tell someone whose machine lacks Dovecot.
const NOT_INSTALLED: &str = "Dovecot is not installed: install dovecot-core dovecot-imapd \
     (and dovecot-pop3d for POP3), e.g. `apt-get install dovecot-core dovecot-imapd \
     dovecot-pop3d`; scripts/test.sh does this";

/// How long Dovecot may take to greet on its ports after starting.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful `doveadm stop` may take before the master is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Starts retried when another process took a chosen port before Dovecot bound it.
const PORT_ATTEMPTS: usize = 5;

/// The special-use folders a provider announces (RFC 6154), by name.
const SPECIAL_USE: &[(&str, &str)] = &[
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// How a [`Dovecot`] should look to a client. `DovecotOptions::default()` is what
/// [`Dovecot::start`] runs: any user with [`Dovecot::PASSWORD`], namespace "" with
/// separator '/', no special-use folders, no master user, no TLS.
///
/// Fields are public for struct-update syntax; the methods of the same names chain
/// (`Dovecot::builder().special_use(true).start()`).
#[derive(Clone, Debug, Default)]
pub struct DovecotOptions {
    /// `(user, password)` pairs that alone may log in; `None` lets any name log in
    /// with [`Dovecot::PASSWORD`].
    pub users: Option<Vec<(String, String)>>,
    /// Give Sent, Drafts, Trash, Junk and Archive their RFC 6154 use attributes.
    /// They are not created automatically (`auto = no`): the folders a client
    /// creates with those names get them.
    pub special_use: bool,
    /// The personal namespace's prefix and separator. A non-empty prefix must end with
    /// the separator ("INBOX." with '.').
    pub namespace: Namespace,
    /// A master user `(name, password)` who may log in as anyone: LOGIN with
    /// `user*master` and the master's password, or AUTHENTICATE PLAIN with
    /// authzid `user` and authcid `master`.
    pub master_user: Option<(String, String)>,
    /// Also serve IMAPS (and POP3S with POP3) on their own ports with a self-signed
    /// certificate for "localhost" and 127.0.0.1 ([`Dovecot::cert_pem`]), and offer
    /// STARTTLS on the plain ports. Plain-text logins stay allowed.
    pub tls: bool,
    /// Save mail without fsync (`mail_fsync = never`): fills the bench corpus in
    /// about half the time, for a fixture that is only a migration's source. Leave it
    /// off where Dovecot is a speed reference for writes.
    pub skip_fsync: bool,
    /// Accept XOAUTH2 and OAUTHBEARER logins, checking each token with an RFC 7662
    /// introspection endpoint at this URL (POST `token=…`, answered with JSON
    /// `{"active": true, "username": "alice"}`); password logins keep working.
    pub oauth2_introspection: Option<String>,
    /// Also take mail over LMTP (RFC 2033) on a port of its own ([`Dovecot::lmtp_port`]),
    /// delivered into the same maildirs (needs `dovecot-lmtpd`). With
    /// [`DovecotOptions::users`], only those users exist as recipients.
    pub lmtp: bool,
}

impl DovecotOptions {
    /// Only these `(user, password)` pairs may log in (see [`Dovecot::start_with_users`]).
    pub fn users(mut self, users: &[(&str, &str)]) -> Self {
        self.users = Some(users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect());
        self
    }

    pub fn special_use(mut self, on: bool) -> Self {
        self.special_use = on;
        self
    }

    /// E.g. `namespace("INBOX.", '.')` for a Courier-style server.
    pub fn namespace(mut self, prefix: &str, separator: char) -> Self {
        self.namespace = Namespace {
            prefix: prefix.to_string(),
            separator,
        };
        self
    }

    /// XOAUTH2 logins checked at this introspection URL (see the field).
    pub fn oauth2_introspection(mut self, url: &str) -> Self {
        self.oauth2_introspection = Some(url.to_string());
        self
    }

    pub fn master_user(mut self, user: &str, password: &str) -> Self {
        self.master_user = Some((user.to_string(), password.to_string()));
        self
    }

    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    pub fn skip_fsync(mut self, on: bool) -> Self {
        self.skip_fsync = on;
        self
    }

    pub fn lmtp(mut self, on: bool) -> Self {
        self.lmtp = on;
        self
    }

    /// Starts a Dovecot with these options ([`Dovecot::start_with`]).
    pub fn start(&self) -> Result<Dovecot, String> {
        Dovecot::start_with(self)
    }

    /// Refuses what would corrupt the passwd files or the config, or what Dovecot
    /// would reject less clearly.
    fn check(&self) -> Result<(), String> {
        let passwd_safe = |what: &str, user: &str, password: &str| {
            if user.is_empty() || [user, password].iter().any(|s| s.contains([':', '\n', '\r'])) {
                return Err(format!(
                    "{what} {user:?}: names and passwords must be non-empty and contain no ':' or newline"
                ));
            }
            Ok(())
        };
        for (user, password) in self.users.iter().flatten() {
            // passwd-file fields are ':'-separated lines; anything else would corrupt it.
            passwd_safe("user", user, password)?;
        }
        if let Some((master, password)) = &self.master_user {
            passwd_safe("master user", master, password)?;
            if master.contains(MASTER_SEPARATOR) {
                return Err(format!("master user {master:?} must not contain '{MASTER_SEPARATOR}'"));
            }
        }
        let Namespace { prefix, separator } = &self.namespace;
        // The separator and prefix go into dovecot.conf unquoted and onto the wire.
        if !separator.is_ascii_graphic() || ['"', '\\', '*', '%', '{', '}', '#'].contains(separator) {
            return Err(format!(
                "namespace separator {separator:?} must be printable ASCII, not a wildcard or quote"
            ));
        }
        if !prefix.is_empty() && !prefix.ends_with(*separator) {
            return Err(format!(
                "namespace prefix {prefix:?} must end with the separator {separator:?}"
            ));
        }
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"\\*%{}#".contains(&b))
        {
            return Err(format!(
                "namespace prefix {prefix:?} must be printable ASCII without spaces, wildcards or quotes"
            ));
        }
        Ok(())
    }
}

/// Between the user and the master user in a master LOGIN ("alice*admin").
const MASTER_SEPARATOR: char = '*';

/// A running Dovecot on 127.0.0.1. Stops and removes its folder on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    imap_port: u16,
    pop3_port: Option<u16>,
    imaps_port: Option<u16>,
    pop3s_port: Option<u16>,
    lmtp_port: Option<u16>,
    cert_pem: Option<String>,
    options: DovecotOptions,
    /// The master process, started in the foreground (`-F`) so it is our child and we
    /// stop it by its own PID rather than trusting a pid file.
    master: Option<Child>,
}

impl Dovecot {
    /// The password of every user of a fixture from [`Dovecot::start`].
    pub const PASSWORD: &'static str = "secret";

    /// Starts a Dovecot where any user name logs in with [`Dovecot::PASSWORD`]; a
    /// user's maildir appears at the first login.
    pub fn start() -> Result<Dovecot, String> {
        Self::start_with(&DovecotOptions::default())
    }

    /// Options to start a Dovecot from: `Dovecot::builder().special_use(true).start()`.
    pub fn builder() -> DovecotOptions {
        DovecotOptions::default()
    }

    /// Starts a Dovecot as `options` describe.
    pub fn start_with(options: &DovecotOptions) -> Result<Dovecot, String> {
        options.check()?;
        Self::launch(options)
    }

    /// Whether this machine has Dovecot's IMAP side. Tests that need it call this
    /// first and skip, with a message, when it is false.
    pub fn installed() -> bool {
        Path::new(DOVECOT).exists() && Path::new(LIBEXEC).join("imap").exists()
    }

    /// For a test to skip on a machine without Dovecot: true (after printing why to
    /// stderr) when Dovecot is not installed.
    pub fn skip_if_missing(test: &str) -> bool {
        if Self::installed() {
            return false;
        }
        eprintln!("skipping {test}: {NOT_INSTALLED}");
        true
    }

    /// Starts a Dovecot that knows exactly these users, each with their own password
    /// (`(user, password)` pairs); any other login fails, as on a real provider.
    pub fn start_with_users(users: &[(&str, &str)]) -> Result<Dovecot, String> {
        Self::start_with(&DovecotOptions::default().users(users))
    }

    /// Whether this machine can take mail over LMTP (`dovecot-lmtpd` installed).
    pub fn lmtp_installed() -> bool {
        Path::new(LIBEXEC).join("lmtp").exists()
    }

    /// Whether this machine can run the POP3 side (`dovecot-pop3d` installed).
    pub fn pop3_installed() -> bool {
        Path::new(LIBEXEC).join("pop3").exists() && Path::new(LIBEXEC).join("pop3-login").exists()
    }

    /// The plain-text IMAP port on 127.0.0.1.
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The plain-text POP3 port on 127.0.0.1, or `None` when `dovecot-pop3d` is not
    /// installed. UIDLs are Dovecot's classic `%08Xu%08Xv` (UID, UIDVALIDITY in hex).
    pub fn pop3_port(&self) -> Option<u16> {
        self.pop3_port
    }

    /// The LMTP port on 127.0.0.1, when started with [`DovecotOptions::lmtp`]. Mail to
    /// `user` lands in [`Dovecot::maildir`]`(user)`'s `new/`.
    pub fn lmtp_port(&self) -> Option<u16> {
        self.lmtp_port
    }

    /// The plain-text IMAP address, for [`crate::imap`].
    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.imap_port))
    }

    /// The IMAPS (implicit TLS) port, when started with [`DovecotOptions::tls`].
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// The POP3S port, when started with TLS and `dovecot-pop3d` is installed.
    pub fn pop3s_port(&self) -> Option<u16> {
        self.pop3s_port
    }

    /// The self-signed certificate (PEM) of the TLS ports, for a client to trust; it
    /// names "localhost" and 127.0.0.1.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// What the fixture was started with.
    pub fn options(&self) -> &DovecotOptions {
        &self.options
    }

    /// The password `user` logs in with: [`Dovecot::PASSWORD`] for any name, or the
    /// user's own when started with a user list (None for a stranger).
    pub fn password(&self, user: &str) -> Option<&str> {
        match &self.options.users {
            None => Some(Self::PASSWORD),
            Some(users) => users.iter().find(|(u, _)| u == user).map(|(_, p)| p.as_str()),
        }
    }

    /// Logs in as `user` over plain IMAP and loads `folders` into the mailbox with
    /// [`imap::fill`]: folders created (names translated for the fixture's namespace;
    /// existing ones reused), then every message appended with its flags, keywords and
    /// INTERNALDATE, over one connection per CPU. The bench corpus takes about 40 s on
    /// a busy 2-core machine, 20 s with [`DovecotOptions::skip_fsync`].
    pub fn fill(&self, user: &str, folders: &[CorpusFolder]) -> Result<(), String> {
        let password = self
            .password(user)
            .ok_or_else(|| format!("this Dovecot has no user {user:?}"))?;
        imap::fill(self.imap_addr(), user, password, folders)
    }

    /// Logs in as `user` over plain IMAP and reads the whole mailbox back:
    /// [`imap::Client::snapshot`].
    pub fn snapshot(&self, user: &str) -> Result<Snapshot, String> {
        let password = self
            .password(user)
            .ok_or_else(|| format!("this Dovecot has no user {user:?}"))?;
        imap::snapshot(self.imap_addr(), user, password)
    }

    /// The Maildir++ root of a user: INBOX's `cur`/`new`/`tmp`, and a `.Sub.Folder`
    /// directory per subfolder (folder names in modified UTF-7, `/` stored as `.`).
    /// It exists once the user has logged in.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user).join("Maildir")
    }

    /// Dovecot's log so far (logins, errors), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read(self.dir.path().join("log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The fixture's folder (config `dovecot.conf`, `run/`, `home/`, `log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server but keeps its folder, so a test can read the maildirs while
    /// nothing writes to them. Dropping does this too; calling it twice is harmless.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut master) = self.master.take() else {
            return Ok(());
        };
        // Graceful first: SIGTERM makes the master stop its services and exit. This is
        // what `doveadm stop` sends, but doveadm then polls the pid file for seconds
        // longer than the master takes; our own child we can simply wait for.
        let pid = master.id();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match master.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        master
            .kill()
            .map_err(|e| format!("cannot kill Dovecot master {pid}: {e}"))?;
        master
            .wait()
            .map_err(|e| format!("cannot reap Dovecot master {pid}: {e}"))?;
        Err(format!(
            "Dovecot master {pid} did not stop within {STOP_TIMEOUT:?} and was killed"
        ))
    }

    /// The fixture's `dovecot.conf`, for `doveadm -c <it> ...` (e.g. `doveadm -c C
    /// mailbox status -u alice@example.test all INBOX`) while the server runs.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    fn launch(options: &DovecotOptions) -> Result<Dovecot, String> {
        if !Self::installed() {
            return Err(NOT_INSTALLED.to_string());
        }
        if options.lmtp && !Self::lmtp_installed() {
            return Err("Dovecot's LMTP server is not installed: `apt-get install dovecot-lmtpd`".to_string());
        }
        let pop3 = Self::pop3_installed();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_launch(options, pop3)? {
                Ok(dovecot) => return Ok(dovecot),
                // Another process bound a chosen port between our probe and Dovecot's
                // bind; pick new ports.
                Err(port_taken) => last = port_taken,
            }
        }
        Err(format!(
            "Dovecot could not bind free ports in {PORT_ATTEMPTS} attempts: {last}"
        ))
    }

    /// One start. The outer error is final; the inner one means "a port was taken, retry".
    fn try_launch(options: &DovecotOptions, pop3: bool) -> Result<Result<Dovecot, String>, String> {
        let dir = tempfile::Builder::new()
            .prefix("tern-dovecot-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder for Dovecot: {e}"))?;
        let root = dir.path().to_path_buf();
        let io = |what: &str, e: std::io::Error| format!("cannot {what} in {}: {e}", root.display());
        // Dovecot's unprivileged processes (auth, mail as `nobody`) must reach their
        // sockets, the passwd file and the homes; a temp dir is 0700 by default.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("open up the folder", e))?;
        for sub in ["run", "state", "home"] {
            std::fs::create_dir(root.join(sub)).map_err(|e| io("create a subfolder", e))?;
        }
        // Homes are created at first login by the mail process, which runs as `nobody`.
        std::fs::set_permissions(root.join("home"), std::fs::Permissions::from_mode(0o777))
            .map_err(|e| io("open up home/", e))?;
        // The auth process (Dovecot's internal user when root) reads the passwd files.
        let write_public = |name: &str, text: &str| {
            std::fs::write(root.join(name), text)
                .and_then(|()| std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o644)))
                .map_err(|e| io(&format!("write {name}"), e))
        };
        if let Some(users) = &options.users {
            write_public(
                "users",
                &users
                    .iter()
                    .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
                    .collect::<String>(),
            )?;
        }
        if let Some((master, password)) = &options.master_user {
            write_public("masters", &format!("{master}:{{PLAIN}}{password}\n"))?;
        }
        if let Some(url) = &options.oauth2_introspection {
            // Dovecot 2.3's oauth2 passdb (doc.dovecot.org, "Open Authentication v2.0
            // database"): introspection by POST, an inactive token refused.
            write_public(
                "oauth2.conf",
                &format!(
                    "introspection_mode = post\nintrospection_url = {url}\nforce_introspection = yes\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n"
                ),
            )?;
        }
        let cert_pem = if options.tls {
            let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
            let cert = certified.cert.pem();
            write_public("cert.pem", &cert)?;
            // Read by the config process, which runs as root or as us: no one else.
            std::fs::write(root.join("key.pem"), certified.signing_key.serialize_pem())
                .and_then(|()| std::fs::set_permissions(root.join("key.pem"), std::fs::Permissions::from_mode(0o600)))
                .map_err(|e| io("write key.pem", e))?;
            Some(cert)
        } else {
            None
        };

        let plain = if pop3 { 2 } else { 1 };
        let secure = if options.tls { plain } else { 0 };
        let lmtp = usize::from(options.lmtp);
        let ports = free_ports(plain + secure + lmtp)?;
        let lmtp_port = options.lmtp.then(|| ports[plain + secure]);
        let (imap_port, pop3_port) = (ports[0], pop3.then(|| ports[1]));
        let (imaps_port, pop3s_port) = if options.tls {
            (Some(ports[plain]), pop3.then(|| ports[plain + 1]))
        } else {
            (None, None)
        };
        let identity = Identity::current()?;
        let listeners = Ports {
            imap: imap_port,
            pop3: pop3_port,
            imaps: imaps_port,
            pop3s: pop3s_port,
            lmtp: lmtp_port,
        };
        let config = config(&root, &identity, &listeners, options);
        std::fs::write(root.join("dovecot.conf"), config).map_err(|e| io("write dovecot.conf", e))?;

        // Dovecot writes fatal config or startup errors to stderr before its log is open.
        let stderr = std::fs::File::create(root.join("stderr")).map_err(|e| io("create the stderr file", e))?;
        let master = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {DOVECOT}: {e} ({NOT_INSTALLED})"))?;
        let mut dovecot = Dovecot {
            dir,
            imap_port,
            pop3_port,
            imaps_port,
            pop3s_port,
            lmtp_port,
            cert_pem,
            options: options.clone(),
            master: Some(master),
        };

        let deadline = Instant::now() + START_TIMEOUT;
        let mut waits = vec![(imap_port, "* OK")];
        if let Some(p) = pop3_port {
            waits.push((p, "+OK"));
        }
        if let Some(p) = lmtp_port {
            waits.push((p, "220 "));
        }
        for (port, greeting) in waits {
            match dovecot.wait_for_greeting(port, greeting, deadline) {
                Ok(()) => {}
                Err(Startup::PortTaken(why)) => return Ok(Err(why)),
                Err(Startup::Failed(why)) => return Err(why),
            }
        }
        Ok(Ok(dovecot))
    }

    /// Waits until `port` greets with `greeting` while the master is still running.
    fn wait_for_greeting(&mut self, port: u16, greeting: &str, deadline: Instant) -> Result<(), Startup> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            // Checked before connecting: if Dovecot died, whatever answers on the port
            // is someone else.
            if let Some(master) = self.master.as_mut()
                && let Ok(Some(status)) = master.try_wait()
            {
                self.master = None;
                let stderr = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
                let output = format!("{stderr}{}", self.log());
                let why = format!("Dovecot exited at start ({status}): {}", output.trim());
                return Err(if output.contains("Address already in use") {
                    Startup::PortTaken(why)
                } else {
                    Startup::Failed(why)
                });
            }
            if Instant::now() > deadline {
                return Err(Startup::Failed(format!(
                    "Dovecot did not greet on port {port} within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                )));
            }
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with(greeting) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; stop() has already killed the master
        // if the graceful stop failed. The TempDir field then removes the folder.
        let _ = self.stop();
    }
}

enum Startup {
    PortTaken(String),
    Failed(String),
}

/// `n` distinct ports that were free a moment ago: all bound at once (so they differ),
/// read, and released for Dovecot to bind.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read a bound port: {e}"))
}

/// The system users Dovecot's processes run as.
struct Identity {
    /// internal (auth, stats…), login, and mail user and group.
    internal: (String, String),
    login: String,
    mail: (String, String),
}

impl Identity {
    /// As root, Dovecot's usual separation (Debian creates `dovecot` and `dovenull`);
    /// otherwise every process runs as the invoking user, Dovecot's "rootless" mode.
    fn current() -> Result<Identity, String> {
        let id = |flag: &str| -> Result<String, String> {
            let out = Command::new("id")
                .arg(flag)
                .output()
                .map_err(|e| format!("cannot run `id {flag}`: {e}"))?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        if id("-u")? == "0" {
            return Ok(Identity {
                internal: ("dovecot".into(), "dovecot".into()),
                login: "dovenull".into(),
                mail: ("nobody".into(), "nogroup".into()),
            });
        }
        let (user, group) = (id("-un")?, id("-gn")?);
        if user.is_empty() || group.is_empty() {
            return Err("cannot tell which user runs this test (`id -un` printed nothing)".into());
        }
        Ok(Identity {
            internal: (user.clone(), group.clone()),
            login: user.clone(),
            mail: (user, group),
        })
    }
}

/// The ports Dovecot listens on.
struct Ports {
    imap: u16,
    pop3: Option<u16>,
    imaps: Option<u16>,
    pop3s: Option<u16>,
    lmtp: Option<u16>,
}

/// The whole dovecot.conf (Dovecot 2.3 syntax): nothing from /etc/dovecot is read.
fn config(root: &Path, who: &Identity, ports: &Ports, options: &DovecotOptions) -> String {
    let d = root.display();
    let mut protocols = if ports.pop3.is_some() { "imap pop3" } else { "imap" }.to_string();
    if ports.lmtp.is_some() {
        protocols.push_str(" lmtp");
    }
    // Without root, login processes and anvil cannot chroot; with root it is not
    // needed on loopback either, so keep one config shape.
    let no_chroot = "  chroot =\n";
    let mut passdb = String::new();
    if options.master_user.is_some() {
        // A master passdb is consulted only for master logins ("alice*admin", or
        // SASL with another authzid); the user's own passdb then need not know the
        // master's password. Without `pass = yes` the target user is not checked
        // against the user passdb, only looked up in the userdb.
        let _ = write!(
            passdb,
            "auth_master_user_separator = {MASTER_SEPARATOR}\npassdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/masters\n  master = yes\n}}\n"
        );
    }
    let mut mechanisms = "plain login";
    if options.oauth2_introspection.is_some() {
        // Only the OAuth mechanisms consult this passdb; the token's owner is the
        // introspection answer's "username".
        mechanisms = "plain login xoauth2 oauthbearer";
        let _ = write!(
            passdb,
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {d}/oauth2.conf\n}}\n"
        );
    }
    if options.users.is_some() {
        let _ = write!(
            passdb,
            "passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/users\n}}\n"
        );
    } else {
        let _ = write!(
            passdb,
            "passdb {{\n  driver = static\n  args = password={}\n}}\n",
            Dovecot::PASSWORD
        );
    }
    let ssl = if options.tls {
        // `<` makes Dovecot read the file's contents.
        format!("ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n")
    } else {
        "ssl = no\n".to_string()
    };
    let fsync = if options.skip_fsync { "mail_fsync = never\n" } else { "" };
    let Namespace { prefix, separator } = &options.namespace;
    let mut mailboxes = String::new();
    if options.special_use {
        // Names inside a namespace block are relative to its prefix ("Sent" is
        // "INBOX.Sent" with prefix "INBOX."). `auto = no`: the folder exists once a
        // client creates it, as after a user's first send.
        for (name, usage) in SPECIAL_USE {
            let _ = write!(
                mailboxes,
                "  mailbox {name} {{\n    special_use = {usage}\n    auto = no\n  }}\n"
            );
        }
    }
    let mut c = format!(
        "# Written by tern-testkit's Dovecot fixture.
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log
{ssl}listen = 127.0.0.1
first_valid_uid = 1
default_internal_user = {iu}
default_internal_group = {ig}
default_login_user = {lu}
mail_uid = {mu}
mail_gid = {mg}
mail_location = maildir:~/Maildir
{fsync}protocols = {protocols}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
# A wrong password is answered at once, not after the default 2 s, so tests of
# failed logins stay fast.
auth_failure_delay = 0
pop3_uidl_format = %08Xu%08Xv
# Clients name folders Work/Reports; on disk they stay Maildir++ `.Work.Reports`.
namespace inbox {{
  inbox = yes
  separator = {separator}
  prefix = {prefix}
{mailboxes}}}
# Mode 0 closes the auth-penalty socket: no growing delay after failures from
# 127.0.0.1, where every test connects from.
service anvil {{
{no_chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{no_chroot}  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
  }}
}}
{passdb}userdb {{
  driver = static
  args = uid={mu} gid={mg} home={d}/home/%u
}}
",
        iu = who.internal.0,
        ig = who.internal.1,
        lu = who.login,
        mu = who.mail.0,
        mg = who.mail.1,
        imap_port = ports.imap,
        // Port 0 disables a listener.
        imaps_port = ports.imaps.unwrap_or(0),
    );
    if let Some(port) = ports.pop3 {
        let pop3s = ports.pop3s.unwrap_or(0);
        c.push_str(&format!(
            "service pop3-login {{\n{no_chroot}  inet_listener pop3 {{\n    port = {port}\n  }}\n  inet_listener pop3s {{\n    port = {pop3s}\n  }}\n}}\n"
        ));
    }
    if let Some(port) = ports.lmtp {
        // LMTP over TCP (RFC 2033) into the same maildirs; `user+detail` is the user's
        // INBOX, not a folder named after the detail.
        c.push_str(&format!(
            "lmtp_save_to_detail_mailbox = no\nservice lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n"
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    use crate::imap;

    /// A minimal IMAP client on a raw socket: what a test sends is exactly what
    /// Dovecot receives.
    struct Imap {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Imap {
        fn connect(port: u16) -> Imap {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to Dovecot");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let writer = stream.try_clone().expect("clone stream");
            let mut imap = Imap {
                reader: BufReader::new(stream),
                writer,
            };
            let greeting = imap.line();
            assert!(greeting.starts_with("* OK"), "{greeting}");
            imap
        }
        fn line(&mut self) -> String {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read from Dovecot");
            line
        }
        /// Sends a tagged command and returns every line up to and including the
        /// tagged response.
        fn command(&mut self, tag: &str, command: &str) -> Vec<String> {
            write!(self.writer, "{tag} {command}\r\n").expect("write");
            self.until_tagged(tag)
        }
        fn until_tagged(&mut self, tag: &str) -> Vec<String> {
            let mut lines = Vec::new();
            loop {
                let line = self.line();
                assert!(!line.is_empty(), "Dovecot closed the connection: {lines:?}");
                let done = line.starts_with(&format!("{tag} "));
                lines.push(line);
                if done {
                    return lines;
                }
            }
        }
        fn append(&mut self, tag: &str, mailbox: &str, flags: &str, message: &[u8]) -> Vec<String> {
            write!(
                self.writer,
                "{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n",
                message.len()
            )
            .expect("write");
            let go = self.line();
            assert!(go.starts_with('+'), "{go}");
            self.writer.write_all(message).expect("write");
            self.writer.write_all(b"\r\n").expect("write");
            self.until_tagged(tag)
        }
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn dovecot_stores_an_imap_append_in_its_maildir_and_stops_on_drop() {
        let dovecot = Dovecot::start().unwrap_or_else(|e| panic!("{e}"));
        let port = dovecot.imap_port();
        let dir = dovecot.dir().to_path_buf();

        let mut imap = Imap::connect(port);
        let ok = imap.command("a1", "LOGIN alice@example.test secret");
        assert!(
            ok.last().expect("reply").starts_with("a1 OK"),
            "{ok:?}\n{}",
            dovecot.log()
        );
        let message = b"From: bob@example.org\r\nSubject: hello\r\n\r\nHi Alice.\r\n";
        let ok = imap.append("a2", "INBOX", "\\Seen $Forwarded", message);
        assert!(ok.last().expect("reply").starts_with("a2 OK"), "{ok:?}");
        let ok = imap.command("a3", "CREATE Work/Reports");
        assert!(ok.last().expect("reply").starts_with("a3 OK"), "{ok:?}");
        imap.command("a4", "LOGOUT");
        drop(imap);

        let maildir = dovecot.maildir("alice@example.test");
        let cur = files_in(&maildir.join("cur"));
        assert_eq!(cur.len(), 1, "{cur:?}");
        let name = cur[0].file_name().expect("name").to_string_lossy().into_owned();
        // `a` is $Forwarded, the first keyword in dovecot-keywords.
        assert!(name.ends_with(":2,Sa"), "{name}");
        let keywords = std::fs::read_to_string(maildir.join("dovecot-keywords")).expect("dovecot-keywords");
        assert_eq!(keywords.lines().next(), Some("0 $Forwarded"));
        // Dovecot stores LF line endings (mail_save_crlf = no) and serves CRLF.
        let mut stored = Vec::new();
        std::fs::File::open(&cur[0])
            .expect("open")
            .read_to_end(&mut stored)
            .expect("read");
        assert_eq!(stored, b"From: bob@example.org\nSubject: hello\n\nHi Alice.\n");
        assert!(maildir.join(".Work.Reports").is_dir(), "Maildir++ subfolder");
        assert!(
            dovecot.log().contains("Login: user=<alice@example.test>"),
            "{}",
            dovecot.log()
        );

        if Dovecot::pop3_installed() {
            let pop3 = dovecot.pop3_port().expect("POP3 port when dovecot-pop3d is installed");
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, pop3)).expect("connect POP3");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut writer = stream.try_clone().expect("clone stream");
            let mut reader = BufReader::new(stream);
            let mut exchange = |command: Option<&str>| {
                if let Some(c) = command {
                    write!(writer, "{c}\r\n").expect("write");
                }
                let mut line = String::new();
                reader.read_line(&mut line).expect("read POP3");
                assert!(line.starts_with("+OK"), "{command:?}: {line}");
                line
            };
            exchange(None);
            exchange(Some("USER alice@example.test"));
            exchange(Some("PASS secret"));
            // UIDL of message 1 is its UID and the UIDVALIDITY, 8 hex digits each.
            let uidl = exchange(Some("UIDL 1"));
            let id = uidl.trim_end().rsplit(' ').next().expect("unique id");
            assert!(id.len() == 16 && id.starts_with("00000001"), "{uidl}");
            exchange(Some("QUIT"));
        } else {
            assert_eq!(dovecot.pop3_port(), None);
        }

        drop(dovecot);
        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "port {port} still open after drop"
        );
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn known_users_log_in_with_their_own_password_only() {
        let dovecot = Dovecot::start_with_users(&[("alice@example.test", "pw-a"), ("bob@example.test", "pw-b")])
            .unwrap_or_else(|e| panic!("{e}"));
        let login = |user: &str, password: &str| {
            let mut imap = Imap::connect(dovecot.imap_port());
            let reply = imap.command("a", &format!("LOGIN {user} {password}"));
            reply.last().expect("reply").starts_with("a OK")
        };
        assert!(login("alice@example.test", "pw-a"), "{}", dovecot.log());
        assert!(login("bob@example.test", "pw-b"));
        assert!(!login("alice@example.test", "pw-b"));
        assert!(!login("carol@example.test", "secret"));
    }

    #[test]
    fn fixtures_run_side_by_side_and_stop_keeps_the_maildir() {
        let mut one = Dovecot::start().unwrap_or_else(|e| panic!("{e}"));
        let two = Dovecot::start().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(one.imap_port(), two.imap_port());
        let mut imap = Imap::connect(one.imap_port());
        imap.command("a", "LOGIN carol secret");
        imap.append("b", "INBOX", "", b"Subject: x\r\n\r\ny\r\n");
        imap.command("c", "LOGOUT");
        drop(imap);
        let port = one.imap_port();
        one.stop().expect("stop");
        one.stop().expect("second stop is harmless");
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        assert_eq!(
            files_in(&one.maildir("carol").join("new")).len(),
            1,
            "mail kept after stop"
        );
        Imap::connect(two.imap_port());
    }

    #[test]
    fn lmtp_delivers_to_known_users_only_one_reply_per_recipient() {
        if skip("lmtp_delivers_to_known_users_only_one_reply_per_recipient") {
            return;
        }
        if !Dovecot::lmtp_installed() {
            eprintln!("skipping lmtp_delivers_to_known_users_only_one_reply_per_recipient: no dovecot-lmtpd");
            return;
        }
        let dovecot = Dovecot::builder()
            .users(&[("alice@example.test", "pw-a"), ("bob@example.test", "pw-b")])
            .lmtp(true)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let port = dovecot.lmtp_port().expect("LMTP port");
        assert_ne!(port, dovecot.imap_port());
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to LMTP");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut writer = stream.try_clone().expect("clone stream");
        let mut reader = BufReader::new(stream);
        // One whole reply, continuation lines ("250-") included; returns the last line.
        let mut reply = || {
            let mut line = String::new();
            loop {
                line.clear();
                reader.read_line(&mut line).expect("read from LMTP");
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return line.clone();
                }
            }
        };
        let mut say = |text: &str| writer.write_all(text.as_bytes()).expect("write");
        assert!(reply().starts_with("220 "));
        say("LHLO client.example.test\r\n");
        assert!(reply().starts_with("250 "));
        say("MAIL FROM:<sender@example.org>\r\n");
        assert!(reply().starts_with("250 "));
        say("RCPT TO:<alice@example.test>\r\n");
        assert!(reply().starts_with("250 "), "{}", dovecot.log());
        say("RCPT TO:<carol@example.test>\r\n");
        let unknown = reply();
        assert!(unknown.starts_with("550 "), "{unknown}");
        say("RCPT TO:<bob+lists@example.test>\r\n");
        assert!(reply().starts_with("250 "));
        say("DATA\r\n");
        assert!(reply().starts_with("354 "));
        say("Subject: hi\r\n\r\n..dotted\r\n.\r\n");
        // RFC 2033 §4.2: one reply per accepted recipient.
        for _ in 0..2 {
            let delivered = reply();
            assert!(delivered.starts_with("250 "), "{delivered}\n{}", dovecot.log());
        }
        say("QUIT\r\n");
        assert!(reply().starts_with("221 "));
        for user in ["alice@example.test", "bob@example.test"] {
            let files = files_in(&dovecot.maildir(user).join("new"));
            assert_eq!(files.len(), 1, "{user}: {files:?}");
            let text = std::fs::read_to_string(&files[0]).expect("read the delivered file");
            assert!(text.contains("Subject: hi") && text.contains("\n.dotted"), "{text}");
        }
        // The detail is not a folder.
        assert!(!dovecot.maildir("bob@example.test").join(".lists").exists());
    }

    /// True (after saying so) when this machine cannot run the fixture.
    fn skip(test: &str) -> bool {
        Dovecot::skip_if_missing(test)
    }

    fn small_corpus() -> Vec<CorpusFolder> {
        crate::migration_corpus::mailbox(&crate::migration_corpus::CorpusSpec::small())
    }

    /// Fills `user`'s mailbox with the small corpus, reads it back, and checks that
    /// every folder, byte, flag, keyword and INTERNALDATE instant survived.
    fn round_trip(dovecot: &Dovecot, user: &str) -> (Vec<CorpusFolder>, Snapshot) {
        let corpus = small_corpus();
        dovecot
            .fill(user, &corpus)
            .unwrap_or_else(|e| panic!("fill: {e}\n{}", dovecot.log()));
        let snapshot = dovecot
            .snapshot(user)
            .unwrap_or_else(|e| panic!("snapshot: {e}\n{}", dovecot.log()));
        let differences = imap::diff(&Snapshot::from_corpus(&corpus), &snapshot);
        assert!(differences.is_empty(), "{}", differences.join("\n"));
        (corpus, snapshot)
    }

    /// The untagged lines of one command, as text.
    fn untagged(client: &mut imap::Client<TcpStream>, command: &str) -> Vec<String> {
        let reply = client.ok(command).unwrap_or_else(|e| panic!("{e}"));
        reply.untagged.into_iter().map(|u| u.text).collect()
    }

    #[test]
    fn the_small_corpus_round_trips_through_the_default_fixture() {
        if skip("the_small_corpus_round_trips_through_the_default_fixture") {
            return;
        }
        let dovecot = Dovecot::start().unwrap_or_else(|e| panic!("{e}"));
        let (corpus, snapshot) = round_trip(&dovecot, "alice@example.test");
        assert_eq!(snapshot.message_count(), 120);
        assert_eq!(snapshot.folders.len(), corpus.len());
        // Without special_use the folders are plain ones.
        assert!(snapshot.special_use.is_empty(), "{:?}", snapshot.special_use);
        // Dovecot's maildir keeps the INTERNALDATE's instant (the file's mtime), not
        // its zone: every date comes back in the server's local zone.
        let zones: std::collections::BTreeSet<&str> = snapshot
            .folders
            .values()
            .flatten()
            .filter_map(|m| m.internal_date.rsplit(' ').next())
            .collect();
        assert_eq!(zones.len(), 1, "{zones:?}");

        // On disk: Maildir++ with the folder names in modified UTF-7.
        let maildir = dovecot.maildir("alice@example.test");
        assert!(maildir.join(".K&AOQ-se &- Brot.&ANw-n&AO8-code").is_dir());
        assert!(maildir.join(".Folder With Space").is_dir());
    }

    #[test]
    fn special_use_folders_carry_their_attributes() {
        if skip("special_use_folders_carry_their_attributes") {
            return;
        }
        let dovecot = Dovecot::builder()
            .special_use(true)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let (corpus, snapshot) = round_trip(&dovecot, "bob@example.test");
        assert_eq!(snapshot.special_use, Snapshot::from_corpus(&corpus).special_use);
        let mut client = imap::Client::connect(dovecot.imap_addr()).expect("connect");
        client.login("bob@example.test", Dovecot::PASSWORD).expect("login");
        assert!(client.has_capability("SPECIAL-USE"), "{:?}", client.capabilities());
        // RFC 6154 §2's LIST (SPECIAL-USE) selection option lists only those folders.
        let special = untagged(&mut client, "LIST (SPECIAL-USE) \"\" \"*\"");
        assert_eq!(special.len(), 5, "{special:?}");
        // `auto = no`: a fresh user has none of them until created.
        let mut fresh = imap::Client::connect(dovecot.imap_addr()).expect("connect");
        fresh.login("carol@example.test", Dovecot::PASSWORD).expect("login");
        let listed = untagged(&mut fresh, "LIST \"\" \"*\"");
        assert_eq!(listed.len(), 1, "{listed:?}");
    }

    #[test]
    fn an_inbox_dot_namespace_is_translated_both_ways() {
        if skip("an_inbox_dot_namespace_is_translated_both_ways") {
            return;
        }
        let dovecot = Dovecot::builder()
            .namespace("INBOX.", '.')
            .special_use(true)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let (corpus, snapshot) = round_trip(&dovecot, "dave@example.test");
        // Special-use names in the config are relative to the prefix.
        assert_eq!(snapshot.special_use, Snapshot::from_corpus(&corpus).special_use);

        let mut client = imap::Client::connect(dovecot.imap_addr()).expect("connect");
        client.login("dave@example.test", Dovecot::PASSWORD).expect("login");
        assert_eq!(
            client.namespace().expect("namespace"),
            Namespace {
                prefix: "INBOX.".into(),
                separator: '.'
            }
        );
        let listed = untagged(&mut client, "LIST \"\" \"*\"");
        // Atoms where they can be, quoted strings where a space needs it.
        for wire in [
            "INBOX.Archive.2019",
            "\"INBOX.K&AOQ-se &- Brot.&ANw-n&AO8-code\"",
            "INBOX",
            "INBOX.Sent",
        ] {
            assert!(
                listed.iter().any(|l| l.ends_with(&format!(" {wire}"))),
                "{wire} in {listed:?}"
            );
        }
    }

    #[test]
    fn a_master_user_logs_in_as_anyone_by_login_and_by_sasl() {
        if skip("a_master_user_logs_in_as_anyone_by_login_and_by_sasl") {
            return;
        }
        let dovecot = Dovecot::builder()
            .users(&[("alice@example.test", "alice-pw"), ("bob@example.test", "bob-pw")])
            .master_user("admin", "adminpass")
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let (corpus, _) = round_trip(&dovecot, "alice@example.test");
        let expected = Snapshot::from_corpus(&corpus);

        // LOGIN user*master with the master's password.
        let by_login = imap::snapshot(dovecot.imap_addr(), "alice@example.test*admin", "adminpass")
            .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
        assert_eq!(imap::diff(&expected, &by_login), Vec::<String>::new());

        // SASL PLAIN: authorization identity alice, authentication identity admin.
        let mut client = imap::Client::connect(dovecot.imap_addr()).expect("connect");
        client
            .authenticate_plain("alice@example.test", "admin", "adminpass")
            .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
        let by_sasl = client.snapshot().expect("snapshot");
        assert_eq!(imap::diff(&expected, &by_sasl), Vec::<String>::new());

        // The master's password opens no one's mailbox as themselves, and users keep
        // their own passwords.
        let login = |user: &str, password: &str| {
            let mut client = imap::Client::connect(dovecot.imap_addr()).expect("connect");
            client.login(user, password).is_ok()
        };
        assert!(!login("admin", "adminpass"));
        assert!(!login("alice@example.test*admin", "alice-pw"));
        assert!(!login("alice@example.test", "adminpass"));
        assert!(login("bob@example.test", "bob-pw"));
        let mut client = imap::Client::connect(dovecot.imap_addr()).expect("connect");
        assert!(client.authenticate_plain("", "alice@example.test", "alice-pw").is_ok());
    }

    /// A TLS stream to `port` that trusts only `cert_pem`, for `name`.
    fn tls_stream(port: u16, cert_pem: &str, name: &str) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        use rustls_pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
            roots.add(cert.expect("PEM certificate")).expect("trust anchor");
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_string()).expect("server name");
        let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), server).expect("TLS client");
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        rustls::StreamOwned::new(connection, tcp)
    }

    #[test]
    fn tls_ports_serve_a_certificate_the_client_can_trust() {
        if skip("tls_ports_serve_a_certificate_the_client_can_trust") {
            return;
        }
        let dovecot = Dovecot::builder().tls(true).start().unwrap_or_else(|e| panic!("{e}"));
        let cert = dovecot.cert_pem().expect("certificate").to_string();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        let imaps = dovecot.imaps_port().expect("IMAPS port");
        assert_ne!(imaps, dovecot.imap_port());

        let corpus = small_corpus();
        dovecot.fill("erin@example.test", &corpus).expect("fill");
        let mut client = imap::Client::new(tls_stream(imaps, &cert, "localhost"))
            .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
        client.login("erin@example.test", Dovecot::PASSWORD).expect("login");
        let snapshot = client.snapshot().expect("snapshot");
        assert_eq!(
            imap::diff(&Snapshot::from_corpus(&corpus), &snapshot),
            Vec::<String>::new()
        );
        // The plain port offers STARTTLS now, and still takes plain-text logins.
        let plain = imap::Client::connect(dovecot.imap_addr()).expect("connect");
        assert!(plain.has_capability("STARTTLS"), "{:?}", plain.capabilities());

        if Dovecot::pop3_installed() {
            let pop3s = dovecot.pop3s_port().expect("POP3S port");
            let mut reader = BufReader::new(tls_stream(pop3s, &cert, "127.0.0.1"));
            let mut greeting = String::new();
            reader.read_line(&mut greeting).expect("POP3S greeting");
            assert!(greeting.starts_with("+OK"), "{greeting}");
        } else {
            assert_eq!(dovecot.pop3s_port(), None);
        }
        let without = Dovecot::start().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (without.imaps_port(), without.pop3s_port(), without.cert_pem()),
            (None, None, None)
        );
    }

    #[test]
    fn options_that_would_break_the_config_are_refused() {
        let refused = |options: DovecotOptions| options.start().err().unwrap_or_default();
        assert!(refused(Dovecot::builder().users(&[("a:b", "x")])).contains("':'"));
        assert!(refused(Dovecot::builder().master_user("ad*min", "x")).contains("'*'"));
        assert!(refused(Dovecot::builder().namespace("INBOX", '.')).contains("must end with"));
        assert!(refused(Dovecot::builder().namespace("", '*')).contains("separator"));
        assert!(refused(Dovecot::builder().namespace("My Box/", '/')).contains("prefix"));
    }

    /// The bench corpus (10,000 messages, ~480 MB) through fill and snapshot, timed.
    /// Slow in a debug build; run with
    /// `cargo test -p tern-testkit --release -- --ignored --nocapture bench_corpus`.
    #[test]
    #[ignore]
    fn bench_corpus_fills_and_reads_back() {
        if skip("bench_corpus_fills_and_reads_back") {
            return;
        }
        let started = Instant::now();
        let corpus = crate::migration_corpus::mailbox(&crate::migration_corpus::CorpusSpec::bench());
        let bytes = crate::migration_corpus::total_bytes(&corpus);
        eprintln!("generated {bytes} bytes in {:?}", started.elapsed());
        let dovecot = Dovecot::builder()
            .special_use(true)
            .skip_fsync(true)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        dovecot.fill("bench@example.test", &corpus).expect("fill");
        eprintln!("filled in {:?}", started.elapsed());
        let started = Instant::now();
        let snapshot = dovecot.snapshot("bench@example.test").expect("snapshot");
        eprintln!("snapshot in {:?}", started.elapsed());
        let differences = imap::diff(&Snapshot::from_corpus(&corpus), &snapshot);
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    }
}
