//! Migration benchmark (migration issue): the same generated mailbox copied out of a
//! Dovecot by three tools, side by side, in one run:
//!
//! - **Tern**: `tern migrate start --pass full` then `tern migrate run`, its own process
//!   and data folder, set up with its command line as an administrator would;
//! - **mbsync** (Debian isync): `mbsync -c RC -a`, a pull-only channel from the IMAP
//!   account into a Maildir (`Create Near`, `Sync Pull`, `CopyArrivalDate yes`);
//! - **doveadm** (Debian dovecot-core): `doveadm sync -1 -R -u alice imapc:`, Dovecot's
//!   own migration tool, writing into the maildir of a second Dovecot (the one its
//!   `-c` configuration belongs to), which then serves the copy for checking.
//!
//! The source is a `tern_testkit` Dovecot filled with `migration_corpus` (by default
//! `CorpusSpec::bench()`: 10,000 messages, about 480 MB, 13 folders, flags, keywords and
//! INTERNALDATEs). For each tool the benchmark prints wall time (process start to exit),
//! messages/s, MB/s, peak memory (VmHWM from /proc, polled every 10 ms, summed over the
//! tool's process tree; the largest anonymous share beside it), the time it held a
//! connection to the source (first to last 10 ms sample that saw one established), CPU,
//! and fidelity: every copied message compared with what the source serves (bytes,
//! system flags, keywords, INTERNALDATE). Tern's copy is read from its store after it
//! exited, mbsync's from its Maildir files, doveadm's over IMAP from the Dovecot that
//! owns its maildir; Tern's and doveadm's also go through `tern_testkit::imap::diff`,
//! and Tern's through `tern migrate verify`.
//!
//! Then the delta cases, `--repeat` rounds each: a delta with nothing new, with 100 new
//! messages at the source (spread over the folders), and with flag changes on 500
//! messages at the source (`STORE +FLAGS.SILENT (\Flagged $Bench<round>)`, the biggest
//! folder first, other messages each round; \Flagged rather than \Seen so that nearly
//! all 500 change for mbsync too, which drops keywords). Each tool runs once per case and
//! round, after the change; the copies are not reset in between. Tern's
//! figure is the pass duration it records (`progress.duration_ms`), beside the wall time
//! of `tern migrate run`; mbsync and doveadm are run again the same way as a reference.
//! Last, every copy is compared with the source once more.
//!
//! Run: `cargo build --release -p tern && cargo run --release -p tern-bench --bin migration`
//! (options: --small, --messages N, --repeat N, --connections N, --tools tern,mbsync,doveadm).
//! It needs Dovecot, isync and doveadm (`apt-get install dovecot-imapd isync`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use tern_bench::tern_process::{TernProcess, tree_cpu_seconds};
use tern_bench::{command_output, disk_usage, load_average, median, thousands};
use tern_store::{EmbeddedStore, Store};
use tern_testkit::dovecot::Dovecot;
use tern_testkit::imap::{self, Namespace, Snapshot, SnapshotMessage};
use tern_testkit::migration_corpus::{self, CorpusFolder, CorpusSpec, imap_date_time};

#[derive(Parser)]
struct Args {
    /// Messages in the generated mailbox, in 13 folders with 3 in 1,000 large (default:
    /// the bench corpus, 10,000 messages of about 480 MB).
    #[arg(long, conflicts_with = "small", value_parser = clap::value_parser!(u64).range(13..))]
    messages: Option<u64>,
    /// The small corpus (120 messages in 10 folders, about 5 MB), for a quick try.
    #[arg(long)]
    small: bool,
    /// Rounds of each delta case (the median is shown).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
    repeat: u64,
    /// Tern's IMAP connections per mailbox (`migrate source add --connections`);
    /// Tern's default when not given.
    #[arg(long)]
    connections: Option<usize>,
    /// The tools to run.
    #[arg(long, value_delimiter = ',', default_values_t = [Tool::Tern, Tool::Mbsync, Tool::Doveadm])]
    tools: Vec<Tool>,
    /// The Tern binary (default: `tern` beside this benchmark, i.e. target/release/tern).
    #[arg(long)]
    tern: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Tool {
    Tern,
    Mbsync,
    Doveadm,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Tern => "Tern",
            Tool::Mbsync => "mbsync",
            Tool::Doveadm => "doveadm",
        }
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name().to_ascii_lowercase())
    }
}

/// The mailbox's owner at the source (and in the doveadm copy's Dovecot).
const REMOTE_USER: &str = "alice";
const REMOTE_PASSWORD: &str = "old-Secret-2026";
/// The account in Tern.
const ADDRESS: &str = "alice@example.test";
const TERN_PASSWORD: &str = "tern-Secret-2026";

/// How often a running tool's memory is sampled.
const MEMORY_POLL: Duration = Duration::from_millis(10);
/// Messages added at the source before each "100 new" delta.
const NEW_MESSAGES: usize = 100;
/// Messages whose flags change at the source before each "flag changes" delta.
const FLAG_CHANGES: usize = 500;

/// The targets.
const TARGET_DELTA_NOTHING: f64 = 0.1;
const TARGET_DELTA_NEW: f64 = 0.3;
const TARGET_DELTA_FLAGS: f64 = 0.3;
const TARGET_PEAK_MB: f64 = 100.0;

/// One run of a tool as a process.
#[derive(Clone, Debug, Default)]
struct Run {
    /// Process start to exit, seconds.
    wall: f64,
    /// Peak resident memory (VmHWM, summed over the process tree), KiB.
    peak_kb: u64,
    /// The most anonymous memory (RssAnon: heap and stacks, no mapped files) seen in a
    /// sample, KiB.
    peak_anon_kb: u64,
    /// From the first sample that saw an established connection to the source to the
    /// last one, seconds (±10 ms): the copying itself, without process start and exit.
    connected: f64,
    /// User + system CPU of the tool's processes, seconds.
    cpu: f64,
    /// CPU the source Dovecot (master and all its children) used meanwhile, seconds.
    source_cpu: f64,
}

