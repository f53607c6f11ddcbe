//! Go-live: noticing that a migrating domain's MX record now points at Tern, and
//! bringing over the last mail that still reached the old provider.
//!
//! The watch runs inside `tern serve` ([`Watch::run`]). For every domain with a
//! migration that is not finished it walks a domain through four phases, kept in the
//! store as the setting `golive/DOMAIN` ([`GoLive`]):
//!
//! 1. **Watching**: the public MX answer is checked every `check_interval`. When every
//!    MX record names this server on `consecutive_checks` checks in a row (one answer
//!    could come from a resolver that saw the change before the others), the cutover is
//!    declared. `tern migrate cutover DOMAIN` declares it by hand.
//! 2. **Cut over**: the cutover time is recorded on every migration of the domain (no
//!    deletions are propagated from then on), Tern's MX starts accepting the domain's
//!    mail, and a delta pass runs for every mailbox at once. More delta passes follow
//!    every `delta_interval` while mail keeps arriving at the old provider: senders
//!    with the old MX in their cache keep delivering there until its TTL runs out, and
//!    a sender retrying a deferred message may do so for days.
//! 3. **Finishing**: once no delta has found new mail for the quiet period (twice the
//!    old MX record's TTL, at least `min_quiet`), a final pass runs for every mailbox;
//!    it wipes the source credentials and marks the migration done.
//! 4. **Done**: the admin is told, by a message to the domain's postmaster mailbox and
//!    an event in the domain's go-live history (which the admin console shows).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_migrate::state::{Pass, Phase, Progress, Request};
use tern_migrate::worker::{parse_progress, parse_request, update_request};
use tern_store::{Migration, NewMessage, Store, StoreError};
use tokio::sync::watch;

use crate::check::mx_state;
use crate::resolve::Lookup;

/// The store setting holding a domain's go-live state: `golive/DOMAIN`.
pub fn setting_key(domain: &str) -> String {
    format!("golive/{}", domain.to_ascii_lowercase())
}

/// How the watch behaves (`[golive]` in tern.toml).
#[derive(Debug, Clone)]
pub struct GoLiveConfig {
    /// Watch MX records at all.
    pub watch: bool,
    /// Checks in a row that must see the MX pointing here.
    pub consecutive_checks: u32,
    pub check_interval: Duration,
    /// Between delta passes after the cutover.
    pub delta_interval: Duration,
    /// The shortest quiet period before the final pass.
    pub min_quiet: Duration,
}

impl Default for GoLiveConfig {
    fn default() -> Self {
        GoLiveConfig {
            watch: true,
            consecutive_checks: 3,
            check_interval: Duration::from_secs(300),
            delta_interval: Duration::from_secs(3600),
            min_quiet: Duration::from_secs(72 * 3600),
        }
    }
}

/// Where a domain is in going live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Mail still goes to the old provider; the MX record is watched.
    #[default]
    Watching,
    /// The MX points here; delta passes bring over what still reaches the old provider.
    CutOver,
    /// Quiet long enough: the final passes run.
    Finishing,
    /// Every migration of the domain is finished.
    Done,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Watching => "watching the MX record",
            Stage::CutOver => "cut over: delta passes",
            Stage::Finishing => "final passes",
            Stage::Done => "done",
        }
    }
}

/// Something that happened, for the admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix seconds.
    pub at: i64,
    pub text: String,
}

/// The most events kept per domain.
const MAX_EVENTS: usize = 100;

/// A domain's go-live state. Missing fields default, so older and newer Terns read
/// each other's documents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GoLive {
    pub stage: Stage,
    /// Checks in a row that saw every MX record pointing here.
    pub consecutive: u32,
    pub last_check: Option<i64>,
    /// The MX answer at the last check, as text.
    pub last_mx: String,
    /// The largest TTL seen on the MX answer while it pointed elsewhere: how long
    /// senders may keep delivering to the old provider after the switch.
    pub old_mx_ttl: u32,
    pub cutover: Option<i64>,
    /// "the MX watch" or "tern migrate cutover".
    pub declared_by: Option<String>,
    /// How long no new mail must arrive at the old provider before the final pass.
    pub quiet_seconds: u64,
    /// When a delta pass was last seen to have found new mail (the cutover time at
    /// first).
    pub last_new_mail: Option<i64>,
    /// Per migration (by id), the last pass whose result was looked at (its request
    /// sequence number), so each pass's news counts once.
    pub seen_passes: BTreeMap<i64, u64>,
    pub deltas: u32,
    pub last_delta: Option<i64>,
    pub finished: Option<i64>,
    pub events: Vec<Event>,
}

