//! Tern as a real separate process, the way Dovecot runs in its fixture: its own data
//! folder under a temporary directory, set up with the `tern` command line (`init`,
//! `user add`, `import maildir`), served with `tern serve` on ports chosen at run time
//! (IMAP, and the SMTP MX when asked), stopped by its PID. Dropping a [`TernProcess`]
//! stops the server and removes the folder, also when the benchmark panics.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const PORT_ATTEMPTS: usize = 5;
const HOSTNAME: &str = "mail.bench.test";

pub struct TernProcess {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The MX's port, once [`TernProcess::serve_smtp`] asked for it.
    smtp_port: Option<u16>,
    /// TOML tables appended to tern.toml (`[smtp]`, `[dns]`…).
    tables: String,
    max_connections_per_ip: usize,
    child: Option<Child>,
}

impl TernProcess {
    /// The release binary next to this benchmark's own executable (`target/release/`),
    /// unless `explicit` names one.
    pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find this executable: {e}"))?
                .with_file_name("tern"),
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "no Tern binary at {}: build it first with `cargo build --release -p tern` (or pass --tern PATH)",
                path.display()
            ))
        }
    }

    /// A fresh data folder with the domain of `user`, the account `user` with
    /// `password`, a self-signed certificate and a tern.toml that serves only plain
    /// IMAP on loopback. Nothing runs yet.
    pub fn create(
        binary: &Path,
        user: &str,
        password: &str,
        max_connections_per_ip: usize,
    ) -> Result<TernProcess, String> {
        let dir = tempfile::Builder::new()
            .prefix("tern-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder for Tern: {e}"))?;
        let domain = user.rsplit_once('@').map(|(_, d)| d).unwrap_or("bench.test");
        let mut tern = TernProcess {
            binary: binary.to_path_buf(),
            dir,
            port: 0,
            smtp_port: None,
            tables: String::new(),
            max_connections_per_ip,
            child: None,
        };
        // `init` creates the store and the domain and writes a production tern.toml,
        // which write_config replaces with a loopback one.
        tern.cli(&["init", "--domain", domain, "--hostname", HOSTNAME], None)?;
        let tls = tern.dir.path().join("tls");
        std::fs::create_dir_all(&tls).map_err(|e| format!("cannot create {}: {e}", tls.display()))?;
        tern_net::tls::generate_self_signed(HOSTNAME, &tls.join("cert.pem"), &tls.join("key.pem"))
            .map_err(|e| format!("cannot make a certificate for Tern: {e}"))?;
        tern.port = free_port()?;
        tern.write_config()?;
        tern.cli(&["user", "add", user, "--password-stdin"], Some(password))?;
        Ok(tern)
    }

    /// Also serve the SMTP MX on a loopback port ([`TernProcess::smtp_port`]), with
    /// `tables` (whole TOML tables such as `[smtp]` and `[dns]`) added to tern.toml.
    /// Call before [`TernProcess::start`].
    pub fn serve_smtp(&mut self, tables: &str) -> Result<(), String> {
        self.smtp_port = Some(free_port_besides(self.port)?);
        self.tables = tables.to_string();
        self.write_config()
    }

    fn write_config(&self) -> Result<(), String> {
        let (what, smtp) = match self.smtp_port {
            Some(p) => ("plain IMAP and the SMTP MX", format!("smtp = [\"127.0.0.1:{p}\"]\n")),
            None => ("plain IMAP", String::new()),
        };
        let config = format!(
            "# Written by tern-bench: {what} on loopback only.\n\
             hostname = \"{HOSTNAME}\"\n\n\
             [tls]\ncertificate = \"tls/cert.pem\"\nprivate_key = \"tls/key.pem\"\n\n\
             [listen]\nimap = [\"127.0.0.1:{}\"]\n{smtp}\n\
             [auth]\nallow_plaintext = \"loopback\"\n\n\
             [limits]\nmax_connections = 1000\nmax_connections_per_ip = {}\n\n\
             [log]\nlevel = \"info\"\n\n\
             [shutdown]\ngrace_seconds = 2\n{}",
            self.port,
            self.max_connections_per_ip,
            if self.tables.is_empty() {
                String::new()
            } else {
                format!("\n{}", self.tables)
            }
        );
        let path = self.dir.path().join("tern.toml");
        std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Runs `tern --data DIR <args>` to completion; its stdout on success.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        run_cli(&self.binary, self.dir.path(), args, stdin)
    }

    /// Starts `tern serve` and waits for its IMAP greeting.
    pub fn start(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match self.try_start()? {
                Ok(()) => return Ok(()),
                Err(port_taken) => {
                    last = port_taken;
                    self.port = free_port()?;
                    if self.smtp_port.is_some() {
                        self.smtp_port = Some(free_port_besides(self.port)?);
                    }
                    self.write_config()?;
                }
            }
        }
        Err(format!(
            "Tern could not bind a free port in {PORT_ATTEMPTS} attempts: {last}"
        ))
    }

    fn try_start(&mut self) -> Result<Result<(), String>, String> {
        let log = |name: &str| {
            std::fs::File::create(self.dir.path().join(name)).map_err(|e| format!("cannot create Tern's {name}: {e}"))
        };
        let child = Command::new(&self.binary)
            .arg("--data")
            .arg(self.dir.path())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
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
                return Err(format!("Tern did not greet within {START_TIMEOUT:?}: {}", self.log()));
            }
            if let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("* OK") {
                    return Ok(Ok(()));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn imap_port(&self) -> u16 {
        self.port
    }

    /// The MX's port, when [`TernProcess::serve_smtp`] was called.
    pub fn smtp_port(&self) -> Option<u16> {
        self.smtp_port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server wrote to stdout and stderr.
    pub fn log(&self) -> String {
        read_logs(self.dir.path())
    }

    /// SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

/// Stops a Tern process the way an administrator would (SIGTERM, a graceful shutdown),
/// and kills it if it has not exited within STOP_TIMEOUT.
pub fn stop_child(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The server's log files in its folder, stdout then stderr.
pub fn read_logs(dir: &Path) -> String {
    ["stdout.log", "stderr.log"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap_or_default())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

impl Drop for TernProcess {
    fn drop(&mut self) {
        self.stop();
        // The TempDir field removes the folder after this.
    }
}

/// Runs `BINARY --data DIR <args>` to completion, `stdin` (plus a newline) as its
/// input; its stdout on success, everything it said on failure.
pub fn run_cli(binary: &Path, dir: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(binary)
        .arg("--data")
        .arg(dir)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(format!("{input}\n").as_bytes())
            .map_err(|e| format!("cannot write to tern {}: {e}", args.join(" ")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("tern {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`tern {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// A free port other than `taken`.
fn free_port_besides(taken: u16) -> Result<u16, String> {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        if port != taken {
            return Ok(port);
        }
    }
    Err(format!("cannot find a free port on 127.0.0.1 besides {taken}"))
}

/// CPU seconds (user + system) used so far by process `pid` and all its descendants,
/// including descendants that have exited and been waited for (Linux /proc).
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let mut parents: Vec<(u32, u32, u64)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, ticks)) = stat_ticks(&format!("/proc/{p}/stat")) {
                parents.push((p, ppid, ticks));
            }
        }
    }
    let mut tree = vec![pid];
    let mut total = 0u64;
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        for &(child, ppid, ticks) in &parents {
            if child == p {
                total += ticks;
            }
            if ppid == p && !tree.contains(&child) {
                tree.push(child);
            }
        }
        i += 1;
    }
    total as f64 / clock_ticks()
}

/// CPU seconds used so far by this process (every thread).
pub fn own_cpu_seconds() -> f64 {
    stat_ticks("/proc/self/stat").map_or(0.0, |(_, t)| t as f64 / clock_ticks())
}

/// (ppid, utime + stime + cutime + cstime) from a /proc stat file.
fn stat_ticks(path: &str) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks = (11..=14).filter_map(|i| fields.get(i)?.parse::<u64>().ok()).sum();
    Some((ppid, ticks))
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
