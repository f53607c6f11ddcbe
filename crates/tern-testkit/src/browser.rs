//! Browser tests: a Playwright script run in headless Debian Chromium.
//!
//! A test hands [`Browser::run`] an ES module (a file, or its source as a string) whose
//! default export is `async function (ctx)`, with
//! `ctx = { browser, context, page, env, assert, screenshot(name), step(text) }`:
//! playwright-core's `Browser`, a fresh `BrowserContext` that accepts self-signed
//! certificates, a `Page` in it, the `env` pairs the test passed (an object), Node's
//! `assert/strict`, a function saving a full-page PNG and returning its path, and one
//! noting a step for the failure report. `tests/browser/runner.mjs` (workspace root)
//! launches Chromium, runs the script and prints one JSON line per event; this module
//! reads them and gives back an [`Output`], or an `Err` telling the script's error and
//! stack with everything the pages said (console, page errors, CSP violations), the
//! steps and the screenshots.
//!
//! What it needs: `node` on PATH, Chromium at `/usr/bin/chromium` (Debian's `chromium`
//! package; or `TERN_CHROMIUM`), and playwright-core in `tests/browser/node_modules`
//! (`npm ci --prefix tests/browser`; or `TERN_NODE_MODULES`). `scripts/test.sh` installs
//! all three. [`available`] says which is missing and how to install it; tests fail with
//! that message rather than skip.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long a run may take before its node and Chromium are killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long node may take to exit after its last line before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Node, Chromium and playwright-core, found by [`available`].
#[derive(Debug, Clone)]
pub struct Browser {
    node: PathBuf,
    chromium: PathBuf,
    node_modules: PathBuf,
    runner: PathBuf,
    screenshots: Option<PathBuf>,
    timeout: Duration,
}

/// A test script: an ES module file, or the source of one.
#[derive(Debug, Clone, Copy)]
pub enum Script<'a> {
    /// A `.mjs` file (relative paths are from the current directory, which for
    /// `cargo test` is the crate's folder).
    File(&'a Path),
    /// The module's source; it is written to a temporary `.mjs` file, so it can import
    /// Node's built-in modules but nothing by relative path.
    Source(&'a str),
}

impl<'a> From<&'a Path> for Script<'a> {
    fn from(path: &'a Path) -> Self {
        Script::File(path)
    }
}

impl<'a> From<&'a PathBuf> for Script<'a> {
    fn from(path: &'a PathBuf) -> Self {
        Script::File(path)
    }
}

impl<'a> From<&'a str> for Script<'a> {
    fn from(source: &'a str) -> Self {
        Script::Source(source)
    }
}

impl<'a> From<&'a String> for Script<'a> {
    fn from(source: &'a String) -> Self {
        Script::Source(source)
    }
}

/// What a passing run saw.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Console messages at level `error` (`console.error`, failed loads, …), each
    /// followed by its `(url:line:column)` when Chromium gave one. CSP violations are
    /// in `csp_violations` instead.
    pub console: Vec<String>,
    /// Every console message of every level, as `[level] text`, CSP ones included.
    pub console_all: Vec<String>,
    /// Uncaught exceptions and unhandled rejections in the pages (`pageerror`), and
    /// page crashes.
    pub page_errors: Vec<String>,
    /// Console messages mentioning 'Content Security Policy': what Chromium says when
    /// the page's CSP blocked something.
    pub csp_violations: Vec<String>,
    /// The PNG files `ctx.screenshot` wrote, in order.
    pub screenshots: Vec<PathBuf>,
    /// The script's `ctx.step(…)` notes and its own `console.log` output, in order.
    pub steps: Vec<String>,
    /// Everything the runner printed on stdout (one JSON object per line).
    pub stdout: String,
}

/// Finds node, Chromium, playwright-core and the runner; the error says what is
/// missing and how to install it.
pub fn available() -> Result<Browser, String> {
    let root = workspace_root();
    let mut missing = Vec::new();

    let node = find_on_path("node");
    match &node {
        None => missing
            .push("node is not on PATH: install Node.js 20 or newer (Debian: apt-get install nodejs npm)".to_string()),
        Some(node) => {
            let version = Command::new(node).arg("--version").stdin(Stdio::null()).output();
            if !version.is_ok_and(|o| o.status.success()) {
                missing.push(format!("{} --version failed: is Node.js broken?", node.display()));
            }
        }
    }

    let chromium = std::env::var_os("TERN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        missing.push(format!(
            "Chromium is not at {}: install Debian's chromium package (apt-get install chromium; \
             scripts/test.sh does), or set TERN_CHROMIUM to a Chromium binary",
            chromium.display()
        ));
    }

    let node_modules = std::env::var_os("TERN_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/browser/node_modules"));
    if !node_modules.join("playwright-core/package.json").is_file() {
        missing.push(format!(
            "playwright-core is not in {}: run `npm ci --prefix tests/browser` at the workspace \
             root ({}; scripts/test.sh does), or set TERN_NODE_MODULES to a node_modules folder \
             that holds it",
            node_modules.display(),
            root.display()
        ));
    }

    let runner = root.join("tests/browser/runner.mjs");
    if !runner.is_file() {
        missing.push(format!("the browser test runner {} is missing", runner.display()));
    }

    match node {
        Some(node) if missing.is_empty() => Ok(Browser {
            node,
            chromium,
            node_modules,
            runner,
            screenshots: std::env::var_os("TERN_SCREENSHOTS").map(PathBuf::from),
            timeout: DEFAULT_TIMEOUT,
        }),
        _ => Err(format!("browser tests cannot run:\n  - {}", missing.join("\n  - "))),
    }
}

