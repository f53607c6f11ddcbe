//! A real Dovecot (IMAP, and POP3 when `dovecot-pop3d` is installed) on loopback, for
//! tests and benchmarks: the "old provider" a migration copies from, and a speed
//! reference.
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

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A running Dovecot on 127.0.0.1. Stops and removes its folder on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    imap_port: u16,
    pop3_port: Option<u16>,
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
        Self::launch(None)
    }

    /// Starts a Dovecot that knows exactly these users, each with their own password
    /// (`(user, password)` pairs); any other login fails, as on a real provider.
    pub fn start_with_users(users: &[(&str, &str)]) -> Result<Dovecot, String> {
        for (user, password) in users {
            // passwd-file fields are ':'-separated lines; anything else would corrupt it.
            if user.is_empty() || [user, password].iter().any(|s| s.contains([':', '\n', '\r'])) {
                return Err(format!(
                    "user {user:?}: names and passwords must be non-empty and contain no ':' or newline"
                ));
            }
        }
        Self::launch(Some(users))
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

    fn launch(users: Option<&[(&str, &str)]>) -> Result<Dovecot, String> {
        if !Path::new(DOVECOT).exists() || !Path::new(LIBEXEC).join("imap").exists() {
            return Err(NOT_INSTALLED.to_string());
        }
        let pop3 = Self::pop3_installed();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_launch(users, pop3)? {
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
    fn try_launch(users: Option<&[(&str, &str)]>, pop3: bool) -> Result<Result<Dovecot, String>, String> {
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
        if let Some(users) = users {
            let passwd: String = users.iter().map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n")).collect();
            std::fs::write(root.join("users"), passwd).map_err(|e| io("write the users file", e))?;
            std::fs::set_permissions(root.join("users"), std::fs::Permissions::from_mode(0o644))
                .map_err(|e| io("open up the users file", e))?;
        }

        let ports = free_ports(if pop3 { 2 } else { 1 })?;
        let (imap_port, pop3_port) = (ports[0], ports.get(1).copied());
        let identity = Identity::current()?;
        let config = config(&root, &identity, imap_port, pop3_port, users.is_some());
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
            master: Some(master),
        };

        let deadline = Instant::now() + START_TIMEOUT;
        let mut waits = vec![(imap_port, "* OK")];
        if let Some(p) = pop3_port {
            waits.push((p, "+OK"));
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

/// The whole dovecot.conf: nothing from /etc/dovecot is read.
fn config(root: &Path, who: &Identity, imap_port: u16, pop3_port: Option<u16>, passwd_file: bool) -> String {
    let d = root.display();
    let protocols = if pop3_port.is_some() { "imap pop3" } else { "imap" };
    // Without root, login processes and anvil cannot chroot; with root it is not
    // needed on loopback either, so keep one config shape.
    let no_chroot = "  chroot =\n";
    let passdb = if passwd_file {
        format!("passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/users\n}}\n")
    } else {
        format!(
            "passdb {{\n  driver = static\n  args = password={}\n}}\n",
            Dovecot::PASSWORD
        )
    };
    let mut c = format!(
        "# Written by tern-testkit's Dovecot fixture.
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log
ssl = no
listen = 127.0.0.1
first_valid_uid = 1
default_internal_user = {iu}
default_internal_group = {ig}
default_login_user = {lu}
mail_uid = {mu}
mail_gid = {mg}
mail_location = maildir:~/Maildir
protocols = {protocols}
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong password is answered at once, not after the default 2 s, so tests of
# failed logins stay fast.
auth_failure_delay = 0
pop3_uidl_format = %08Xu%08Xv
# Clients name folders Work/Reports; on disk they stay Maildir++ `.Work.Reports`.
namespace inbox {{
  inbox = yes
  separator = /
}}
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
    port = 0
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
    );
    if let Some(port) = pop3_port {
        c.push_str(&format!(
            "service pop3-login {{\n{no_chroot}  inet_listener pop3 {{\n    port = {port}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n"
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

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
}
