//! One pass over one mailbox: list the source's folders, decide where each goes, then
//! per folder copy what the map does not have yet, oldest first, and bring flag changes
//! (and, when asked, deletions) over.
//!
//! What makes a pass safe to interrupt anywhere: each appended batch carries its map
//! entries into the same store transaction (`NewMessage::migrated_from`), and a
//! folder's sync point (UIDNEXT, HIGHESTMODSEQ) is saved only after the folder is
//! complete. A pass killed at any moment resumes by listing again and skipping what the
//! map has: no message is lost or copied twice.
//!
//! What makes it safe beside users: a pass only appends, and changes the flags of a
//! message only if nobody changed it in Tern since the migration wrote it (its MODSEQ is
//! still the one in the map; RFC 7162 UNCHANGEDSINCE). Messages a user moved or deleted
//! stay in the map and are never brought back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tern_store::{
    Expunge, FlagOp, Flags, MailboxId, MigratedMessage, Migration, MigrationFolder, MigrationFolderId, MigrationOrigin,
    NewMessage, Store, StoreError, Uid,
};
use tokio::sync::{mpsc, watch};

use crate::folders::{self, Plan};
use crate::imap_source::{FetchedMessage, ImapSource, MessageInfo};
use crate::source::{Login, Protocol, SourceSettings};
use crate::state::{FolderState, Pass, Progress, Request};
use crate::throttle::RateLimiter;
use crate::{MigrateError, now};

/// A UID FETCH asks for at most this many bodies...
const BATCH_MESSAGES: usize = 256;
/// ...or this many bytes (one message larger than this goes alone). A connection holds
/// up to three batches (one downloading, one queued, one being stored), so this bounds
/// a pass's memory: on the migration benchmark 8 MiB batches peaked at 164 MB, 2 MiB at
/// 95 MB and 1 MiB at 57-75 MB, at 86, 73-83 and 66-69 MB/s (docs/BENCHMARKS.md).
const BATCH_BYTES: u64 = 1 << 20;
/// Messages larger than a batch (up to limits.max_message_size) are held in memory
/// whole while fetched and stored; only one at a time in the process, so memory stays
/// bounded by a few batches plus one such message whatever the parallelism.
static LARGE_MESSAGES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
/// Folder attempts after a dropped connection or throttling before the folder is
/// reported as failed.
const FOLDER_ATTEMPTS: u32 = 4;

/// What the worker tells a running pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Run,
    Pause,
    Cancel,
    /// The schedule's window closed (pre-stage passes).
    WindowClosed,
}

/// How a pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every folder was synced (some messages may have failed: see the progress).
    Completed,
    /// Stopped early on the worker's word; the next pass resumes.
    Stopped(Control),
    /// The source's daily download cap is used up (Gmail); resumes tomorrow.
    DailyCapReached,
}

/// Everything a pass needs.
pub struct PassInput {
    pub store: Arc<dyn Store>,
    pub migration: Migration,
    pub settings: SourceSettings,
    pub login: Login,
    pub request: Request,
    pub pass: Pass,
    /// limits.max_message_size: larger messages are skipped with a reason.
    pub max_message_size: u64,
    pub global_limit: Arc<RateLimiter>,
    pub mailbox_limit: Option<u64>,
    pub control: watch::Receiver<Control>,
}

/// The progress document, shared by a pass's connections and saved every second.
pub struct Reporter {
    store: Arc<dyn Store>,
    migration: tern_store::MigrationId,
    progress: Mutex<Progress>,
    last_save: Mutex<Instant>,
    started: Instant,
}

impl Reporter {
    pub fn new(store: Arc<dyn Store>, migration: tern_store::MigrationId, progress: Progress) -> Reporter {
        Reporter {
            store,
            migration,
            progress: Mutex::new(progress),
            last_save: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut p) = self.progress.lock() {
            f(&mut p);
            let secs = self.started.elapsed().as_secs_f64();
            if secs > 0.5 {
                p.rate = p.copied_bytes as f64 / secs;
            }
        }
    }