/// [`available`], or a panic with its message: for tests.
pub fn require() -> Browser {
    available().unwrap_or_else(|e| panic!("{e}"))
}

impl Browser {
    /// The same browser with another time limit per run (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same browser saving screenshots into `dir` (default: `TERN_SCREENSHOTS`, or
    /// else a new folder per run under the system's temporary folder,
    /// `tern-screenshots/`).
    pub fn with_screenshots(mut self, dir: impl Into<PathBuf>) -> Self {
        self.screenshots = Some(dir.into());
        self
    }

    /// The Chromium binary this runs.
    pub fn chromium(&self) -> &Path {
        &self.chromium
    }

    /// Runs `script` in a fresh Chromium; `env` becomes the script's `ctx.env`. `Ok` when
    /// the script's function returned, `Err` when it threw, the run timed out, or the
    /// runner broke; the error tells the script's message and stack, the console
    /// messages, page errors and CSP violations, the steps, the screenshots (one named
    /// `<script>-failure.png` is taken on failure) and node's stderr.
    pub fn run<'a>(&self, script: impl Into<Script<'a>>, env: &[(&str, &str)]) -> Result<Output, String> {
        let script = script.into();
        // Node's and Chromium's temporary files (Playwright's profile folder among them)
        // and Chromium's config and cache go here, and go with it even when the run is
        // killed. Its unique path also marks the run's processes (see `kill_run`).
        let tmp = tempfile::Builder::new()
            .prefix("tern-browser-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder for the browser: {e}"))?;
        let (script_path, label) = match script {
            Script::File(path) => {
                let path =
                    std::path::absolute(path).map_err(|e| format!("browser test script {}: {e}", path.display()))?;
                if !path.is_file() {
                    return Err(format!("browser test script {} does not exist", path.display()));
                }
                let label = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "script".into());
                (path, label)
            }
            Script::Source(source) => {
                let path = tmp.path().join("script.mjs");
                std::fs::write(&path, source).map_err(|e| format!("cannot write the browser test script: {e}"))?;
                (path, "script".to_string())
            }
        };
        let screenshots = self.screenshots.clone().unwrap_or_else(default_screenshot_dir);
        let env_json = Value::Object(
            env.iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        )
        .to_string();

        let mut command = Command::new(&self.node);
        command
            .arg(&self.runner)
            .arg(&script_path)
            .env("TERN_CHROMIUM", &self.chromium)
            .env("TERN_NODE_MODULES", &self.node_modules)
            .env("TERN_SCREENSHOTS", &screenshots)
            .env("TERN_BROWSER_ENV", env_json)
            .env("TERN_BROWSER_LABEL", &label)
            .env("TMPDIR", tmp.path())
            .env("XDG_CONFIG_HOME", tmp.path().join("config"))
            .env("XDG_CACHE_HOME", tmp.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Node leads a process group of its own, so a kill reaches whatever it started.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.node.display()))?;
        let mut run = Run {
            child,
            tmp_marker: tmp.path().to_string_lossy().into_owned(),
            reaped: None,
        };

        let stdout = run.child.stdout.take().expect("piped stdout");
        let mut stderr = run.child.stderr.take().expect("piped stderr");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_thread = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });

        let mut events = Events::default();
        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => events.add(&line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
            }
        }
        let status = if timed_out { run.kill() } else { run.finish() };
        // The pipe's writers are all gone now, so these threads end.
        let stderr = stderr_thread.join().unwrap_or_default();
        while let Ok(line) = lines.try_recv() {
            events.add(&line);
        }
        drop(tmp);

        let failure = if timed_out {
            Some(format!(
                "the browser test timed out after {:?}: node and Chromium were killed",
                self.timeout
            ))
        } else {
            match events.result.take() {
                Some(Ok(())) => None,
                Some(Err(message)) => Some(format!("the browser test failed: {message}")),
                None => Some(format!(
                    "the browser test runner ended ({}) without a result",
                    status.map_or_else(|e| e, |s| s.to_string())
                )),
            }
        };
        match failure {
            None => Ok(events.output),
            Some(failure) => Err(report(&failure, &events.output, &stderr)),
        }
    }
}

/// The runner's events, read line by line.
#[derive(Default)]
struct Events {
    output: Output,
    /// `Ok` for a pass, `Err(message and stack)` for a failure; `None` until the result
    /// line.
    result: Option<Result<(), String>>,
}

