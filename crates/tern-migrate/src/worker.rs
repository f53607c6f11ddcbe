//! The migration worker pool: runs inside `tern serve` (and `tern migrate run`), picks
//! up what the administrator asked for through the store, and runs passes — up to the
//! schedule's number of mailboxes at once, pre-stage passes only inside its windows,
//! all under its rate caps.
//!
//! The CLI and the worker never talk directly: the CLI writes a migration's `request`,
//! the worker its `progress`, and the worker looks again every second. A worker holds a
//! lease on each migration it runs, renewed every tick, so two workers (two nodes, or
//! `tern migrate run` beside `tern serve`) never copy one mailbox at once; the lease of
//! a worker process that died on this machine is taken over at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tern_store::{Migration, MigrationId, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pass::{self, Control, Outcome, PassInput, Reporter};
use crate::schedule::{self, Schedule};
use crate::secrets::SecretBox;
use crate::source::{Credential, Login, SourceSettings};
use crate::state::{Pass, Phase, Progress, Request};
use crate::throttle::RateLimiter;
use crate::{MigrateError, now};

/// How often the worker looks at the store.
const TICK: Duration = Duration::from_secs(1);
/// How long a lease holds without renewal.
const LEASE_SECS: i64 = 30;
/// A pass that failed because the source could not be reached (or kept throttling)
/// is started again after this long, until it succeeds or the admin steps in.
const RETRY_AFTER_SECS: i64 = 600;

/// What a worker needs from the running server.
#[derive(Clone)]
pub struct WorkerConfig {
    pub secrets: Arc<SecretBox>,
    /// limits.max_message_size.
    pub max_message_size: u64,
}

use tern_store::lease::{is_dead_local_owner, owner_name};

pub fn parse_request(m: &Migration) -> Request {
    serde_json::from_str(&m.request).unwrap_or_default()
}

