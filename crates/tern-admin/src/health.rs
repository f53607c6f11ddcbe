//! Server health as the admin console's dashboard and `GET /admin/api/v1/health` show
//! it: what runs (listeners, uptime, version), what is stored and how much room is
//! left, how the outbound queue and the migrations are doing, the certificate, and the
//! problems an administrator should act on, each worded as what to do.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tern_migrate::state::Phase;
use tern_migrate::worker::{effective_phase, parse_progress, parse_request};
use tern_smtp::queue::Envelope;
use tern_store::Store;

use crate::{Result, now};

/// Free space below this share of the data folder's file system is a problem.
const LOW_DISK_PERCENT: u64 = 10;
/// A certificate expiring within this many days is a problem.
const CERTIFICATE_WARNING_DAYS: i64 = 14;
/// A queued message older than this is a problem (remote servers refusing or down).
const OLD_QUEUE_SECONDS: i64 = 6 * 3600;

/// What the running server knows of itself, given by the binary at start.
#[derive(Default)]
pub struct ServerFacts {
    pub version: String,
    /// This node's name (the host name of the machine).
    pub node: String,
    /// Unix seconds.
    pub started: i64,
    /// The data folder, whose file system's free space is watched.
    pub data_dir: Option<PathBuf>,
    /// Filled in once the listeners are bound.
    pub listeners: RwLock<Vec<Listener>>,
    /// Reads the certificate in use (it changes under ACME).
    pub certificate: Option<CertificateProbe>,
    pub acme: bool,
    pub golive_watch: bool,
}

impl std::fmt::Debug for ServerFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerFacts")
            .field("version", &self.version)
            .field("node", &self.node)
            .field("started", &self.started)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Reads the certificate the TLS listeners present now.
pub type CertificateProbe = Arc<dyn Fn() -> Option<Certificate> + Send + Sync>;

/// One bound listener.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listener {
    /// `imap`, `imaps`, `pop3`, `submission`, `smtp`, `https`, ...
    pub service: String,
    pub address: String,
    /// `implicit`, `starttls` or `none`.
    pub tls: String,
}

/// The certificate in use.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Certificate {
    pub names: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_after: i64,
    pub self_signed: bool,
    /// Chains to a CA clients trust, for the host name.
    pub trusted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub version: String,
    pub node: String,
    pub started: i64,
    pub uptime_seconds: i64,
    pub listeners: Vec<Listener>,
    pub store: StoreHealth,
    pub queue: QueueHealth,
    pub migrations: MigrationHealth,
    pub certificate: Option<Certificate>,
    pub acme: bool,
    pub golive_watch: bool,
    /// What needs the administrator, worded as what to do; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreHealth {
    pub domains: u64,
    pub accounts: u64,
    pub disabled_accounts: u64,
    /// Bytes of mail in all accounts.
    pub mail_bytes: u64,
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueHealth {
    /// Messages waiting for delivery.
    pub messages: u64,
    /// Their recipients still to be reached.
    pub pending_recipients: u64,
    /// Unix seconds the oldest was queued.
    pub oldest: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationHealth {
    pub total: u64,
    pub running: u64,
    /// Asked for, waiting for a worker, a window or the daily cap.
    pub waiting: u64,
    pub failed: u64,
    pub done: u64,
    /// Messages that could not be copied, over all migrations.
    pub message_errors: u64,
}

/// Free and total bytes of the file system holding `path` (statvfs(3)).
fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Gathers the server's health now.
pub async fn health(store: &dyn Store, facts: &ServerFacts) -> Result<Health> {
    let t = now();
    let accounts = store.accounts(None).await?;
    let mut s = StoreHealth {
        domains: store.domains().await?.len() as u64,
        accounts: accounts.len() as u64,
        disabled_accounts: accounts.iter().filter(|a| !a.enabled).count() as u64,
        mail_bytes: accounts.iter().map(|a| a.used).sum(),
        ..StoreHealth::default()
    };
    if let Some((free, total)) = facts.data_dir.as_deref().and_then(disk_space) {
        s.disk_free_bytes = Some(free);
        s.disk_total_bytes = Some(total);
    }
    let entries = store.queue_entries().await?;
    let queue = QueueHealth {
        messages: entries.len() as u64,
        pending_recipients: entries
            .iter()
            .map(|e| Envelope::parse(e).pending().count() as u64)
            .sum(),
        oldest: entries.iter().map(|e| e.created).min(),
    };
    let mut m = MigrationHealth::default();
    for mig in store.migrations().await? {
        let progress = parse_progress(&mig);
        m.total += 1;
        m.message_errors += progress.errors;
        match effective_phase(&parse_request(&mig), &progress) {
            Phase::Running => m.running += 1,
            Phase::Queued | Phase::WaitingWindow | Phase::WaitingCap => m.waiting += 1,
            Phase::Failed => m.failed += 1,
            Phase::Done => m.done += 1,
            _ => {}
        }
    }
    let certificate = facts.certificate.as_ref().and_then(|probe| probe());
    let listeners = facts
        .listeners
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let problems = problems(t, &s, &queue, &m, certificate.as_ref());
    Ok(Health {
        version: facts.version.clone(),
        node: facts.node.clone(),
        started: facts.started,
        uptime_seconds: (t - facts.started).max(0),
        listeners,
        store: s,
        queue,
        migrations: m,
        certificate,
        acme: facts.acme,
        golive_watch: facts.golive_watch,
        problems,
    })
}

fn problems(
    t: i64,
    s: &StoreHealth,
    queue: &QueueHealth,
    m: &MigrationHealth,
    certificate: Option<&Certificate>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(free), Some(total)) = (s.disk_free_bytes, s.disk_total_bytes)
        && total > 0
        && free * 100 / total < LOW_DISK_PERCENT
    {
        out.push(format!(
            "The data folder's disk is {}% full: add space before mail is refused.",
            100 - free * 100 / total
        ));
    }
    if let Some(c) = certificate {
        let days = (c.not_after - t) / 86400;
        if c.not_after <= t {
            out.push("The TLS certificate has expired: clients refuse to connect. Renew it (tern cert renew).".into());
        } else if days < CERTIFICATE_WARNING_DAYS {
            out.push(format!(
                "The TLS certificate expires in {days} day(s): check that renewal works (tern cert status)."
            ));
        }
        if !c.trusted {
            out.push(
                "The TLS certificate is not trusted by mail apps: turn on [acme] or install a CA-issued certificate."
                    .into(),
            );
        }
    }
    if let Some(oldest) = queue.oldest
        && t - oldest > OLD_QUEUE_SECONDS
    {
        out.push(format!(
            "Outgoing mail has waited {} hours for delivery: look at the queue's last replies.",
            (t - oldest) / 3600
        ));
    }
    if m.failed > 0 {
        out.push(format!(
            "{} migration(s) could not run their last pass: see their errors on the migrations page.",
            m.failed
        ));
    }
    out
}