impl Events {
    fn add(&mut self, line: &str) {
        let output = &mut self.output;
        output.stdout.push_str(line);
        output.stdout.push('\n');
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            // Not the runner's: someone wrote to stdout directly.
            output.steps.push(format!("(stdout) {line}"));
            return;
        };
        let text = |key: &str| event[key].as_str().unwrap_or_default().to_string();
        match event["type"].as_str().unwrap_or_default() {
            "console" => {
                let (level, text) = (text("level"), text("text"));
                output.console_all.push(format!("[{level}] {text}"));
                if level == "error" {
                    output.console.push(text);
                }
            }
            "csp" => {
                let (level, text) = (text("level"), text("text"));
                output.console_all.push(format!("[{level}] {text}"));
                output.csp_violations.push(text);
            }
            "pageerror" => {
                let (message, stack) = (text("message"), text("stack"));
                output.page_errors.push(if stack.contains(&message) {
                    stack
                } else if stack.is_empty() {
                    message
                } else {
                    format!("{message}\n{stack}")
                });
            }
            "screenshot" => output.screenshots.push(PathBuf::from(text("path"))),
            "step" => output.steps.push(text("text")),
            "log" => output
                .steps
                .push(format!("(console.{}) {}", text("level"), text("text"))),
            "launch" => output.steps.push(format!("launched Chromium {}", text("browser"))),
            "result" => {
                self.result = Some(if event["ok"].as_bool() == Some(true) {
                    Ok(())
                } else {
                    let (message, stack) = (text("message"), text("stack"));
                    Err(if stack.is_empty() || !stack.contains(&message) {
                        format!("{message}\n{stack}")
                    } else {
                        stack
                    })
                });
            }
            _ => output.steps.push(format!("(unknown event) {line}")),
        }
    }
}

/// The failure message: what failed, then everything the run saw.
fn report(failure: &str, output: &Output, stderr: &str) -> String {
    let mut text = failure.trim_end().to_string();
    let mut section = |title: &str, items: &[String]| {
        if !items.is_empty() {
            text.push_str(&format!("\n--- {title} ({}):", items.len()));
            for item in items {
                text.push_str("\n  ");
                text.push_str(&item.replace('\n', "\n    "));
            }
        }
    };
    section("console", &output.console_all);
    section("page errors", &output.page_errors);
    section("CSP violations", &output.csp_violations);
    section("steps", &output.steps);
    let shots: Vec<String> = output.screenshots.iter().map(|p| p.display().to_string()).collect();
    section("screenshots", &shots);
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        text.push_str("\n--- node stderr:\n");
        text.push_str(stderr);
    }
    text
}

/// The running node, killed with everything it started if it is still running when
/// dropped (a panicking test) or timed out.
struct Run {
    child: Child,
    /// The run's temporary folder: in the environment (TMPDIR) of node and Chromium's
    /// browser process and on the command line (`--user-data-dir`) of every Chromium
    /// process, including those that leave node's process group (Playwright starts
    /// Chromium in a group of its own; crashpad detaches).
    tmp_marker: String,
    reaped: Option<ExitStatus>,
}

impl Run {
    /// After the runner's stdout closed: lets node exit by itself, then kills anything
    /// left.
    fn finish(&mut self) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = Some(status);
                    kill_marked(&self.tmp_marker);
                    return Ok(status);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for node: {e}")),
            }
        }
        self.kill()
    }

    /// Kills node's process group and every process of the run, then reaps node.
    fn kill(&mut self) -> Result<ExitStatus, String> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        // Node is not reaped yet, so its PID (the group's ID) cannot have been reused.
        signal_kill(&[format!("-{}", self.child.id())]);
        kill_marked(&self.tmp_marker);
        let status = self.child.wait().map_err(|e| format!("waiting for node: {e}"))?;
        self.reaped = Some(status);
        Ok(status)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// SIGKILLs every process whose command line or environment mentions `marker`.
fn kill_marked(marker: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id().to_string();
    let marker = marker.as_bytes();
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mentions = |file: &str| {
            std::fs::read(entry.path().join(file)).is_ok_and(|bytes| bytes.windows(marker.len()).any(|w| w == marker))
        };
        if mentions("cmdline") || mentions("environ") {
            pids.push(name);
        }
    }
    signal_kill(&pids);
}

/// `kill -KILL -- TARGETS` (PIDs, or "-PGID" for process groups), ignoring failure.
fn signal_kill(targets: &[String]) {
    if targets.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .args(targets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The workspace root: tern-testkit is `crates/tern-testkit` in it.
fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A new folder name per run under `$TMPDIR/tern-screenshots/` (created only when the
/// script takes a screenshot), so runs in parallel do not overwrite each other's files.
fn default_screenshot_dir() -> PathBuf {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    std::env::temp_dir().join("tern-screenshots").join(format!(
        "{millis}-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ))
}
