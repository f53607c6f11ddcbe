//! Migrations as the administrator steers them: which mailboxes, which pass, pause,
//! resume, cancel, finish, and adding mailboxes to migrate. Everything here writes the
//! migration's request into the store; the worker inside `tern serve` reads it and runs
//! the pass, so a request outlives the CLI, the browser tab or the script that made it.

use std::io::Read;

use serde::Serialize;
use tern_migrate::report::Report;
use tern_migrate::secrets::SecretBox;
use tern_migrate::source::Credential;
use tern_migrate::state::{Pass, Phase, Request};
use tern_migrate::worker::{effective_phase, parse_progress, parse_request, update_request};
use tern_store::{Migration, NewMigration, Store};

use crate::{AdminError, Result, domain_of};

/// Which migrations an action is for: one mailbox, a domain's, or all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub user: Option<String>,
    pub domain: Option<String>,
}

impl Selector {
    pub fn user(address: &str) -> Selector {
        Selector {
            user: Some(address.to_string()),
            domain: None,
        }
    }
    pub fn domain(domain: &str) -> Selector {
        Selector {
            user: None,
            domain: Some(domain.to_string()),
        }
    }
}

/// The migrations a selector names; an error if it names none.
pub async fn select(store: &dyn Store, which: &Selector) -> Result<Vec<Migration>> {
    let selected: Vec<Migration> = store
        .migrations()
        .await?
        .into_iter()
        .filter(|m| match (&which.user, &which.domain) {
            (Some(u), _) => m.address.eq_ignore_ascii_case(u),
            (None, Some(d)) => domain_of(&m.address).eq_ignore_ascii_case(d),
            (None, None) => true,
        })
        .collect();
    if selected.is_empty() {
        return Err(AdminError::NotFound(match (&which.user, &which.domain) {
            (Some(u), _) => format!("no migration for {u}; add one with `tern migrate add`"),
            (None, Some(d)) => format!("no migrations for domain {d}; add them with `tern migrate add`"),
            (None, None) => "no migrations yet; add one with `tern migrate add`".into(),
        }));
    }
    Ok(selected)
}

/// Changes each migration's request with `change` (see `update_request`: a
/// concurrent change, from the go-live watch or another administrator, is kept).
async fn change_requests(store: &dyn Store, selected: &[Migration], change: impl Fn(&mut Request)) -> Result<()> {
    for m in selected {
        update_request(store, m, |_, r| {
            change(r);
            Ok::<_, AdminError>(())
        })
        .await?;
    }
    Ok(())
}

/// A pass to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassRequest {
    pub pass: Pass,
    /// Only messages since / before these dates (unix seconds at midnight UTC).
    pub since: Option<i64>,
    pub before: Option<i64>,
    /// Delete in Tern what was deleted at the source (before cutover only).
    pub propagate_deletions: bool,
}

impl PassRequest {
    pub fn new(pass: Pass) -> PassRequest {
        PassRequest {
            pass,
            since: None,
            before: None,
            propagate_deletions: false,
        }
    }
}

/// Asks for a pass (or, with [`Pass::RetryErrors`], for the failed messages again) on
/// every selected migration; returns how many. A finished migration is refused: its
/// credentials are gone.
pub async fn start(store: &dyn Store, which: &Selector, ask: PassRequest) -> Result<usize> {
    if ask.pass == Pass::Finish {
        return finish(store, which).await;
    }
    let selected = select(store, which).await?;
    for m in &selected {
        let r = parse_request(m);
        if parse_progress(m).phase == Phase::Done {
            return Err(AdminError::Invalid(format!(
                "{}: the migration is finished and its credentials wiped; add it again to copy more",
                m.address
            )));
        }
        if ask.propagate_deletions && r.cutover.is_some() {
            return Err(AdminError::Invalid(format!(
                "{}: deletions are not propagated after cutover (mail deleted at the old provider may be the user's only copy)",
                m.address
            )));
        }
    }
    change_requests(store, &selected, |r| {
        r.seq += 1;
        r.pass = ask.pass;
        r.since = ask.since;
        r.before = ask.before;
        r.propagate_deletions = ask.propagate_deletions;
        r.paused = false;
        r.cancelled = false;
    })
    .await?;
    Ok(selected.len())
}