/// Changes a migration's request as `change` says (it may refuse, and sees the
/// migration it changes). The request is written only if no one changed it since it
/// was read; otherwise `change` runs again on the newer one. The console, the CLI and
/// the go-live watch all ask for passes by adding one to `seq`: from the same read,
/// two of them would ask for one pass instead of two, or undo a pause.
pub async fn update_request<E>(
    store: &dyn Store,
    m: &Migration,
    mut change: impl FnMut(&Migration, &mut Request) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<tern_store::StoreError>,
{
    const ATTEMPTS: usize = 64;
    let mut current = m.clone();
    for _ in 0..ATTEMPTS {
        let mut request = parse_request(&current);
        change(&current, &mut request)?;
        let json = serde_json::to_string(&request).unwrap_or_default();
        if store
            .replace_migration_request(current.id, &current.request, &json)
            .await?
        {
            return Ok(());
        }
        current = store.migration(&current.address).await?;
    }
    Err(tern_store::StoreError::WriteFailed(format!(
        "the migration of {} kept changing under {ATTEMPTS} attempts to change its request; try again",
        m.address
    ))
    .into())
}

pub fn parse_progress(m: &Migration) -> Progress {
    serde_json::from_str(&m.progress).unwrap_or_default()
}

/// What `status` shows: the worker's phase, adjusted by what was asked since.
pub fn effective_phase(request: &Request, progress: &Progress) -> Phase {
    if progress.phase == Phase::Done {
        return Phase::Done;
    }
    if request.cancelled && progress.phase != Phase::Running {
        return Phase::Cancelled;
    }
    if request.paused && progress.phase != Phase::Running {
        return Phase::Paused;
    }
    match progress.phase {
        Phase::Running | Phase::WaitingWindow | Phase::WaitingCap => progress.phase,
        // Waiting to be retried: failed until then.
        Phase::Failed if progress.retry_pending(request) => Phase::Failed,
        _ if request.seq > progress.handled_seq => Phase::Queued,
        other => other,
    }
}

struct Running {
    /// Renews XOAUTH2 tokens; a refresh token it rotated to is stored at the end.
    oauth: Option<Arc<crate::oauth::OAuthSession>>,
    control: watch::Sender<Control>,
    /// The pass's outcome, its last progress and how long it ran.
    task: JoinHandle<(Result<Outcome, MigrateError>, Progress, Duration)>,
    pass: Pass,
    seq: u64,
}

pub struct Worker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    owner: String,
    global_limit: Arc<RateLimiter>,
    running: HashMap<MigrationId, Running>,
    /// Woken when a pass ends, so the next one starts (and `run` returns) at once.
    ended: Arc<tokio::sync::Notify>,
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, config: WorkerConfig) -> Worker {
        Worker {
            store,
            config,
            owner: owner_name(),
            global_limit: Arc::new(RateLimiter::new(None)),
            running: HashMap::new(),
            ended: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Runs until `shutdown` turns true; running passes are stopped (they resume on the
    /// next start) and their leases given back.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "migration worker");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.ended.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        self.stop_all().await;
    }

    /// Runs until nothing is queued or running (`tern migrate run`). Migrations waiting
    /// for a window or the daily cap count as nothing to do.
    pub async fn run_until_idle(mut self) -> Result<(), MigrateError> {
        loop {
            self.tick().await?;
            if self.running.is_empty() && !self.anything_queued().await? {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK / 4) => {}
                _ = self.ended.notified() => {}
            }
        }
    }

    async fn anything_queued(&self) -> Result<bool, MigrateError> {
        let schedule = self.schedule().await;
        Ok(self.store.migrations().await?.iter().any(|m| {
            let (request, progress) = (parse_request(m), parse_progress(m));
            let waits_for_window = request.pass.windowed() && !schedule.is_open(chrono::Utc::now());
            effective_phase(&request, &progress) == Phase::Queued && !waits_for_window
        }))
    }

    async fn schedule(&self) -> Schedule {
        match self.store.setting(schedule::SETTING).await {
            Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
            _ => Schedule::default(),
        }
    }

    async fn stop_all(&mut self) {
        for (id, r) in self.running.drain() {
            let _ = r.control.send(Control::Pause);
            if let Ok((_, mut progress, _)) = r.task.await {
                // Not handled: the next start of a worker resumes it.
                progress.phase = Phase::Queued;
                let _ = self
                    .store
                    .set_migration_progress(id, &serde_json::to_string(&progress).unwrap_or_default())
                    .await;
            }
            let _ = self.store.release_migration(id, &self.owner).await;
        }
    }

    /// One look at the store: finish, steer and start passes.
    pub async fn tick(&mut self) -> Result<(), MigrateError> {
        let schedule = self.schedule().await;
        self.global_limit.set_rate(schedule.max_rate);
        let open = schedule.is_open(chrono::Utc::now());

        // Finished passes.
        let done: Vec<MigrationId> = self
            .running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(r) = self.running.remove(&id) {
                self.finish(id, r).await?;
            }
        }
        // Read after finishing, so a pass that just ended is seen as handled.
        let migrations = self.store.migrations().await?;

        // Steer running passes, renew their leases.
        for m in &migrations {
            let Some(r) = self.running.get(&m.id) else { continue };
            let request = parse_request(m);
            let control = if request.cancelled {
                Control::Cancel
            } else if request.paused {
                Control::Pause
            } else if r.pass.windowed() && !open {
                Control::WindowClosed
            } else if request.seq > r.seq {
                // A new request (another pass) supersedes the running one: stop it
                // here; it is started again with the new request next tick.
                Control::Pause
            } else {
                Control::Run
            };
            if *r.control.borrow() != control {
                let _ = r.control.send(control);
            }
            self.store
                .claim_migration(m.id, &self.owner, now() + LEASE_SECS, None)
                .await?;
        }

        // Start what is asked for.
        for m in &migrations {
            if self.running.len() >= schedule.mailboxes_in_parallel.max(1) {
                break;
            }
            if self.running.contains_key(&m.id) {
                continue;
            }
            let request = parse_request(m);
            let mut progress = parse_progress(m);
            let wants = request.seq > progress.handled_seq
                && !request.paused
                && !request.cancelled
                && progress.phase != Phase::Done;
            if !wants {
                continue;
            }
            if progress.phase == Phase::WaitingCap && progress.day == now() / 86_400 {
                continue;
            }
            if progress.retry_pending(&request) {
                continue;
            }
            if request.pass.windowed() && !open {
                if progress.phase != Phase::WaitingWindow {
                    progress.phase = Phase::WaitingWindow;
                    self.store
                        .set_migration_progress(m.id, &serde_json::to_string(&progress).unwrap_or_default())
                        .await?;
                }
                continue;
            }
            let dead = m
                .lease
                .as_ref()
                .filter(|(owner, _)| is_dead_local_owner(owner, &self.owner))
                .map(|(owner, _)| owner.clone());
            if !self
                .store
                .claim_migration(m.id, &self.owner, now() + LEASE_SECS, dead.as_deref())
                .await?
            {
                continue;
            }
            self.start(m.clone(), request, progress, &schedule).await?;
        }
        Ok(())
    }

    async fn start(
        &mut self,
        m: Migration,
        request: Request,
        mut progress: Progress,
        schedule: &Schedule,
    ) -> Result<(), MigrateError> {
        let (control_tx, control_rx) = watch::channel(Control::Run);
        let pass = request.pass;
        progress.phase = Phase::Running;
        progress.pass = Some(pass);
        progress.started = Some(now());
        progress.finished = None;
        progress.last_error = None;
        progress.retry_at = None;
        progress.pass_copied = 0;
        progress.copied_bytes = 0;
        progress.skipped = 0;
        progress.flag_updates = 0;
        progress.deleted = 0;
        progress.errors = 0;
        progress.rate = 0.0;
        let reporter = Arc::new(Reporter::new(self.store.clone(), m.id, progress.clone()));
        reporter.save(true).await?;
        let prepared = self.prepare(&m, request.clone(), control_rx, schedule).await;
        let oauth = prepared.as_ref().ok().and_then(|p| p.login.oauth.clone());
        let seq = request.seq;
        let ended = self.ended.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = match prepared {
                Ok(input) => pass::run(input, reporter.clone()).await,
                Err(e) => Err(e),
            };
            let took = started.elapsed();
            ended.notify_one();
            (result, reporter.snapshot(), took)
        });
        tracing::info!(mailbox = %m.address, pass = pass.name(), "migration pass started");
        self.running.insert(
            m.id,
            Running {
                oauth,
                control: control_tx,
                task,
                pass,
                seq,
            },
        );
        Ok(())
    }

    async fn prepare(
        &self,
        m: &Migration,
        request: Request,
        control: watch::Receiver<Control>,
        schedule: &Schedule,
    ) -> Result<PassInput, MigrateError> {
        let (source, settings) = crate::source::load(&*self.store, &m.source).await?;
        let login = login_for(&self.config.secrets, m, &source, &settings)?;
        Ok(PassInput {
            store: self.store.clone(),
            migration: m.clone(),
            settings,
            login,
            pass: request.pass,
            request,
            max_message_size: self.config.max_message_size,
            global_limit: self.global_limit.clone(),
            mailbox_limit: schedule.mailbox_max_rate,
            control,
        })
    }

    async fn finish(&mut self, id: MigrationId, r: Running) -> Result<(), MigrateError> {
        let (result, mut progress, took) = match r.task.await {
            Ok(done) => done,
            Err(e) => (
                Err(MigrateError::Config(format!("the pass stopped unexpectedly: {e}"))),
                Progress::default(),
                Duration::ZERO,
            ),
        };
        progress.finished = Some(now());
        progress.duration_ms = took.as_millis() as u64;
        if let Some(rotated) = r.oauth.as_ref().and_then(|o| o.take_rotated()) {
            let sealed = self
                .config
                .secrets
                .seal(&serde_json::to_string(&Credential::Refresh { refresh_token: rotated }).unwrap_or_default());
            self.store.set_migration_secret(id, Some(sealed)).await?;
        }
        match result {
            Ok(Outcome::Completed) => {
                progress.handled_seq = r.seq;
                if r.pass == Pass::Finish {
                    // The last pass is in: the old provider's credentials go.
                    self.store.set_migration_secret(id, None).await?;
                    progress.phase = Phase::Done;
                    self.wipe_admin_secret_when_all_done(id, &progress).await?;
                } else {
                    progress.phase = Phase::Passed;
                }
            }
            Ok(Outcome::Stopped(Control::Cancel)) => {
                progress.handled_seq = r.seq;
                progress.phase = Phase::Cancelled;
            }
            Ok(Outcome::Stopped(Control::WindowClosed)) => progress.phase = Phase::WaitingWindow,
            Ok(Outcome::Stopped(_)) => progress.phase = Phase::Paused,
            Ok(Outcome::DailyCapReached) => progress.phase = Phase::WaitingCap,
            Err(e) => {
                tracing::warn!(error = %e, "migration pass failed");
                progress.phase = Phase::Failed;
                progress.last_error = Some(e.to_string());
                if e.is_transient() {
                    // Not handled: the same pass runs again later by itself.
                    progress.retry_at = Some(now() + RETRY_AFTER_SECS);
                    progress.retry_seq = r.seq;
                } else {
                    progress.handled_seq = r.seq;
                }
            }
        }
        tracing::info!(
            migration = id.0,
            phase = progress.phase.name(),
            copied = progress.pass_copied,
            "migration pass ended"
        );
        self.store
            .set_migration_progress(id, &serde_json::to_string(&progress).unwrap_or_default())
            .await?;
        self.store.release_migration(id, &self.owner).await?;
        Ok(())
    }

    /// A source's admin password goes once every migration through it is done.
    async fn wipe_admin_secret_when_all_done(
        &self,
        just_done: MigrationId,
        progress: &Progress,
    ) -> Result<(), MigrateError> {
        let all = self.store.migrations().await?;
        let Some(source) = all.iter().find(|m| m.id == just_done).map(|m| m.source.clone()) else {
            return Ok(());
        };
        let all_done = all
            .iter()
            .filter(|m| m.source == source)
            .all(|m| m.id == just_done || parse_progress(m).phase == Phase::Done);
        if !all_done || progress.phase != Phase::Done {
            return Ok(());
        }
        if let Some(mut s) = self
            .store
            .migration_sources()
            .await?
            .into_iter()
            .find(|s| s.name == source && s.secret.is_some())
        {
            s.secret = None;
            self.store.put_migration_source(s).await?;
        }
        Ok(())
    }
}