/// What a source is, for [`measure`]: its port (connections to it are watched) and
/// its master's PID (its CPU is counted).
#[derive(Clone, Copy)]
struct SourceIds {
    port: u16,
    pid: u32,
}

/// Runs `cmd` to its end, measuring it. Its output goes to `logs/<name>.out|.err`; a
/// failure is fatal, with the end of its error output.
fn measure(mut cmd: Command, logs: &Path, name: &str, source: SourceIds) -> Run {
    // Earlier runs' writes must not be flushed on this run's time.
    let _ = Command::new("sync").status();
    let out = logs.join(format!("{name}.out"));
    let err = logs.join(format!("{name}.err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out).expect("create a log file"))
        .stderr(File::create(&err).expect("create a log file"));
    let cpu_before = waited_children_cpu();
    let source_before = tree_cpu_seconds(source.pid);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start {:?}: {e}", cmd.get_program()));
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = Memory::default();
            let (mut first, mut last) = (None, None);
            while !done.load(Ordering::Relaxed) {
                let now = tree_memory(pid);
                peak.hwm = peak.hwm.max(now.hwm);
                peak.anon = peak.anon.max(now.anon);
                if connected_to(source.port) {
                    let at = started.elapsed().as_secs_f64();
                    first.get_or_insert(at);
                    last = Some(at);
                }
                std::thread::sleep(MEMORY_POLL);
            }
            (peak, first.zip(last).map_or(0.0, |(a, b)| b - a))
        })
    };
    // The main thread only waits, so the wall time is exact.
    let status = child.wait().expect("wait for the tool");
    let wall = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (peak, connected) = sampler.join().expect("the sampling thread");
    let run = Run {
        wall,
        peak_kb: peak.hwm,
        peak_anon_kb: peak.anon,
        connected,
        cpu: waited_children_cpu() - cpu_before,
        source_cpu: tree_cpu_seconds(source.pid) - source_before,
    };
    if !status.success() {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("{name} failed ({status}):\n{}", tail.join("\n"));
    }
    run
}

/// Memory of a process tree, KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    /// Peak resident set so far (VmHWM).
    hwm: u64,
    /// Anonymous resident memory now (RssAnon).
    anon: u64,
}

/// Memory of `pid` and its descendants, summed.
fn tree_memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut m = Memory {
        hwm: field("VmHWM:"),
        anon: field("RssAnon:"),
    };
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                let c = tree_memory(child);
                m.hwm += c.hwm;
                m.anon += c.anon;
            }
        }
    }
    m
}

/// Whether any established IPv4 TCP connection goes to 127.0.0.1:`port` (only the tool
/// under test connects to the source while it runs).
fn connected_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(2);
        // rem_address, then st; 01 is ESTABLISHED.
        fields.next() == Some(remote.as_str()) && fields.next() == Some("01")
    })
}

/// CPU seconds of this process's children that have been waited for (cutime + cstime).
fn waited_children_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(close) = text.rfind(')') else { return 0.0 };
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    command_output("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0)
}

// --- Tern -------------------------------------------------------------------------

/// What `tern migrate status --json` says about the last pass.
#[derive(Clone, Debug, Default)]
struct PassReport {
    phase: String,
    duration_ms: u64,
    pass_copied: u64,
    flag_updates: u64,
    copied_bytes: u64,
    errors: u64,
}

struct TernSide {
    process: TernProcess,
    binary: PathBuf,
}

impl TernSide {
    fn setup(binary: &Path, source_port: u16, connections: Option<usize>) -> TernSide {
        let process = TernProcess::create(binary, ADDRESS, TERN_PASSWORD, 10).unwrap_or_else(|e| panic!("{e}"));
        let port = source_port.to_string();
        let mut add = vec![
            "migrate",
            "source",
            "add",
            "old",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--tls",
            "none",
        ];
        let n = connections.map(|n| n.to_string());
        if let Some(n) = &n {
            add.extend(["--connections", n]);
        }
        let side = TernSide {
            process,
            binary: binary.to_path_buf(),
        };
        side.cli(&add, None);
        side.cli(
            &[
                "migrate",
                "add",
                "--source",
                "old",
                "--user",
                ADDRESS,
                "--remote-user",
                REMOTE_USER,
                "--password-stdin",
            ],
            Some(REMOTE_PASSWORD),
        );
        side
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.process.cli(args, stdin).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asks for a pass (untimed) and times `tern migrate run`, which runs it and exits.
    fn pass(&self, pass: &str, logs: &Path, name: &str, source: SourceIds) -> (Run, PassReport) {
        self.cli(&["migrate", "start", "--pass", pass], None);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--data").arg(self.process.dir()).args(["migrate", "run"]);
        let run = measure(cmd, logs, name, source);
        let status = self.cli(&["migrate", "status", "--json"], None);
        let first = |key: &str| json_numbers(&status, key).first().copied().unwrap_or(0);
        let report = PassReport {
            phase: json_string(&status, "phase").unwrap_or_default(),
            duration_ms: first("duration_ms"),
            pass_copied: first("pass_copied"),
            flag_updates: first("flag_updates"),
            copied_bytes: first("copied_bytes"),
            // The progress's own count comes before the folders' ones.
            errors: first("errors"),
        };
        if report.phase != "passed" || report.errors > 0 {
            panic!("Tern's {pass} pass did not pass cleanly: {status}");
        }
        (run, report)
    }

    /// Times `tern migrate run` with nothing queued: process start, store open, one
    /// look at the migrations, exit. What every pass's wall time includes.
    fn idle(&self, logs: &Path, name: &str, source: SourceIds) -> Run {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--data").arg(self.process.dir()).args(["migrate", "run"]);
        measure(cmd, logs, name, source)
    }

    /// `tern migrate verify --json`, summed over folders: (source messages, Tern
    /// messages, missing, flags differ, dates differ, extra in Tern).
    fn verify(&self) -> [u64; 6] {
        let out = self.cli(&["migrate", "verify", ADDRESS, "--json"], None);
        let sum = |key: &str| json_numbers(&out, key).iter().sum::<u64>();
        [
            sum("source_messages"),
            sum("tern_messages"),
            sum("missing"),
            sum("flags_differ"),
            sum("dates_differ"),
            sum("extra_in_tern"),
        ]
    }

    /// What Tern holds, read straight from its store (Tern is not running), in the
    /// snapshot shape; empty folders left out.
    fn snapshot(&self) -> Snapshot {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let store = EmbeddedStore::open(&self.process.dir().join("store")).expect("open Tern's store");
            let account = store.account(ADDRESS).await.expect("Tern's account").id;
            tern_testkit::imap::store_snapshot(&store, account)
                .await
                .expect("read Tern's store")
        })
    }

    fn disk(&self) -> u64 {
        disk_usage(&self.process.dir().join("store"))
    }
}

