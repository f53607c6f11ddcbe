//! Shared helpers for Tern's benchmarks: disk usage, the machine's description, a
//! minimal blocking IMAP client used only to give the peer (Dovecot) exactly the
//! workload Tern gets (it speaks just enough of RFC 9051 for LOGIN, APPEND
//! (synchronizing and LITERAL+ literals), SELECT, UID FETCH and LOGOUT), an
//! asynchronous one for many concurrent sessions ([`client`]), and Tern run as a
//! separate process ([`tern_process`]). None of this is part of Tern.

pub mod client;
pub mod tern_process;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;

pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    pub fn login(port: u16, user: &str, password: &str) -> Imap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the peer");
        stream.set_nodelay(true).ok();
        let mut imap = Imap {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            tag: 0,
        };
        imap.line(); // greeting
        imap.command(&format!("LOGIN {user} {password}"));
        imap
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("read from the peer");
        assert!(!l.is_empty(), "the peer closed the connection");
        l
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("b{}", self.tag)
    }

    /// Reads until the tagged response; returns the untagged lines.
    fn finish(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            if let Some(rest) = l.strip_prefix(tag) {
                assert!(rest.starts_with(" OK"), "peer said: {l}");
                return lines;
            }
            lines.push(l);
        }
    }

    pub fn command(&mut self, cmd: &str) -> Vec<String> {
        let tag = self.next_tag();
        write!(self.writer, "{tag} {cmd}\r\n").unwrap();
        self.finish(&tag)
    }

    /// One APPEND, waiting for the continuation and the tagged OK: the peer has made
    /// the message durable when this returns.
    pub fn append(&mut self, mailbox: &str, message: &[u8]) {
        let tag = self.next_tag();
        write!(self.writer, "{tag} APPEND {mailbox} {{{}}}\r\n", message.len()).unwrap();
        let cont = self.line();
        assert!(cont.starts_with('+'), "peer said: {cont}");
        self.writer.write_all(message).unwrap();
        self.writer.write_all(b"\r\n").unwrap();
        self.finish(&tag);
    }

    /// Many APPENDs pipelined with LITERAL+ (RFC 7888), for filling a mailbox fast.
    pub fn append_pipelined(&mut self, mailbox: &str, messages: impl Iterator<Item = Vec<u8>>) {
        let mut tags = Vec::new();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, self.writer.try_clone().unwrap());
        for m in messages {
            let tag = self.next_tag();
            write!(out, "{tag} APPEND {mailbox} {{{}+}}\r\n", m.len()).unwrap();
            out.write_all(&m).unwrap();
            out.write_all(b"\r\n").unwrap();
            tags.push(tag);
            if tags.len() >= 500 {
                out.flush().unwrap();
                for t in tags.drain(..) {
                    self.finish(&t);
                }
            }
        }
        out.flush().unwrap();
        for t in tags {
            self.finish(&t);
        }
    }
}

/// Bytes used on disk by everything under `path` (allocated blocks, as `du` counts).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| disk_usage(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.blocks() * 512
    }
}

/// The machine a benchmark ran on, in one line: cores, CPU model, memory, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let field = |path: &str, key: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into())
    };
    let memory = field("/proc/meminfo", "MemTotal")
        .trim_end_matches(" kB")
        .parse::<f64>()
        .map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|_| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let debian = std::fs::read_to_string("/etc/debian_version").unwrap_or_default();
    format!(
        "{cores} cores ({}), {memory} RAM, Linux {}, Debian {}",
        field("/proc/cpuinfo", "model name"),
        kernel.trim(),
        debian.trim()
    )
}

/// The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The first line a command prints, or "?" when it cannot run.
pub fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The median (the mean of the middle two for an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// A rounded number with thousands separators: `12,345`.
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The lines every benchmark starts its report with: the title, the exact command,
/// when, on what machine and file system, and which Tern binary at which commit
/// (`tern_binary` is `None` when Tern is not among the tools run). `data` says what
/// the temporary folders hold.
pub fn print_header(title: &str, bin: &str, data: &str, tern_binary: Option<&Path>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.to_string_lossy();
    let commit = command_output("git", &["-C", &repo, "log", "-1", "--format=%h %s"]);
    let dirty = std::process::Command::new("git")
        .args(["-C", &repo, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count())
        .unwrap_or(0);
    let passed: Vec<String> = std::env::args().skip(1).collect();
    println!("# {title}");
    println!();
    println!(
        "- command: `cargo run --release -p tern-bench --bin {bin} --{}{}`",
        if passed.is_empty() { "" } else { " " },
        passed.join(" ")
    );
    println!("- date: {}", command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    println!("- machine: {}", machine());
    println!(
        "- temporary folders ({data}): {} on {}",
        std::env::temp_dir().display(),
        command_output("sh", &["-c", "df --output=fstype \"${TMPDIR:-/tmp}\" | tail -1"])
    );
    if let Some(b) = tern_binary {
        println!(
            "- Tern: {} ({}), commit {commit}{}",
            b.display(),
            command_output(&b.to_string_lossy(), &["--version"]),
            if dirty > 0 {
                format!(" + {dirty} uncommitted changed files")
            } else {
                String::new()
            }
        );
    }
}