/// Pausing, resuming and cancelling what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stops between messages; the pass goes on from there on resume.
    Pause,
    Resume,
    /// Drops the pass asked for; what was copied stays.
    Cancel,
}

impl Control {
    pub fn past_tense(self) -> &'static str {
        match self {
            Control::Pause => "paused",
            Control::Resume => "resumed",
            Control::Cancel => "cancelled",
        }
    }
}

pub async fn control(store: &dyn Store, which: &Selector, what: Control) -> Result<usize> {
    let selected = select(store, which).await?;
    change_requests(store, &selected, |r| match what {
        Control::Pause => r.paused = true,
        Control::Resume => r.paused = false,
        Control::Cancel => {
            r.cancelled = true;
            r.paused = false;
        }
    })
    .await?;
    Ok(selected.len())
}

/// Whether the source logs in as an administrator for every mailbox (then a mailbox
/// needs no password of its own).
async fn has_admin_login(store: &dyn Store, source: &str) -> Result<bool> {
    let (source, settings) = tern_migrate::source::load(store, source).await?;
    Ok(settings.admin_user.is_some() && source.secret.is_some())
}

/// Asks for the final pass: a last delta, then the credentials are wiped and the
/// migration is done.
pub async fn finish(store: &dyn Store, which: &Selector) -> Result<usize> {
    let selected = select(store, which).await?;
    for m in &selected {
        if m.secret.is_none() && !has_admin_login(store, &m.source).await? {
            return Err(AdminError::Invalid(format!(
                "{}: no credentials are stored (already finished?)",
                m.address
            )));
        }
    }
    change_requests(store, &selected, |r| {
        r.seq += 1;
        r.pass = Pass::Finish;
        r.paused = false;
        r.cancelled = false;
    })
    .await?;
    Ok(selected.len())
}

/// Forgets a migration (its copied mail stays); refused while a pass runs.
pub async fn remove(store: &dyn Store, address: &str) -> Result<()> {
    let m = store.migration(address).await?;
    if effective_phase(&parse_request(&m), &parse_progress(&m)) == Phase::Running {
        return Err(AdminError::Invalid(format!(
            "a pass is running for {address}; cancel it first (`tern migrate cancel --user {address}`)"
        )));
    }
    Ok(store.delete_migration(m.id).await?)
}

/// A mailbox to migrate from a source.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// The Tern account it goes into.
    pub address: String,
    /// The login at the source.
    pub remote_user: String,
    /// `None` when the source logs in as an administrator.
    pub credential: Option<Credential>,
    /// A folder at the source to take as the root (UserRoot).
    pub user_root: Option<String>,
}

/// Reads the CSV format of `tern migrate add --csv` (the one Exchange and Microsoft 365
/// IMAP migrations use): a first line naming `EmailAddress,UserName,Password`, and
/// optionally `UserRoot`.
pub fn parse_csv(input: impl Read) -> Result<Vec<Mailbox>> {
    let (mut reader, headers) = crate::open_csv(input)?;
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(email), Some(user)) = (col("EmailAddress"), col("UserName")) else {
        return Err(AdminError::Invalid(
            "the CSV file's first line must name the columns EmailAddress,UserName,Password (and optionally UserRoot)"
                .into(),
        ));
    };
    let (password, root) = (col("Password"), col("UserRoot"));
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| AdminError::Invalid(format!("line {line}: {e}")))?;
        let field = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|v| !v.is_empty());
        let address = field(Some(email)).ok_or_else(|| AdminError::Invalid(format!("line {line}: no EmailAddress")))?;
        rows.push(Mailbox {
            address: address.to_string(),
            remote_user: field(Some(user)).unwrap_or(address).to_string(),
            credential: field(password).map(|p| Credential::Password {
                password: p.to_string(),
            }),
            user_root: field(root).map(str::to_string),
        });
    }
    Ok(rows)
}