    pub fn snapshot(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Saves if a second has passed since the last save, or always with `force`.
    pub async fn save(&self, force: bool) -> Result<(), StoreError> {
        {
            let Ok(mut last) = self.last_save.lock() else {
                return Ok(());
            };
            if !force && last.elapsed().as_millis() < 1000 {
                return Ok(());
            }
            *last = Instant::now();
        }
        let json = serde_json::to_string(&self.snapshot()).unwrap_or_else(|_| "{}".into());
        self.store.set_migration_progress(self.migration, &json).await
    }
}

/// What the folders of a pass share.
pub(crate) struct Shared {
    pub input: PassInput,
    pub reporter: Arc<Reporter>,
    mailbox_limit: RateLimiter,
}

impl Shared {
    fn control(&self) -> Control {
        *self.input.control.borrow()
    }

    /// Waits out the rate caps for `bytes` and checks the daily cap.
    pub(crate) async fn account_bytes(&self, bytes: u64) -> Result<(), Outcome> {
        self.input.global_limit.consume(bytes).await;
        self.mailbox_limit.consume(bytes).await;
        let today = now() / 86_400;
        let mut over = false;
        self.reporter.update(|p| {
            if p.day != today {
                p.day = today;
                p.day_bytes = 0;
            }
            p.day_bytes += bytes;
            if let Some(cap) = self.input.settings.daily_bytes {
                over = p.day_bytes >= cap;
            }
        });
        if over { Err(Outcome::DailyCapReached) } else { Ok(()) }
    }

    pub(crate) fn check_control(&self) -> Result<(), Outcome> {
        match self.control() {
            Control::Run => Ok(()),
            other => Err(Outcome::Stopped(other)),
        }
    }
}

/// A source message's key in the map: its UID within the folder's UIDVALIDITY, so
/// entries from before a UIDVALIDITY change are told apart from current ones.
pub fn imap_key(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity}:{uid}")
}

fn parse_imap_key(key: &str) -> Option<(u32, u32)> {
    let (v, u) = key.split_once(':')?;
    Some((v.parse().ok()?, u.parse().ok()?))
}

/// Runs one pass over one mailbox.
pub async fn run(input: PassInput, reporter: Arc<Reporter>) -> Result<Outcome, MigrateError> {
    let mailbox_limit = RateLimiter::new(input.mailbox_limit);
    let shared = Arc::new(Shared {
        input,
        reporter,
        mailbox_limit,
    });
    match shared.input.settings.protocol {
        Protocol::Imap => run_imap(shared).await,
        Protocol::Pop3 => crate::pop3_source::run_pass(&shared).await,
    }
}

/// A source folder with its record and decoded state.
struct FolderJob {
    wire_name: String,
    record: MigrationFolder,
    state: FolderState,
}