impl GoLive {
    fn event(&mut self, now: i64, text: impl Into<String>) {
        let text = text.into();
        tracing::info!(event = %text, "go-live");
        self.events.push(Event { at: now, text });
        if self.events.len() > MAX_EVENTS {
            let extra = self.events.len() - MAX_EVENTS;
            self.events.drain(..extra);
        }
    }

    /// One line for a status listing.
    pub fn summary(&self) -> String {
        let when = |t: Option<i64>| t.map(tern_migrate::report::timestamp).unwrap_or_else(|| "?".into());
        let live = format!(
            "live since {} (declared by {})",
            when(self.cutover),
            self.declared_by.as_deref().unwrap_or("?")
        );
        match self.stage {
            Stage::Watching if self.last_check.is_none() => {
                "the MX record is not checked yet (tern serve watches it)".into()
            }
            Stage::Watching => format!(
                "watching the MX record: {} at {}; {} check(s) in a row pointing here",
                self.last_mx,
                when(self.last_check),
                self.consecutive
            ),
            Stage::CutOver => format!(
                "{live}; {} delta pass(es); late mail last seen {}; final pass from {} if no more arrives",
                self.deltas,
                when(self.last_new_mail),
                when(self.final_pass_due())
            ),
            Stage::Finishing => format!("{live}; final passes running"),
            Stage::Done => format!("{live}; done {}", when(self.finished)),
        }
    }

    /// When the final pass is due if no more mail arrives.
    pub fn final_pass_due(&self) -> Option<i64> {
        match self.stage {
            Stage::CutOver => self.last_new_mail.map(|t| t + self.quiet_seconds as i64),
            _ => None,
        }
    }
}