/// Adds (or updates) mailboxes to migrate from a source, their credentials sealed with
/// the installation's secrets key. Every line is checked before any is written.
pub async fn add(store: &dyn Store, secrets: &SecretBox, source: &str, mailboxes: &[Mailbox]) -> Result<usize> {
    let admin_login = has_admin_login(store, source).await?;
    let mut accounts = Vec::new();
    for mb in mailboxes {
        if mb.credential.is_none() && !admin_login {
            return Err(AdminError::Invalid(format!(
                "{}: no password; give the mailbox's (--password-stdin, or a Password column), or add the source with an administrator login (--admin-user)",
                mb.address
            )));
        }
        let account = store.account(&mb.address).await.map_err(|_| {
            AdminError::NotFound(format!("{}: create the Tern account first (tern user add)", mb.address))
        })?;
        accounts.push(account);
    }
    for (mb, account) in mailboxes.iter().zip(accounts) {
        let existing = store.migration(&mb.address).await.ok();
        let mut request = existing.as_ref().map(parse_request).unwrap_or_default();
        request.user_root = mb.user_root.clone();
        let sealed = match &mb.credential {
            Some(c) => Some(secrets.seal(&serde_json::to_string(c).map_err(|e| AdminError::Internal(e.to_string()))?)),
            None => None,
        };
        let m = store
            .put_migration(NewMigration {
                account: account.id,
                source: source.to_string(),
                remote_user: mb.remote_user.clone(),
                secret: sealed,
                request: serde_json::to_string(&request).map_err(|e| AdminError::Internal(e.to_string()))?,
            })
            .await?;
        // A finished migration given new credentials can run passes again; what it
        // copied before stays known, so nothing is copied twice.
        let mut progress = parse_progress(&m);
        if progress.phase == Phase::Done {
            progress.phase = Phase::Passed;
            let json = serde_json::to_string(&progress).map_err(|e| AdminError::Internal(e.to_string()))?;
            store.set_migration_progress(m.id, &json).await?;
        }
    }
    Ok(mailboxes.len())
}

/// One mailbox's migration as the console and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub address: String,
    pub source: String,
    pub phase: Phase,
    /// The pass running, or the last one.
    pub pass: Option<Pass>,
    pub paused: bool,
    /// Messages in Tern from the source, and at the source.
    pub copied: u64,
    pub source_messages: u64,
    /// 0..=100, or `None` before the first listing.
    pub percent: Option<u8>,
    pub copied_bytes: u64,
    /// Bytes per second, while running.
    pub rate: Option<f64>,
    /// Seconds left, while running.
    pub eta_seconds: Option<u64>,
    pub errors: u64,
    pub last_error: Option<String>,
    /// When a failed pass is tried again by itself.
    pub retry_at: Option<i64>,
    pub cutover: Option<i64>,
    pub finished: Option<i64>,
    pub has_credentials: bool,
}

impl Overview {
    pub fn of(report: &Report) -> Overview {
        let p = &report.progress;
        let (copied, total) = (report.copied(), report.source_messages());
        let running = report.phase == Phase::Running;
        Overview {
            address: report.address.clone(),
            source: report.source.clone(),
            phase: report.phase,
            pass: p.pass,
            paused: report.request.paused,
            copied,
            source_messages: total,
            percent: (total > 0).then(|| ((copied.min(total) * 100) / total) as u8),
            copied_bytes: p.copied_bytes,
            rate: running.then_some(p.rate),
            eta_seconds: if running { p.eta() } else { None },
            errors: p.errors,
            last_error: p.last_error.clone(),
            retry_at: p.retry_at,
            cutover: report.request.cutover,
            finished: p.finished,
            has_credentials: report.has_credentials,
        }
    }
}

/// Every migration (or a domain's), for a progress table.
pub async fn overview(store: &dyn Store, domain: Option<&str>) -> Result<Vec<(Overview, Report)>> {
    let mut out = Vec::new();
    for m in store.migrations().await? {
        if domain.is_some_and(|d| !domain_of(&m.address).eq_ignore_ascii_case(d)) {
            continue;
        }
        let report = Report::load(store, &m).await?;
        out.push((Overview::of(&report), report));
    }
    Ok(out)
}