/// Every number after `"key":` in a JSON text, in order (Tern's status and verify
/// output; only unsigned integers are asked for).
fn json_numbers(text: &str, key: &str) -> Vec<u64> {
    let pattern = format!("\"{key}\":");
    text.match_indices(&pattern)
        .filter_map(|(at, _)| {
            let rest = text[at + pattern.len()..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The first string after `"key":` in a JSON text.
fn json_string(text: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\":");
    let at = text.find(&pattern)?;
    let rest = text[at + pattern.len()..].trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

// --- mbsync -------------------------------------------------------------------------

struct MbsyncSide {
    dir: tempfile::TempDir,
}

impl MbsyncSide {
    fn setup(source_port: u16) -> MbsyncSide {
        let dir = tempfile::Builder::new()
            .prefix("tern-bench-mbsync-")
            .tempdir()
            .expect("a folder for mbsync");
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).expect("create the maildir root");
        let rc = format!(
            "# Written by tern-bench migration: pull everything, change nothing at the source.\n\
             IMAPAccount old\nHost 127.0.0.1\nPort {source_port}\nUser {REMOTE_USER}\nPass {REMOTE_PASSWORD}\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore old-remote\nAccount old\n\n\
             MaildirStore local\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\n\
             Channel migrate\nFar :old-remote:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\n\
             CopyArrivalDate yes\nSyncState *\n",
            m = mail.display()
        );
        std::fs::write(dir.path().join("mbsyncrc"), rc).expect("write mbsyncrc");
        MbsyncSide { dir }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("mbsync");
        cmd.arg("-c").arg(self.dir.path().join("mbsyncrc")).arg("-a");
        cmd
    }

    fn mail(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The Maildir tree read back: a folder per directory with `cur/` (names decoded
    /// from modified UTF-7, which mbsync 1.4 keeps on disk), flags from the info
    /// suffix, INTERNALDATE from the file time (CopyArrivalDate), the file's bytes as
    /// they are.
    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let root = self.mail();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let mut messages = Vec::new();
            let mut is_folder = false;
            for entry in std::fs::read_dir(&dir).expect("read the maildir").flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if !path.is_dir() {
                    continue;
                }
                match name.as_str() {
                    "cur" | "new" => {
                        is_folder = true;
                        for file in std::fs::read_dir(&path).expect("read cur/new").flatten() {
                            messages.push(maildir_message(&file.path()));
                        }
                    }
                    "tmp" => is_folder = true,
                    _ => stack.push(path),
                }
            }
            if !is_folder || messages.is_empty() {
                continue;
            }
            let relative = dir.strip_prefix(&root).expect("under the root");
            let name: Vec<String> = relative
                .iter()
                .map(|c| {
                    let c = c.to_string_lossy();
                    tern_store::utf7::decode(&c).unwrap_or_else(|| c.into_owned())
                })
                .collect();
            messages.sort_by_key(|m| m.uid);
            snapshot.folders.insert(name.join("/"), messages);
        }
        snapshot
    }
}

/// A Maildir file as a message: `…,U=<uid>:2,<info>`.
fn maildir_message(path: &Path) -> SnapshotMessage {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let (base, info) = name.split_once(":2,").unwrap_or((&name, ""));
    let uid = base
        .split(',')
        .find_map(|p| p.strip_prefix("U="))
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let mut flags = Vec::new();
    let mut keywords = Vec::new();
    for letter in info.chars() {
        match letter {
            'D' => flags.push("\\Draft".to_string()),
            'F' => flags.push("\\Flagged".to_string()),
            'R' => flags.push("\\Answered".to_string()),
            'S' => flags.push("\\Seen".to_string()),
            'T' => flags.push("\\Deleted".to_string()),
            // isync's "passed" flag is IMAP's $Forwarded.
            'P' => keywords.push("$Forwarded".to_string()),
            other => keywords.push(format!("(maildir letter {other})")),
        }
    }
    flags.sort();
    keywords.sort();
    let meta = std::fs::metadata(path).expect("stat a maildir file");
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    SnapshotMessage {
        uid,
        flags,
        keywords,
        internal_date: imap_date_time(mtime, 0),
        raw: std::fs::read(path).expect("read a maildir file"),
    }
}

/// Undoes what mbsync does to every message it stores: CRLF written as LF (Maildir's
/// convention) and an `X-TUID:` header field added at the end of the header.
fn undo_mbsync(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    let head_end = find(&out, b"\r\n\r\n").map_or(out.len(), |e| e + 2);
    let start = if out.starts_with(b"X-TUID: ") {
        Some(0)
    } else {
        find(&out[..head_end], b"\r\nX-TUID: ").map(|at| at + 2)
    };
    if let Some(start) = start
        && let Some(len) = find(&out[start..], b"\r\n")
    {
        out.drain(start..start + len + 2);
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// --- doveadm ------------------------------------------------------------------------

struct DoveadmSide {
    /// The Dovecot whose configuration doveadm runs with, and whose user's maildir
    /// receives the copy; it serves the copy for checking.
    target: Dovecot,
    source_port: u16,
}

impl DoveadmSide {
    fn setup(source_port: u16) -> DoveadmSide {
        // Dovecot's default mail_fsync (optimized): the copy is durable, as Tern's is.
        let target = Dovecot::builder()
            .users(&[(REMOTE_USER, REMOTE_PASSWORD)])
            .special_use(true)
            .start()
            .unwrap_or_else(|e| panic!("the doveadm target Dovecot: {e}"));
        DoveadmSide { target, source_port }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec!["-c".to_string(), self.target.config_path().display().to_string()];
        for setting in [
            "imapc_host=127.0.0.1".to_string(),
            format!("imapc_port={}", self.source_port),
            format!("imapc_user={REMOTE_USER}"),
            format!("imapc_password={REMOTE_PASSWORD}"),
            "imapc_features=rfc822.size fetch-headers modseq".to_string(),
            "mail_prefetch_count=20".to_string(),
        ] {
            args.push("-o".into());
            args.push(setting);
        }
        args.extend(["sync", "-1", "-R", "-u", REMOTE_USER, "imapc:"].map(String::from));
        args
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("doveadm");
        cmd.args(self.args());
        cmd
    }

    fn shown_command(&self) -> String {
        self.args()
            .iter()
            .map(|a| {
                let a = a.replace(REMOTE_PASSWORD, "PW");
                if a.contains(' ') { format!("'{a}'") } else { a }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn snapshot(&self) -> Snapshot {
        self.target.snapshot(REMOTE_USER).expect("snapshot the doveadm copy")
    }

    fn disk(&self) -> u64 {
        disk_usage(&self.target.maildir(REMOTE_USER))
    }
}

// --- Fidelity -----------------------------------------------------------------------

/// Undoes a tool's known rewrite of every message it stores.
type Undo = fn(&[u8]) -> Vec<u8>;

/// How a copy compares with the source, message by message. Messages are matched per
/// folder by their bytes (after `undo`, for a tool known to rewrite every message);
/// flags, keywords and dates are compared between matched messages.
#[derive(Debug, Default)]
struct Fidelity {
    source: usize,
    copy: usize,
    matched: usize,
    byte_identical: usize,
    flags_equal: usize,
    keywords_equal: usize,
    dates_equal: usize,
    /// A few examples of each kind of difference.
    examples: Vec<String>,
}

impl Fidelity {
    fn compare(source: &Snapshot, copy: &Snapshot, undo: Option<Undo>) -> Fidelity {
        let mut f = Fidelity::default();
        let mut shown: HashMap<&'static str, usize> = HashMap::new();
        let mut example = |f: &mut Fidelity, kind: &'static str, text: String| {
            // The corpus has exact copies, which differ the same way.
            if f.examples.contains(&text) {
                return;
            }
            let n = shown.entry(kind).or_default();
            *n += 1;
            if *n <= 2 {
                f.examples.push(text);
            }
        };
        for (name, messages) in source.folders.iter().filter(|(_, m)| !m.is_empty()) {
            f.source += messages.len();
            let mut by_bytes: HashMap<&[u8], Vec<&SnapshotMessage>> = HashMap::new();
            for m in messages {
                by_bytes.entry(&m.raw[..]).or_default().push(m);
            }
            let Some(copied) = copy.folders.get(name) else {
                example(
                    &mut f,
                    "folder",
                    format!("folder {name:?} is missing ({} messages)", messages.len()),
                );
                continue;
            };
            for got in copied {
                f.copy += 1;
                let undone = undo.map(|u| u(&got.raw));
                let key = undone.as_deref().unwrap_or(&got.raw);
                let Some(candidates) = by_bytes.get_mut(key).filter(|c| !c.is_empty()) else {
                    example(
                        &mut f,
                        "unmatched",
                        format!("{name:?}: {} matches no source message", got.describe()),
                    );
                    continue;
                };
                // Among equal bytes (the corpus has exact copies), prefer equal metadata.
                let at = candidates
                    .iter()
                    .position(|w| w.flags == got.flags && w.keywords == got.keywords)
                    .unwrap_or(candidates.len() - 1);
                let want = candidates.swap_remove(at);
                f.matched += 1;
                f.byte_identical += (got.raw == want.raw) as usize;
                if got.flags == want.flags {
                    f.flags_equal += 1;
                } else {
                    example(
                        &mut f,
                        "flags",
                        format!(
                            "{name:?} {}: flags {:?}, source {:?}",
                            want.describe(),
                            got.flags,
                            want.flags
                        ),
                    );
                }
                if got.keywords == want.keywords {
                    f.keywords_equal += 1;
                } else {
                    example(
                        &mut f,
                        "keywords",
                        format!(
                            "{name:?} {}: keywords {:?}, source {:?}",
                            want.describe(),
                            got.keywords,
                            want.keywords
                        ),
                    );
                }
                if got.internal_instant() == want.internal_instant() {
                    f.dates_equal += 1;
                } else {
                    example(
                        &mut f,
                        "dates",
                        format!(
                            "{name:?} {}: INTERNALDATE {}, source {}",
                            want.describe(),
                            got.internal_date,
                            want.internal_date
                        ),
                    );
                }
            }
        }
        for (name, copied) in &copy.folders {
            if !copied.is_empty() && source.folders.get(name).is_none_or(Vec::is_empty) {
                f.copy += copied.len();
                example(
                    &mut f,
                    "extra",
                    format!("folder {name:?} is not at the source ({} messages)", copied.len()),
                );
            }
        }
        f
    }

    /// Everything copied, matched, byte-identical, with the same flags, keywords, dates.
    fn perfect(&self) -> bool {
        [
            self.copy,
            self.matched,
            self.byte_identical,
            self.flags_equal,
            self.keywords_equal,
            self.dates_equal,
        ]
        .iter()
        .all(|&n| n == self.source)
    }

    fn cell(&self, n: usize) -> String {
        if n == self.source {
            format!("yes ({})", thousands(n as f64))
        } else {
            format!("**no**: {} of {}", thousands(n as f64), thousands(self.source as f64))
        }
    }
}

/// Source folders with no messages are left out, as the copies' snapshots do.
fn without_empty(s: &Snapshot) -> Snapshot {
    let mut s = s.clone();
    s.folders.retain(|_, m| !m.is_empty());
    s
}

// --- Source changes for the delta cases ---------------------------------------------

/// `count` new messages (their own seed, so no Message-ID repeats the mailbox's) spread
/// over the mailbox's folders as the corpus spreads them.
fn new_messages(spec: &CorpusSpec, round: u64, count: usize) -> Vec<CorpusFolder> {
    migration_corpus::mailbox(&CorpusSpec {
        seed: spec.seed * 1000 + 100 + round,
        messages: count,
        folders: spec.folders,
        large_messages: 0,
        ..spec.clone()
    })
}

/// Adds \Flagged and a new keyword to `count` messages at the source, skipping the
/// first `offset` ones, folder after folder (the biggest first). Returns the folders
/// and sequence ranges touched.
fn change_flags(
    dovecot: &Dovecot,
    folders: &[(String, usize)],
    offset: usize,
    count: usize,
    keyword: &str,
) -> Vec<String> {
    let mut client = imap::Client::connect(dovecot.imap_addr()).expect("connect to the source");
    client
        .login(REMOTE_USER, REMOTE_PASSWORD)
        .expect("log in at the source");
    let namespace = Namespace::default();
    let (mut skip, mut left) = (offset, count);
    let mut touched = Vec::new();
    for (name, size) in folders {
        if left == 0 {
            break;
        }
        if skip >= *size {
            skip -= size;
            continue;
        }
        let first = skip + 1;
        let last = (skip + left).min(*size);
        skip = 0;
        let wire = namespace.wire_name(name).expect("a folder name");
        client.ok(&format!("SELECT \"{wire}\"")).expect("SELECT at the source");
        client
            .ok(&format!("STORE {first}:{last} +FLAGS.SILENT (\\Flagged {keyword})"))
            .expect("STORE at the source");
        left -= last + 1 - first;
        touched.push(format!("{name} {first}:{last}"));
    }
    client.logout();
    assert_eq!(left, 0, "the mailbox has fewer than {count} messages past {offset}");
    touched
}

// --- Reporting ----------------------------------------------------------------------

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// Median, with the range when there are several runs.
fn spread(v: &[f64]) -> String {
    let m = seconds(median(v));
    if v.len() < 2 {
        return m;
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{m} ({}–{})", seconds(lo), seconds(hi))
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**PASS**" } else { "**FAIL**" }
}

fn master_pid(dovecot: &Dovecot) -> u32 {
    std::fs::read_to_string(dovecot.dir().join("run").join("master.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("Dovecot's master.pid")
}

/// One delta round's results for one case.
#[derive(Default)]
struct DeltaRuns {
    /// Tern's own record of each pass, seconds.
    tern_pass: Vec<f64>,
    tern: Vec<Run>,
    /// What each Tern pass reported doing.
    tern_counts: Vec<String>,
    mbsync: Vec<Run>,
    doveadm: Vec<Run>,
}

/// Median (min–max) of one measure over runs, or a dash without runs.
fn over(runs: &[Run], measure: impl Fn(&Run) -> f64) -> String {
    if runs.is_empty() {
        return "—".into();
    }
    spread(&runs.iter().map(measure).collect::<Vec<_>>())
}

fn main() {
    let args = Args::parse();
    let uses = |t: Tool| args.tools.contains(&t);
    let spec = if args.small {
        CorpusSpec::small()
    } else if let Some(n) = args.messages {
        let n = n as usize;
        CorpusSpec {
            messages: n,
            large_messages: (n * 3).div_ceil(1000),
            ..CorpusSpec::bench()
        }
    } else {
        CorpusSpec::bench()
    };
    let tern_binary =
        uses(Tool::Tern).then(|| TernProcess::find_binary(args.tern.as_deref()).unwrap_or_else(|e| panic!("{e}")));
    tern_bench::print_header(
        "Migration benchmark: Tern vs mbsync vs doveadm sync, from Dovecot",
        "migration",
        "source, copies",
        tern_binary.as_deref(),
    );
    println!(
        "- peers: {}, Dovecot {} (source, doveadm and the doveadm copy's server)",
        command_output("mbsync", &["--version"]),
        command_output("dovecot", &["--version"])
    );
    println!("- load average at start: {}", load_average());
    println!(
        "- peak memory: VmHWM from /proc/<pid>/status, sampled every {} ms over the tool's process tree",
        MEMORY_POLL.as_millis()
    );
    println!();

    // The source.
    let t = Instant::now();
    let corpus = migration_corpus::mailbox(&spec);
    let total_bytes = migration_corpus::total_bytes(&corpus) as u64;
    let total_messages: usize = corpus.iter().map(|f| f.messages.len()).sum();
    println!(
        "Mailbox: {} messages, {:.1} MB, {} folders (seed {}), generated in {:.1} s.",
        thousands(total_messages as f64),
        total_bytes as f64 / 1e6,
        corpus.len(),
        spec.seed,
        t.elapsed().as_secs_f64()
    );
    let source = Dovecot::builder()
        .users(&[(REMOTE_USER, REMOTE_PASSWORD)])
        .special_use(true)
        .skip_fsync(true)
        .start()
        .unwrap_or_else(|e| panic!("the source Dovecot: {e}"));
    let t = Instant::now();
    source.fill(REMOTE_USER, &corpus).expect("fill the source");
    drop(corpus);
    println!("Source Dovecot filled over IMAP in {:.1} s.", t.elapsed().as_secs_f64());
    let port = source.imap_port();
    let ids = SourceIds {
        port,
        pid: master_pid(&source),
    };
    let t = Instant::now();
    let before = source.snapshot(REMOTE_USER).expect("snapshot the source");
    println!(
        "Source snapshot (every message over IMAP, which also warms Dovecot's caches): {:.1} s.",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(before.message_count(), total_messages, "the source holds another count");
    let mut by_size: Vec<(String, usize)> = before.folders.iter().map(|(n, m)| (n.clone(), m.len())).collect();
    by_size.sort_by_key(|(_, n)| std::cmp::Reverse(*n));

    let logs = tempfile::Builder::new()
        .prefix("tern-bench-migration-logs-")
        .tempdir()
        .expect("a folder for logs");
    let tern = tern_binary
        .as_deref()
        .map(|b| TernSide::setup(b, port, args.connections));
    let mbsync = uses(Tool::Mbsync).then(|| MbsyncSide::setup(port));
    let doveadm = uses(Tool::Doveadm).then(|| DoveadmSide::setup(port));
    if let Some(m) = &mbsync {
        println!("mbsync: `mbsync -c {} -a`", m.dir.path().join("mbsyncrc").display());
    }
    if let Some(d) = &doveadm {
        println!("doveadm: `doveadm {}`", d.shown_command());
    }
    println!();

    // Full pass.
    let mut full: BTreeMap<&'static str, Run> = BTreeMap::new();
    let mut tern_full = PassReport::default();
    let mut tern_peak_kb = 0u64;
    if let Some(tern) = &tern {
        let (run, report) = tern.pass("full", logs.path(), "tern-full", ids);
        println!(
            "Tern full pass: {:.2} s wall, pass {:.2} s, {} copied, {:.1} MB.",
            run.wall,
            report.duration_ms as f64 / 1000.0,
            report.pass_copied,
            report.copied_bytes as f64 / 1e6
        );
        assert_eq!(report.pass_copied, total_messages as u64, "Tern copied another count");
        tern_peak_kb = run.peak_kb;
        tern_full = report;
        full.insert("Tern", run);
    }
    if let Some(m) = &mbsync {
        let run = measure(m.command(), logs.path(), "mbsync-full", ids);
        println!("mbsync full: {:.2} s wall.", run.wall);
        full.insert("mbsync", run);
    }
    if let Some(d) = &doveadm {
        let run = measure(d.command(), logs.path(), "doveadm-full", ids);
        println!("doveadm full: {:.2} s wall.", run.wall);
        full.insert("doveadm", run);
    }

    // Fidelity after the full pass.
    let mut fidelity: BTreeMap<&'static str, (Fidelity, u64)> = BTreeMap::new();
    let mut tern_verify = [0u64; 6];
    let mut testkit_diff: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let check = |fidelity: &mut BTreeMap<&'static str, (Fidelity, u64)>,
                 testkit_diff: &mut BTreeMap<&'static str, Vec<String>>,
                 source: &Snapshot| {
        let source_all = without_empty(source);
        if let Some(tern) = &tern {
            let copy = tern.snapshot();
            testkit_diff.insert("Tern", imap::diff(&source_all, &without_empty(&copy)));
            fidelity.insert("Tern", (Fidelity::compare(source, &copy, None), tern.disk()));
        }
        if let Some(m) = &mbsync {
            let copy = m.snapshot();
            fidelity.insert(
                "mbsync",
                (
                    Fidelity::compare(source, &copy, Some(undo_mbsync)),
                    disk_usage(&m.mail()),
                ),
            );
        }
        if let Some(d) = &doveadm {
            let copy = d.snapshot();
            testkit_diff.insert("doveadm", imap::diff(&source_all, &without_empty(&copy)));
            fidelity.insert("doveadm", (Fidelity::compare(source, &copy, None), d.disk()));
        }
    };
    let t = Instant::now();
    check(&mut fidelity, &mut testkit_diff, &before);
    if let Some(tern) = &tern {
        tern_verify = tern.verify();
    }
    println!("Copies checked in {:.1} s.", t.elapsed().as_secs_f64());
    println!();

    // Delta cases. A small mailbox gets fewer flag changes, each round its own.
    let flag_changes = FLAG_CHANGES.min(total_messages / args.repeat as usize);
    let mut deltas: [DeltaRuns; 3] = Default::default();
    let mut tern_idle: Vec<Run> = Vec::new();
    for round in 0..args.repeat {
        if let Some(tern) = &tern {
            let run = tern.idle(logs.path(), &format!("tern-idle-{round}"), ids);
            tern_peak_kb = tern_peak_kb.max(run.peak_kb);
            tern_idle.push(run);
        }
        for (case, runs) in deltas.iter_mut().enumerate() {
            let what = match case {
                0 => "nothing new".to_string(),
                1 => {
                    let added = new_messages(&spec, round, NEW_MESSAGES);
                    source.fill(REMOTE_USER, &added).expect("add messages at the source");
                    for (name, messages) in added.iter().map(|f| (&f.name, f.messages.len())) {
                        if let Some(entry) = by_size.iter_mut().find(|(n, _)| n == name) {
                            entry.1 += messages;
                        }
                    }
                    format!("{NEW_MESSAGES} new")
                }
                _ => {
                    let touched = change_flags(
                        &source,
                        &by_size,
                        round as usize * flag_changes,
                        flag_changes,
                        &format!("$Bench{round}"),
                    );
                    format!("{flag_changes} flag changes ({})", touched.join(", "))
                }
            };
            let name = |tool: &str| format!("{tool}-delta-{case}-{round}");
            if let Some(tern) = &tern {
                let (run, report) = tern.pass("delta", logs.path(), &name("tern"), ids);
                runs.tern_pass.push(report.duration_ms as f64 / 1000.0);
                tern_peak_kb = tern_peak_kb.max(run.peak_kb);
                runs.tern_counts.push(format!(
                    "{} copied, {} flag updates",
                    report.pass_copied, report.flag_updates
                ));
                println!(
                    "Round {} {what}: Tern pass {} (connected {}, wall {}), {} copied, {} flag updates.",
                    round + 1,
                    seconds(report.duration_ms as f64 / 1000.0),
                    seconds(run.connected),
                    seconds(run.wall),
                    report.pass_copied,
                    report.flag_updates
                );
                runs.tern.push(run);
            }
            if let Some(m) = &mbsync {
                let run = measure(m.command(), logs.path(), &name("mbsync"), ids);
                println!(
                    "Round {} {what}: mbsync {} (connected {}).",
                    round + 1,
                    seconds(run.wall),
                    seconds(run.connected)
                );
                runs.mbsync.push(run);
            }
            if let Some(d) = &doveadm {
                let run = measure(d.command(), logs.path(), &name("doveadm"), ids);
                println!(
                    "Round {} {what}: doveadm {} (connected {}).",
                    round + 1,
                    seconds(run.wall),
                    seconds(run.connected)
                );
                runs.doveadm.push(run);
            }
        }
    }

    // Fidelity after the deltas, against the source as it is now.
    let t = Instant::now();
    let after = source.snapshot(REMOTE_USER).expect("snapshot the source again");
    let mut fidelity_after: BTreeMap<&'static str, (Fidelity, u64)> = BTreeMap::new();
    let mut testkit_diff_after: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    check(&mut fidelity_after, &mut testkit_diff_after, &after);
    let mbsync_notes = mbsync.as_ref().map(|m| {
        let copy = m.snapshot();
        let files = copy.message_count();
        let lf = copy
            .folders
            .values()
            .flatten()
            .filter(|msg| find(&msg.raw, b"\r\n").is_none())
            .count();
        let tuid = copy
            .folders
            .values()
            .flatten()
            .filter(|msg| {
                let head = find(&msg.raw, b"\n\n").unwrap_or(msg.raw.len());
                find(&msg.raw[..head], b"\nX-TUID: ").is_some()
            })
            .count();
        (files, lf, tuid)
    });
    println!("Copies checked again in {:.1} s.", t.elapsed().as_secs_f64());
    println!();

    // The report.
    let bytes_mb = total_bytes as f64 / 1e6;
    println!(
        "## Full pass: {} messages, {:.0} MB, {} folders",
        thousands(total_messages as f64),
        bytes_mb,
        before.folders.values().filter(|m| !m.is_empty()).count()
    );
    println!();
    println!(
        "| tool | wall | msgs/s | MB/s | peak memory (anonymous) | connected to the source | CPU | source Dovecot CPU | copy on disk | messages | byte-identical | flags identical | keywords identical | INTERNALDATE identical |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (tool, run) in &full {
        let (f, disk) = &fidelity[tool];
        println!(
            "| {tool} | {:.2} s | {} | {:.1} | {:.0} MB ({:.0} MB) | {:.2} s | {:.1} s | {:.1} s | {:.0} MB | {} | {} | {} | {} | {} |",
            run.wall,
            thousands(total_messages as f64 / run.wall),
            bytes_mb / run.wall,
            mb(run.peak_kb),
            mb(run.peak_anon_kb),
            run.connected,
            run.cpu,
            run.source_cpu,
            *disk as f64 / 1e6,
            if f.copy == f.source {
                thousands(f.copy as f64)
            } else {
                format!("**{} of {}**", thousands(f.copy as f64), thousands(f.source as f64))
            },
            f.cell(f.byte_identical),
            f.cell(f.flags_equal),
            f.cell(f.keywords_equal),
            f.cell(f.dates_equal),
        );
    }
    println!();
    let peers: Vec<(&str, f64)> = full
        .iter()
        .filter(|(t, _)| **t != "Tern")
        .map(|(t, r)| (*t, r.wall))
        .collect();
    let fastest_peer = peers.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(run), Some((peer, wall))) = (full.get("Tern"), fastest_peer) {
        println!(
            "Tern vs the faster peer ({peer}): {:.2}× as fast ({:.2} s against {:.2} s).",
            wall / run.wall,
            run.wall,
            wall
        );
        println!();
    }
    if tern.is_some() {
        println!(
            "Tern's own record of the full pass: {} ms, {} messages, {:.1} MB. `tern migrate verify`: {} source messages, {} in Tern, missing {}, flags differ {}, dates differ {}, extra {}.",
            tern_full.duration_ms,
            tern_full.pass_copied,
            tern_full.copied_bytes as f64 / 1e6,
            tern_verify[0],
            tern_verify[1],
            tern_verify[2],
            tern_verify[3],
            tern_verify[4],
            tern_verify[5]
        );
    }
    for (tool, lines) in &testkit_diff {
        println!(
            "`tern_testkit::imap::diff` source vs {tool}: {} difference(s){}",
            lines.len(),
            if lines.is_empty() { "." } else { ":" }
        );
        for l in lines.iter().take(5) {
            println!("    {l}");
        }
    }
    for (tool, (f, _)) in &fidelity {
        if !f.examples.is_empty() {
            println!("{tool}, examples of differences:");
            for e in &f.examples {
                println!("    {e}");
            }
        }
        if *tool == "mbsync" {
            println!(
                "mbsync: {} of {} messages match a source message once its rewrite is undone (LF → CRLF, the X-TUID header line removed).",
                thousands(f.matched as f64),
                thousands(f.source as f64)
            );
        }
    }
    println!();

    println!("## Delta passes ({} rounds each, median (min–max))", args.repeat);
    println!();
    println!(
        "| case | target | Tern pass (its record) | | Tern connected to the source | Tern `migrate run` wall | Tern peak memory (anonymous) | Tern saw |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let targets = [TARGET_DELTA_NOTHING, TARGET_DELTA_NEW, TARGET_DELTA_FLAGS];
    let labels = [
        "nothing new".to_string(),
        format!("{NEW_MESSAGES} new messages"),
        format!("{flag_changes} flag changes (+\\Flagged and a new keyword)"),
    ];
    let mut delta_ok = [false; 3];
    for (i, runs) in deltas.iter().enumerate() {
        if runs.tern.is_empty() {
            continue;
        }
        delta_ok[i] = median(&runs.tern_pass) <= targets[i];
        let peak = runs.tern.iter().map(|r| r.peak_kb).max().unwrap_or(0);
        let anon = runs.tern.iter().map(|r| r.peak_anon_kb).max().unwrap_or(0);
        println!(
            "| {} | ≤ {} | {} | {} | {} | {} | {:.0} MB ({:.0} MB) | {} |",
            labels[i],
            seconds(targets[i]),
            spread(&runs.tern_pass),
            verdict(delta_ok[i]),
            over(&runs.tern, |r| r.connected),
            over(&runs.tern, |r| r.wall),
            mb(peak),
            mb(anon),
            {
                let mut seen = runs.tern_counts.clone();
                seen.dedup();
                seen.join("; ")
            },
        );
    }
    if !tern_idle.is_empty() {
        println!(
            "| no pass queued: `migrate run` starts, opens the store, looks once, exits | | | | | {} | {:.0} MB | |",
            over(&tern_idle, |r| r.wall),
            mb(tern_idle.iter().map(|r| r.peak_kb).max().unwrap_or(0)),
        );
    }
    println!();
    println!(
        "Tern's pass time is its own record (`progress.duration_ms`), measured by the pass's task from its start to its end. \"Connected\" runs from the first to the last 10 ms sample that saw an established connection to the source."
    );
    println!();
    println!("### Side by side (medians): wall time / connected to the source");
    println!();
    println!("| case | Tern | mbsync | doveadm |");
    println!("|---|---|---|---|");
    for (i, runs) in deltas.iter().enumerate() {
        let cell = |runs: &[Run]| {
            if runs.is_empty() {
                return "—".to_string();
            }
            let wall: Vec<f64> = runs.iter().map(|r| r.wall).collect();
            let connected: Vec<f64> = runs.iter().map(|r| r.connected).collect();
            format!("{} / {}", seconds(median(&wall)), seconds(median(&connected)))
        };
        println!(
            "| {} | {} | {} | {} |",
            labels[i],
            cell(&runs.tern),
            cell(&runs.mbsync),
            cell(&runs.doveadm)
        );
    }
    println!();

    println!("## After the deltas: every copy against the source as it is now");
    println!();
    println!("| tool | messages | byte-identical | flags identical | keywords identical | INTERNALDATE identical |");
    println!("|---|---|---|---|---|---|");
    for (tool, (f, _)) in &fidelity_after {
        println!(
            "| {tool} | {} of {} | {} | {} | {} | {} |",
            thousands(f.copy as f64),
            thousands(f.source as f64),
            f.cell(f.byte_identical),
            f.cell(f.flags_equal),
            f.cell(f.keywords_equal),
            f.cell(f.dates_equal),
        );
    }
    for (tool, lines) in &testkit_diff_after {
        println!();
        println!(
            "`tern_testkit::imap::diff` source vs {tool}: {} difference(s).",
            lines.len()
        );
        for l in lines.iter().take(5) {
            println!("    {l}");
        }
    }
    for (tool, (f, _)) in &fidelity_after {
        if !f.examples.is_empty() {
            println!();
            println!("{tool}, examples of differences:");
            for e in &f.examples {
                println!("    {e}");
            }
        }
    }
    if let Some((files, lf, tuid)) = mbsync_notes {
        println!();
        println!(
            "mbsync's files: {} of {} with LF line ends only, {} with an X-TUID header field.",
            thousands(lf as f64),
            thousands(files as f64),
            thousands(tuid as f64)
        );
    }
    println!();

    if tern.is_some() {
        println!("## Targets (Tern)");
        println!();
        println!("| target | result | |");
        println!("|---|---|---|");
        if let (Some(run), Some((peer, wall))) = (full.get("Tern"), fastest_peer) {
            println!(
                "| full pass at least as fast as the faster of mbsync and doveadm | {:.2} s vs {peer} {:.2} s ({:.2}×) | {} |",
                run.wall,
                wall,
                wall / run.wall,
                verdict(run.wall <= wall)
            );
        }
        let (f, _) = &fidelity["Tern"];
        let (fa, _) = &fidelity_after["Tern"];
        println!(
            "| byte-exact, flags and keywords kept (full pass; after the deltas) | {}; {} | {} |",
            if f.perfect() { "identical" } else { "differs" },
            if fa.perfect() { "identical" } else { "differs" },
            verdict(f.perfect() && fa.perfect())
        );
        for (i, runs) in deltas.iter().enumerate() {
            let m = |f: fn(&Run) -> f64| seconds(median(&runs.tern.iter().map(f).collect::<Vec<_>>()));
            println!(
                "| delta, {}: ≤ {} | {} as Tern records it (connected to the source {}, `migrate run` wall {}) | {} |",
                labels[i],
                seconds(targets[i]),
                seconds(median(&runs.tern_pass)),
                m(|r| r.connected),
                m(|r| r.wall),
                verdict(delta_ok[i])
            );
        }
        println!(
            "| peak memory ≤ {TARGET_PEAK_MB:.0} MB (every Tern run) | {:.0} MB (full pass: {:.0} MB, of it anonymous {:.0} MB) | {} |",
            mb(tern_peak_kb),
            full.get("Tern").map_or(0.0, |r| mb(r.peak_kb)),
            full.get("Tern").map_or(0.0, |r| mb(r.peak_anon_kb)),
            verdict(mb(tern_peak_kb) <= TARGET_PEAK_MB)
        );
        println!();
    }
    println!("Load average at end: {}", load_average());
}