/// A stored go-live state (the default when there is none).
fn parse(stored: Option<&str>) -> GoLive {
    stored
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// Reads a domain's go-live state (the default when there is none).
pub async fn load(store: &dyn Store, domain: &str) -> Result<GoLive, StoreError> {
    Ok(parse(store.setting(&setting_key(domain)).await?.as_deref()))
}

/// Writes a domain's state unless it changed since it was read as `read`: the watch's
/// check takes seconds (DNS), and a cutover declared by hand meanwhile must not be
/// overwritten by the older state the check started from. Whether it was written.
async fn save_unless_changed(
    store: &dyn Store,
    domain: &str,
    read: Option<&str>,
    state: &GoLive,
) -> Result<bool, StoreError> {
    let json = serde_json::to_string(state).unwrap_or_default();
    let saved = store.replace_setting(&setting_key(domain), read, Some(&json)).await?;
    if !saved {
        tracing::info!(
            domain,
            "go-live state changed during the check (a cutover declared meanwhile); the next check goes on from it"
        );
    }
    Ok(saved)
}

/// The domain part of an address, lower case.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The migrations of one domain.
pub async fn migrations_of(store: &dyn Store, domain: &str) -> Result<Vec<Migration>, StoreError> {
    let domain = domain.to_ascii_lowercase();
    Ok(store
        .migrations()
        .await?
        .into_iter()
        .filter(|m| domain_of(&m.address) == domain)
        .collect())
}

/// Asks for a pass over one migration, unless it is finished. `cutover` also records
/// the cutover time on it.
async fn ask(store: &dyn Store, m: &Migration, pass: Pass, cutover: Option<i64>) -> Result<bool, StoreError> {
    if parse_progress(m).phase == Phase::Done {
        return Ok(false);
    }
    update_request(store, m, |_, r: &mut Request| {
        r.seq += 1;
        r.pass = pass;
        r.since = None;
        r.before = None;
        r.propagate_deletions = false;
        r.paused = false;
        r.cancelled = false;
        if cutover.is_some() && r.cutover.is_none() {
            r.cutover = cutover;
        }
        Ok::<_, StoreError>(())
    })
    .await?;
    Ok(true)
}

/// Why a cutover cannot be declared.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error("{0} has no migrations: there is nothing to bring over (tern migrate add)")]
    NoMigrations(String),
    #[error("{domain} went live already ({when}); its delta passes are running")]
    Already { domain: String, when: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Declares that the domain's MX now points here: records the cutover, lets Tern's MX
/// accept the domain's mail, and asks for a delta pass over every mailbox of the domain.
/// `by` says who declared it, for the history.
pub async fn declare_cutover(
    store: &dyn Store,
    domain: &str,
    by: &str,
    config: &GoLiveConfig,
    now: i64,
) -> Result<GoLive, CutoverError> {
    let migrations = migrations_of(store, domain).await?;
    if migrations.is_empty() {
        return Err(CutoverError::NoMigrations(domain.to_string()));
    }
    let already = |t: i64| CutoverError::Already {
        domain: domain.to_string(),
        when: tern_migrate::report::timestamp(t),
    };
    if let Some(t) = load(store, domain).await?.cutover {
        return Err(already(t));
    }
    // Mail that reaches Tern's MX for the domain is delivered from now on, not
    // deferred (tern domain receiving).
    store.set_domain_receiving(domain, true).await?;
    let mut asked = 0;
    for m in &migrations {
        if ask(store, m, Pass::Delta, Some(now)).await? {
            asked += 1;
        }
    }
    // What the passes before the cutover found is not late mail.
    let seen_passes: BTreeMap<i64, u64> = migrations
        .iter()
        .map(|m| (m.id.0, parse_progress(m).handled_seq))
        .collect();
    // The watch may declare it at the same moment (or a person twice): the state is
    // changed only if nobody did, so one cutover is recorded, with who declared it.
    tern_store::setting::update(store, &setting_key(domain), |stored| {
        let mut state = parse(stored);
        if let Some(t) = state.cutover {
            return Err(already(t));
        }
        state.stage = Stage::CutOver;
        state.cutover = Some(now);
        state.declared_by = Some(by.to_string());
        state.quiet_seconds = (2 * u64::from(state.old_mx_ttl)).max(config.min_quiet.as_secs());
        state.last_new_mail = Some(now);
        state.deltas = 1;
        state.last_delta = Some(now);
        state.seen_passes = seen_passes.clone();
        state.event(
            now,
            format!(
                "{domain} went live (declared by {by}): delta passes for {asked} mailbox(es); the final pass follows after {} without new mail at the old provider",
                tern_migrate::report::human_duration(state.quiet_seconds)
            ),
        );
        Ok((Some(serde_json::to_string(&state).unwrap_or_default()), state))
    })
    .await
}

/// The MX watch and the passes after the cutover.
pub struct Watch {
    store: Arc<dyn Store>,
    lookup: Lookup,
    hostname: String,
    /// This server's public addresses (an MX target resolving to one of them is this
    /// server); empty: only the host name counts.
    addresses: Vec<IpAddr>,
    config: GoLiveConfig,
}

impl Watch {
    pub fn new(
        store: Arc<dyn Store>,
        lookup: Lookup,
        hostname: &str,
        addresses: Vec<IpAddr>,
        config: GoLiveConfig,
    ) -> Watch {
        Watch {
            store,
            lookup,
            hostname: hostname.to_string(),
            addresses,
            config,
        }
    }

    /// Checks every `check_interval` until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.tick(tern_migrate::now()).await {
                tracing::warn!(error = %e, "go-live check failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.check_interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One round over every domain that has migrations.
    pub async fn tick(&self, now: i64) -> Result<(), StoreError> {
        let mut domains: Vec<String> = self
            .store
            .migrations()
            .await?
            .iter()
            .map(|m| domain_of(&m.address))
            .collect();
        domains.sort();
        domains.dedup();
        for domain in domains {
            self.tick_domain(&domain, now).await?;
        }
        Ok(())
    }

    async fn tick_domain(&self, domain: &str, now: i64) -> Result<(), StoreError> {
        let migrations = migrations_of(self.store.as_ref(), domain).await?;
        let stored = self.store.setting(&setting_key(domain)).await?;
        let mut state = parse(stored.as_deref());
        let all_done = migrations.iter().all(|m| parse_progress(m).phase == Phase::Done);
        match state.stage {
            // Finished by hand (tern migrate finish) before any cutover: nothing to watch.
            Stage::Watching if all_done => return Ok(()),
            Stage::Watching if !self.config.watch => return Ok(()),
            Stage::Watching => {
                let resolved;
                let addresses = if self.addresses.is_empty() {
                    resolved = self.lookup.addresses(&self.hostname).await;
                    resolved.records()
                } else {
                    &self.addresses
                };
                let mx = mx_state(&self.lookup, domain, &self.hostname, addresses).await;
                state.last_check = Some(now);
                state.last_mx = mx.answer.describe();
                if mx.all_here() {
                    state.consecutive += 1;
                } else {
                    state.consecutive = 0;
                    if let Some(ttl) = mx.answer.ttl() {
                        state.old_mx_ttl = state.old_mx_ttl.max(ttl);
                    }
                }
                if state.consecutive >= self.config.consecutive_checks.max(1) {
                    if !save_unless_changed(self.store.as_ref(), domain, stored.as_deref(), &state).await? {
                        return Ok(());
                    }
                    return match declare_cutover(self.store.as_ref(), domain, "the MX watch", &self.config, now).await {
                        Ok(_) | Err(CutoverError::Already { .. }) | Err(CutoverError::NoMigrations(_)) => Ok(()),
                        Err(CutoverError::Store(e)) => Err(e),
                    };
                }
            }
            Stage::CutOver => self.after_cutover(&migrations, &mut state, now).await?,
            Stage::Finishing => {
                if migrations.iter().all(settled) {
                    self.finished(domain, &migrations, &mut state, now).await?;
                }
            }
            Stage::Done => return Ok(()),
        }
        save_unless_changed(self.store.as_ref(), domain, stored.as_deref(), &state).await?;
        Ok(())
    }

    /// Delta passes until the old provider has been quiet long enough, then the final
    /// passes.
    async fn after_cutover(&self, migrations: &[Migration], state: &mut GoLive, now: i64) -> Result<(), StoreError> {
        // New mail found by a delta that ended since the last look: the quiet period
        // starts again from now.
        for m in migrations {
            let p = parse_progress(m);
            let seen = state.seen_passes.get(&m.id.0).copied().unwrap_or(0);
            if p.handled_seq <= seen {
                continue;
            }
            state.seen_passes.insert(m.id.0, p.handled_seq);
            if p.pass == Some(Pass::Delta) && p.pass_copied > 0 {
                state.last_new_mail = Some(now);
                state.event(
                    now,
                    format!(
                        "a delta pass brought {} late message(s) for {}",
                        p.pass_copied, m.address
                    ),
                );
            }
        }
        if !migrations.iter().all(settled) {
            return Ok(());
        }
        let quiet_since = state.last_new_mail.unwrap_or(now);
        if now - quiet_since >= state.quiet_seconds as i64 {
            let mut asked = 0;
            for m in migrations {
                if ask(self.store.as_ref(), m, Pass::Finish, None).await? {
                    asked += 1;
                }
            }
            state.stage = Stage::Finishing;
            state.event(
                now,
                format!(
                    "no new mail at the old provider for {}: final pass for {asked} mailbox(es)",
                    tern_migrate::report::human_duration((now - quiet_since).max(0) as u64)
                ),
            );
        } else if state
            .last_delta
            .is_none_or(|t| now - t >= self.config.delta_interval.as_secs() as i64)
        {
            for m in migrations {
                ask(self.store.as_ref(), m, Pass::Delta, None).await?;
            }
            state.deltas += 1;
            state.last_delta = Some(now);
        }
        Ok(())
    }

    /// Every final pass ended: the domain is done; the admin is told.
    async fn finished(
        &self,
        domain: &str,
        migrations: &[Migration],
        state: &mut GoLive,
        now: i64,
    ) -> Result<(), StoreError> {
        let failed: Vec<(String, String)> = migrations
            .iter()
            .filter_map(|m| {
                let p = parse_progress(m);
                (p.phase != Phase::Done)
                    .then(|| (m.address.clone(), p.last_error.unwrap_or_else(|| p.phase.name().into())))
            })
            .collect();
        state.stage = Stage::Done;
        state.finished = Some(now);
        let summary = if failed.is_empty() {
            format!(
                "{domain}: all {} mailbox(es) migrated; the old provider's credentials are wiped",
                migrations.len()
            )
        } else {
            format!(
                "{domain}: {} of {} mailbox(es) migrated; the final pass failed for {}",
                migrations.len() - failed.len(),
                migrations.len(),
                failed.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        state.event(now, summary.clone());
        let told = self.tell_admin(domain, migrations, state, &failed).await?;
        if !told {
            state.event(
                now,
                format!("no postmaster@{domain} mailbox to tell: make it an alias of the admin's account"),
            );
        }
        Ok(())
    }

    /// A message to postmaster@DOMAIN (RFC 5321 §4.5.1: every domain has one) with the
    /// outcome. False when the domain has no postmaster.
    async fn tell_admin(
        &self,
        domain: &str,
        migrations: &[Migration],
        state: &GoLive,
        failed: &[(String, String)],
    ) -> Result<bool, StoreError> {
        let postmaster = format!("postmaster@{domain}");
        let Some(account) = self.store.resolve_recipient(&postmaster).await? else {
            return Ok(false);
        };
        let inbox = self.store.mailbox(account, tern_store::INBOX).await?;
        let message = admin_message(domain, &postmaster, migrations, state, failed);
        self.store.append(inbox.id, vec![NewMessage::new(message)]).await?;
        Ok(true)
    }
}

/// A migration whose last request has been handled: no pass running, queued or
/// waiting to be retried.
fn settled(m: &Migration) -> bool {
    let p: Progress = parse_progress(m);
    let r = parse_request(m);
    p.phase == Phase::Done
        || (p.handled_seq >= r.seq && !matches!(p.phase, Phase::Running | Phase::Queued) && !p.retry_pending(&r))
}

/// The message that tells the admin a domain is done.
fn admin_message(
    domain: &str,
    postmaster: &str,
    migrations: &[Migration],
    state: &GoLive,
    failed: &[(String, String)],
) -> Vec<u8> {
    use std::fmt::Write;
    let mut body = String::new();
    let when = |t: Option<i64>| t.map(tern_migrate::report::timestamp).unwrap_or_default();
    let _ = writeln!(body, "The move of {domain} to Tern is complete.\n");
    let _ = writeln!(
        body,
        "Cutover: {} (declared by {})",
        when(state.cutover),
        state.declared_by.as_deref().unwrap_or("?")
    );
    let _ = writeln!(body, "Delta passes after the cutover: {}", state.deltas);
    let _ = writeln!(body, "Last new mail at the old provider: {}", when(state.last_new_mail));
    let _ = writeln!(body, "Finished: {}\n", when(state.finished));
    for m in migrations {
        let p = parse_progress(m);
        let outcome = match failed.iter().find(|(a, _)| *a == m.address) {
            Some((_, why)) => format!("NOT finished: {why}"),
            None => "done, source credentials wiped".into(),
        };
        let _ = writeln!(body, "  {:<40} {:>8} messages  {outcome}", m.address, p.copied);
    }
    if !failed.is_empty() {
        let _ = writeln!(
            body,
            "\nFor the mailboxes not finished: fix the cause, then `tern migrate start --pass retry-errors --user ADDRESS` and `tern migrate finish ADDRESS`."
        );
    }
    let _ = writeln!(
        body,
        "\nThe old provider's MX records and the accounts there can go once you are sure nothing else uses them."
    );
    mail_builder::MessageBuilder::new()
        .from(("Tern", postmaster))
        .to(postmaster)
        .subject(format!("{domain} is live on Tern: migration complete"))
        .text_body(body)
        .write_to_vec()
        .unwrap_or_default()
}