/// How a migration logs in: its own sealed credential, or the source's admin.
pub fn login_for(
    secrets: &SecretBox,
    m: &Migration,
    source: &tern_store::MigrationSource,
    settings: &SourceSettings,
) -> Result<Login, MigrateError> {
    if let Some(sealed) = &m.secret {
        let credential: Credential = serde_json::from_str(&secrets.open(sealed)?)
            .map_err(|_| MigrateError::Config("a stored credential is unreadable; add it again".into()))?;
        let oauth = match &credential {
            Credential::Refresh { refresh_token } => {
                let client = settings.oauth.clone().ok_or_else(|| {
                    MigrateError::Config(format!(
                        "source {:?} has no token endpoint for refresh tokens: add it again with --token-endpoint and --client-id",
                        m.source
                    ))
                })?;
                let client_secret = source.secret.as_ref().map(|s| secrets.open(s)).transpose()?;
                let tls = (*crate::connect::client_config(settings)?).clone();
                Some(Arc::new(crate::oauth::OAuthSession::new(
                    client,
                    client_secret,
                    refresh_token.clone(),
                    tls,
                )?))
            }
            _ => None,
        };
        return Ok(Login {
            user: m.remote_user.clone(),
            credential,
            admin_user: None,
            oauth,
        });
    }
    match (&settings.admin_user, &source.secret) {
        (Some(admin), Some(sealed)) => Ok(Login {
            user: m.remote_user.clone(),
            credential: Credential::Password {
                password: secrets.open(sealed)?,
            },
            admin_user: Some(admin.clone()),
            oauth: None,
        }),
        _ => Err(MigrateError::Config(format!(
            "no credentials for {} (wiped by finish, or never given): add them with tern migrate add",
            m.address
        ))),
    }
}