async fn run_imap(shared: Arc<Shared>) -> Result<Outcome, MigrateError> {
    let input = &shared.input;
    let mut attempt = 0;
    let mut lister = loop {
        attempt += 1;
        match ImapSource::connect(&input.settings, &input.login).await {
            Ok(c) => break c,
            // A source that cannot be reached at all fails the pass at once (the worker
            // tries it again later); a dropped connection or throttling is waited out.
            Err(e) if e.is_transient() && !matches!(e, MigrateError::Connect { .. }) && attempt < FOLDER_ATTEMPTS => {
                if let Err(outcome) = shared.check_control() {
                    return Ok(outcome);
                }
                backoff(&shared, attempt, &e).await;
            }
            Err(e) => return Err(e),
        }
    };
    let listed = lister.folders().await?;
    let namespace = match &input.request.user_root {
        Some(root) => lister.namespace.clone().with_root(root),
        None => lister.namespace.clone(),
    };
    let known: HashMap<String, MigrationFolder> = input
        .store
        .migration_folders(input.migration.id)
        .await?
        .into_iter()
        .map(|f| (f.source_name.clone(), f))
        .collect();
    let mut jobs = Vec::new();
    let mut seen = HashSet::new();
    for folder in &listed {
        let (target, special_use) = match folders::plan(folder, &namespace, &input.settings.rules) {
            Plan::Copy { target, special_use } => (target, special_use),
            Plan::Skip { reason } => {
                tracing::debug!(folder = %folder.wire_name, %reason, "not copied");
                continue;
            }
        };
        seen.insert(folder.wire_name.clone());
        let mailbox = target_mailbox(&*input.store, input.migration.account, &target, special_use).await?;
        let mut state: FolderState = known
            .get(&folder.wire_name)
            .and_then(|f| serde_json::from_str(&f.state).ok())
            .unwrap_or_default();
        state.target = mailbox.name.clone();
        state.gone = false;
        let record = input
            .store
            .put_migration_folder(
                input.migration.id,
                &folder.wire_name,
                mailbox.id,
                &serde_json::to_string(&state).unwrap_or_default(),
            )
            .await?;
        jobs.push(FolderJob {
            wire_name: folder.wire_name.clone(),
            record,
            state,
        });
    }
    // Folders deleted at the source: kept in Tern, marked so reports say why.
    for (name, f) in &known {
        if !seen.contains(name) {
            let mut state: FolderState = serde_json::from_str(&f.state).unwrap_or_default();
            if !state.gone {
                state.gone = true;
                input
                    .store
                    .put_migration_folder(
                        f.migration,
                        name,
                        f.mailbox,
                        &serde_json::to_string(&state).unwrap_or_default(),
                    )
                    .await?;
            }
        }
    }
    shared.reporter.update(|p| {
        p.source_messages = jobs.iter().map(|j| j.state.source_messages).sum();
        p.source_bytes = jobs.iter().map(|j| j.state.source_bytes).sum();
        p.copied = jobs.iter().map(|j| j.state.copied).sum();
    });

    // Folders are shared out over the connections; the lister is the first of them.
    let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<std::collections::VecDeque<_>>()));
    let connections = input.settings.connections.max(1);
    let mut workers = tokio::task::JoinSet::new();
    let mut first = Some(lister);
    for _ in 0..connections {
        workers.spawn(folder_worker(shared.clone(), queue.clone(), first.take()));
    }
    let mut outcome = Outcome::Completed;
    let mut fatal = None;
    while let Some(result) = workers.join_next().await {
        match result {
            Ok(Ok(Outcome::Completed)) => {}
            Ok(Ok(other)) => outcome = other,
            Ok(Err(e)) => fatal = Some(e),
            Err(e) => fatal = Some(MigrateError::Config(format!("a migration task failed: {e}"))),
        }
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(outcome)
}

/// One connection's share of the folders: takes the next folder until none is left.
/// A dropped connection or throttling reconnects (with backoff) and retries the folder;
/// a folder that keeps failing is reported and the others go on.
async fn folder_worker(
    shared: Arc<Shared>,
    queue: Arc<Mutex<std::collections::VecDeque<FolderJob>>>,
    mut conn: Option<ImapSource>,
) -> Result<Outcome, MigrateError> {
    loop {
        if let Err(outcome) = shared.check_control() {
            return Ok(outcome);
        }
        let Some(mut job) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
            if let Some(c) = conn.take() {
                c.logout().await;
            }
            return Ok(Outcome::Completed);
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let source = match conn.as_mut() {
                Some(c) => c,
                None => match ImapSource::connect(&shared.input.settings, &shared.input.login).await {
                    Ok(c) => conn.insert(c),
                    Err(e) if e.is_transient() && attempt < FOLDER_ATTEMPTS => {
                        backoff(&shared, attempt, &e).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            match sync_folder(&shared, source, &mut job).await {
                Ok(Ok(())) => break,
                Ok(Err(outcome)) => return Ok(outcome),
                Err(e) if e.is_transient() && attempt < FOLDER_ATTEMPTS => {
                    conn = None;
                    backoff(&shared, attempt, &e).await;
                }
                Err(MigrateError::Store(e @ StoreError::QuotaExceeded { .. })) => {
                    return Err(MigrateError::Store(e));
                }
                Err(e) => {
                    // Reported; the folder is tried again by the next pass.
                    let text = e.to_string();
                    tracing::warn!(folder = %job.wire_name, error = %text, "folder not synced");
                    shared.reporter.update(|p| p.record_error(&job.wire_name, "", &text));
                    if e.is_transient() {
                        conn = None;
                    }
                    break;
                }
            }
        }
        let _ = shared.reporter.save(false).await;
    }
}

/// Waits before retrying: 5 s, 20 s, 80 s... (capped at 10 minutes); longer when the
/// source said it is throttling us.
async fn backoff(shared: &Shared, attempt: u32, e: &MigrateError) {
    let base = if matches!(e, MigrateError::Throttled { .. }) {
        30
    } else {
        5
    };
    let secs = (base * 4u64.pow(attempt.saturating_sub(1))).min(600);
    tracing::info!(error = %e, retry_in = secs, "source trouble; backing off");
    let mut control = shared.input.control.clone();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(secs), control.changed()).await;
}

/// The Tern folder a source folder goes to, created if needed. A special-use target is
/// found by its attribute, so a renamed Sent folder still receives sent mail.
async fn target_mailbox(
    store: &dyn Store,
    account: tern_store::AccountId,
    target: &str,
    special_use: Option<tern_store::SpecialUse>,
) -> Result<tern_store::Mailbox, MigrateError> {
    if let Some(u) = special_use
        && let Some(m) = store
            .mailboxes(account)
            .await?
            .into_iter()
            .find(|m| m.special_use == Some(u))
    {
        return Ok(m);
    }
    match store.mailbox(account, target).await {
        Ok(m) => Ok(m),
        Err(StoreError::NoSuchMailbox(_)) => match store.create_mailbox(account, target, special_use).await {
            Ok(m) => Ok(m),
            // Created meanwhile by the user or another connection.
            Err(StoreError::MailboxExists(_)) => Ok(store.mailbox(account, target).await?),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Syncs one folder. `Ok(Err(outcome))` when the worker asked the pass to stop.
async fn sync_folder(
    shared: &Shared,
    source: &mut ImapSource,
    job: &mut FolderJob,
) -> Result<Result<(), Outcome>, MigrateError> {
    let input = &shared.input;
    let store = &*input.store;
    let pass = input.pass;
    let state = &mut job.state;
    let completed_before = state.uidnext > 0;

    // A delta over a folder with nothing new: one STATUS, nothing else (RFC 7162 §3.1.2.3
    // gives HIGHESTMODSEQ in STATUS; without CONDSTORE flag changes can't be seen so).
    if matches!(pass, Pass::Delta | Pass::Finish) && completed_before && source.condstore && state.failed.is_empty() {
        let st = source.status(&job.wire_name).await?;
        if st.uidvalidity == state.uidvalidity
            && st.uidnext == state.uidnext
            && st.messages == state.messages
            && st.highest_modseq == state.highest_modseq
            && !(input.request.propagate_deletions && input.request.cutover.is_none())
        {
            return Ok(Ok(()));
        }
    }

    // The Tern folder may have been deleted or renamed by its user meanwhile.
    let mailbox = match store.mailbox_by_id(job.record.mailbox).await {
        Ok(m) => m,
        Err(StoreError::NoSuchMailbox(_)) => {
            let m = target_mailbox(store, input.migration.account, &state.target, None).await?;
            job.record = store
                .put_migration_folder(job.record.migration, &job.wire_name, m.id, &job.record.state)
                .await?;
            m
        }
        Err(e) => return Err(e.into()),
    };
    state.target = mailbox.name.clone();

    let st = source.examine(&job.wire_name).await?;
    let validity_changed = state.uidvalidity != 0 && st.uidvalidity != state.uidvalidity;
    let map = store.migrated_messages(job.record.id).await?;
    let mut current: HashMap<u32, MigratedMessage> = HashMap::new();
    let mut stale = Vec::new();
    for entry in map {
        match parse_imap_key(&entry.source_key) {
            Some((v, uid)) if v == st.uidvalidity => {
                current.insert(uid, entry);
            }
            _ => stale.push(entry),
        }
    }

    let list_all = pass.lists_everything() || !completed_before || validity_changed;
    let from = if list_all { 1 } else { state.uidnext };
    let listing = if st.messages == 0 {
        Vec::new()
    } else {
        source.list_messages(from).await?
    };
    let (old_messages, old_bytes) = (state.source_messages, state.source_bytes);
    if list_all {
        state.source_messages = listing.len() as u64;
        state.source_bytes = listing.iter().map(|m| m.size).sum();
        state.skipped.clear();
        state.failed.clear();
    } else {
        state.source_messages = u64::from(st.messages);
        state.source_bytes += listing.iter().map(|m| m.size).sum::<u64>();
    }
    shared.reporter.update(|p| {
        p.source_messages = (p.source_messages + state.source_messages).saturating_sub(old_messages);
        p.source_bytes = (p.source_bytes + state.source_bytes).saturating_sub(old_bytes);
    });

    // What to copy, oldest (lowest UID) first.
    let mut todo = Vec::new();
    for m in &listing {
        if current.contains_key(&m.uid) {
            continue;
        }
        if let Some(reason) = skip_reason(m, &input.request, input.max_message_size) {
            *state.skipped.entry(reason).or_default() += 1;
            shared.reporter.update(|p| p.skipped += 1);
            continue;
        }
        todo.push(m.clone());
    }

    // After a UIDVALIDITY change the old entries' messages are matched by content
    // instead of copied again; candidates are the Tern messages no current entry uses.
    let candidates = if stale.is_empty() {
        HashMap::new()
    } else {
        rematch_candidates(store, mailbox.id, &stale, &current).await?
    };

    let mut copier = Copier::new(input.store.clone(), job.record.id, mailbox.id, &job.wire_name);
    copier.uidvalidity = st.uidvalidity;
    copier.candidates = Mutex::new(candidates);
    let copied = copy_messages(shared, source, &copier, &todo).await?;
    let stopped = copied.err();
    let failed = copier.failed();
    state.errors = failed.len() as u64;
    state.failed = failed;

    if stopped.is_none() {
        // Flags: from the full listing when we have it, else only what changed.
        let changes: Vec<(u32, Flags)> = if from == 1 {
            listing.iter().map(|m| (m.uid, m.flags.clone())).collect()
        } else {
            let since =
                (source.condstore && state.highest_modseq > 0 && pass != Pass::Full).then_some(state.highest_modseq);
            source.flags(from, since).await?
        };
        let map_now = store.migrated_messages(job.record.id).await?;
        let entries: HashMap<u32, MigratedMessage> = map_now
            .into_iter()
            .filter_map(|e| match parse_imap_key(&e.source_key) {
                Some((v, uid)) if v == st.uidvalidity => Some((uid, e)),
                _ => None,
            })
            .collect();
        let updated = apply_flags(store, mailbox.id, job.record.id, &entries, &changes).await?;
        shared.reporter.update(|p| p.flag_updates += updated);

        if input.request.propagate_deletions && input.request.cutover.is_none() {
            let present: HashSet<u32> = source.uids().await?.into_iter().collect();
            let gone: Vec<&MigratedMessage> = entries
                .iter()
                .filter(|(uid, _)| !present.contains(uid))
                .map(|(_, e)| e)
                .collect();
            if !gone.is_empty() {
                let uids: Vec<Uid> = gone.iter().map(|e| e.uid).collect();
                let removed = store.expunge(mailbox.id, Expunge::Uids(uids)).await?;
                store
                    .forget_migrated(job.record.id, Some(gone.iter().map(|e| e.source_key.clone()).collect()))
                    .await?;
                shared.reporter.update(|p| p.deleted += removed.len() as u64);
            }
        }
        // Entries of an old UIDVALIDITY whose message was not found again are dropped
        // once the folder is complete.
        if !stale.is_empty() {
            store
                .forget_migrated(
                    job.record.id,
                    Some(stale.iter().map(|e| e.source_key.clone()).collect()),
                )
                .await?;
        }
        let count = entries.len() as u64;
        state.copied = count;
        state.uidvalidity = st.uidvalidity;
        state.uidnext = st.uidnext;
        state.highest_modseq = st.highest_modseq;
        state.messages = st.messages;
    } else if !completed_before {
        // Keep the UIDVALIDITY we copied under, so a resumed pass knows its entries.
        state.uidvalidity = st.uidvalidity;
    }
    let json = serde_json::to_string(&*state).unwrap_or_default();
    job.record = store
        .put_migration_folder(job.record.migration, &job.wire_name, mailbox.id, &json)
        .await?;
    Ok(match stopped {
        None => Ok(()),
        Some(outcome) => Err(outcome),
    })
}

/// Why a listed message is not copied, if it isn't.
fn skip_reason(m: &MessageInfo, request: &Request, max_size: u64) -> Option<String> {
    if m.size > max_size {
        return Some(format!("larger than limits.max_message_size ({max_size} bytes)"));
    }
    if let (Some(since), Some(date)) = (request.since, m.internal_date)
        && date < since
    {
        return Some("older than --since".into());
    }
    if let (Some(before), Some(date)) = (request.before, m.internal_date)
        && date >= before
    {
        return Some("not older than --before".into());
    }
    None
}

/// Tern messages of a folder's stale entries, by content hash.
async fn rematch_candidates(
    store: &dyn Store,
    mailbox: MailboxId,
    stale: &[MigratedMessage],
    current: &HashMap<u32, MigratedMessage>,
) -> Result<HashMap<tern_store::ContentHash, Vec<Uid>>, MigrateError> {
    let used: HashSet<Uid> = current.values().map(|e| e.uid).collect();
    let wanted: HashSet<Uid> = stale.iter().map(|e| e.uid).filter(|u| !used.contains(u)).collect();
    let mut out: HashMap<tern_store::ContentHash, Vec<Uid>> = HashMap::new();
    for (uid, hash) in store.content_hashes(mailbox).await? {
        if wanted.contains(&uid) {
            out.entry(hash).or_default().push(uid);
        }
    }
    Ok(out)
}

/// Appends fetched messages with their map entries, or maps them to messages already
/// there (after a UIDVALIDITY change).
pub(crate) struct Copier {
    pub store: Arc<dyn Store>,
    pub folder: MigrationFolderId,
    pub mailbox: MailboxId,
    pub folder_name: String,
    pub uidvalidity: u32,
    pub candidates: Mutex<HashMap<tern_store::ContentHash, Vec<Uid>>>,
    /// Source keys of messages that could not be stored (why is in the progress).
    pub failures: Mutex<Vec<String>>,
}

/// One message on its way in.
pub(crate) struct Incoming {
    pub key: String,
    pub raw: Vec<u8>,
    pub flags: Flags,
    pub internal_date: Option<i64>,
    pub pop3_uidl: Option<String>,
}

impl Copier {
    pub fn new(store: Arc<dyn Store>, folder: MigrationFolderId, mailbox: MailboxId, folder_name: &str) -> Copier {
        Copier {
            store,
            folder,
            mailbox,
            folder_name: folder_name.to_string(),
            uidvalidity: 0,
            candidates: Mutex::new(HashMap::new()),
            failures: Mutex::new(Vec::new()),
        }
    }

    pub fn failed(&self) -> Vec<String> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn new_message(&self, m: Incoming) -> NewMessage {
        NewMessage {
            raw: m.raw,
            flags: m.flags,
            internal_date: m.internal_date,
            pop3_uidl: m.pop3_uidl,
            migrated_from: Some(MigrationOrigin {
                folder: self.folder,
                source_key: m.key,
            }),
        }
    }

    /// Stores a batch in one transaction (falling back to one at a time when one
    /// message is refused, so one bad message does not hold back the rest).
    pub async fn put(&self, reporter: &Reporter, batch: Vec<Incoming>) -> Result<(), MigrateError> {
        let mut fresh = Vec::with_capacity(batch.len());
        let mut matched = Vec::new();
        {
            let mut candidates = self
                .candidates
                .lock()
                .map_err(|_| MigrateError::Config("poisoned".into()))?;
            for m in batch {
                if !candidates.is_empty()
                    && let Some(uids) = candidates.get_mut(&tern_store::content_hash(&m.raw))
                    && let Some(uid) = uids.pop()
                {
                    matched.push((m.key, uid));
                    continue;
                }
                fresh.push(m);
            }
        }
        if !matched.is_empty() {
            let uids: Vec<Uid> = matched.iter().map(|(_, u)| *u).collect();
            let modseqs: HashMap<Uid, u64> = self
                .store
                .messages_by_uid(self.mailbox, &uids)
                .await?
                .into_iter()
                .map(|s| (s.uid, s.modseq))
                .collect();
            let entries = matched
                .into_iter()
                .filter_map(|(key, uid)| {
                    modseqs.get(&uid).map(|&modseq| MigratedMessage {
                        source_key: key,
                        uid,
                        modseq,
                    })
                })
                .collect();
            self.store.record_migrated(self.folder, entries).await?;
        }
        // The store refuses an empty message; say so for that one message rather
        // than failing its batch (an empty "message" is a broken source, not mail).
        fresh.retain(|m| {
            if m.raw.is_empty() {
                self.fail(reporter, &m.key, "the source returned an empty message");
            }
            !m.raw.is_empty()
        });
        if fresh.is_empty() {
            return Ok(());
        }
        let count = fresh.len() as u64;
        let bytes: u64 = fresh.iter().map(|m| m.raw.len() as u64).sum();
        // No copy of the batch is kept: what the store refuses for a whole batch (disk,
        // quota, a vanished mailbox) is not about one message, and the folder is tried
        // again.
        let messages: Vec<NewMessage> = fresh.into_iter().map(|m| self.new_message(m)).collect();
        self.store.append(self.mailbox, messages).await?;
        reporter.update(|p| {
            p.copied += count;
            p.pass_copied += count;
            p.copied_bytes += bytes;
        });
        Ok(())
    }

    fn fail(&self, reporter: &Reporter, key: &str, error: &str) {
        tracing::warn!(folder = %self.folder_name, message = %key, %error, "message not copied");
        if let Ok(mut f) = self.failures.lock() {
            f.push(key.to_string());
        }
        reporter.update(|p| p.record_error(&self.folder_name, key, error));
    }
}

/// Splits the UIDs to fetch into batches of bounded count and size.
fn batches(todo: &[MessageInfo], max_bytes: u64) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for m in todo {
        if !current.is_empty() && (current.len() >= BATCH_MESSAGES || bytes + m.size > max_bytes) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(m.uid);
        bytes += m.size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Fetches and stores `todo` in batches, the next batch downloading while the last
/// one is written.
async fn copy_messages(
    shared: &Shared,
    source: &mut ImapSource,
    copier: &Copier,
    todo: &[MessageInfo],
) -> Result<Result<(), Outcome>, MigrateError> {
    if todo.is_empty() {
        return Ok(Ok(()));
    }
    // Under a rate cap, batches of about a second's worth: progress moves steadily and
    // a pause takes effect within seconds.
    let cap = [shared.input.global_limit.rate(), shared.mailbox_limit.rate()]
        .into_iter()
        .flatten()
        .min();
    let max_bytes = cap.map_or(BATCH_BYTES, |c| c.clamp(64 << 10, BATCH_BYTES));
    let sizes: HashMap<u32, u64> = todo.iter().map(|m| (m.uid, m.size)).collect();
    let (tx, mut rx) = mpsc::channel::<(Vec<FetchedMessage>, Option<tokio::sync::SemaphorePermit<'static>>)>(1);
    let fetcher = async move {
        for uids in batches(todo, max_bytes) {
            if let Err(outcome) = shared.check_control() {
                return Ok(Err(outcome));
            }
            // A batch over the normal size is one large message: one such at a time in
            // the whole process, held until it is stored.
            let large = uids.len() == 1 && sizes.get(&uids[0]).is_some_and(|&s| s > BATCH_BYTES);
            let permit = if large {
                LARGE_MESSAGES.acquire().await.ok()
            } else {
                None
            };
            let messages = source.fetch(&uids).await?;
            let bytes = messages.iter().map(|m| m.raw.len() as u64).sum();
            let cap = shared.account_bytes(bytes).await;
            if tx.send((messages, permit)).await.is_err() {
                // The writer stopped; it reports why.
                break;
            }
            if let Err(outcome) = cap {
                return Ok(Err(outcome));
            }
        }
        Ok::<_, MigrateError>(Ok(()))
    };
    let writer = async {
        while let Some((messages, permit)) = rx.recv().await {
            let batch = messages
                .into_iter()
                .map(|m| Incoming {
                    key: imap_key(copier.uidvalidity, m.uid),
                    raw: m.raw,
                    flags: m.flags,
                    internal_date: m.internal_date,
                    pop3_uidl: None,
                })
                .collect();
            copier.put(&shared.reporter, batch).await?;
            drop(permit);
            shared.reporter.save(false).await?;
        }
        Ok::<_, MigrateError>(())
    };
    let (fetched, written) = tokio::join!(fetcher, writer);
    written?;
    fetched
}

/// Brings flag changes from the source to messages nobody changed in Tern since the
/// migration last wrote them; returns how many changed.
pub(crate) async fn apply_flags(
    store: &dyn Store,
    mailbox: MailboxId,
    folder: MigrationFolderId,
    entries: &HashMap<u32, MigratedMessage>,
    changes: &[(u32, Flags)],
) -> Result<u64, MigrateError> {
    let wanted: Vec<(&MigratedMessage, &Flags)> = changes
        .iter()
        .filter_map(|(uid, f)| entries.get(uid).map(|e| (e, f)))
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let mut uids: Vec<Uid> = wanted.iter().map(|(e, _)| e.uid).collect();
    uids.sort_unstable();
    let now: HashMap<Uid, tern_store::MessageSummary> = store
        .messages_by_uid(mailbox, &uids)
        .await?
        .into_iter()
        .map(|s| (s.uid, s))
        .collect();
    // Grouped by (MODSEQ the migration wrote, new flags): one UNCHANGEDSINCE store each.
    type Group = (Flags, Vec<(Uid, String)>);
    let mut groups: BTreeMap<(u64, Vec<String>), Group> = BTreeMap::new();
    for (entry, flags) in wanted {
        let Some(summary) = now.get(&entry.uid) else {
            continue; // moved or deleted by its user: theirs to keep
        };
        if summary.modseq != entry.modseq || summary.flags == *flags {
            continue; // changed in Tern since (the user's word wins), or already equal
        }
        groups
            .entry((entry.modseq, flags.names()))
            .or_insert_with(|| (flags.clone(), Vec::new()))
            .1
            .push((entry.uid, entry.source_key.clone()));
    }
    // All groups at once: the store's group commit makes them one durable write.
    let updates = groups.into_iter().map(|((modseq, _), (flags, members))| async move {
        let uids: Vec<Uid> = members.iter().map(|(u, _)| *u).collect();
        let keys: HashMap<Uid, String> = members.into_iter().collect();
        let update = store
            .store_flags(mailbox, &uids, FlagOp::Replace, &flags, Some(modseq))
            .await?;
        Ok::<_, StoreError>(
            update
                .updated
                .iter()
                .filter_map(|(uid, _, modseq)| {
                    keys.get(uid).map(|k| MigratedMessage {
                        source_key: k.clone(),
                        uid: *uid,
                        modseq: *modseq,
                    })
                })
                .collect::<Vec<_>>(),
        )
    });
    let mut entries = Vec::new();
    for result in futures_util::future::join_all(updates).await {
        entries.extend(result?);
    }
    let changed = entries.len() as u64;
    if !entries.is_empty() {
        store.record_migrated(folder, entries).await?;
    }
    Ok(changed)
}
