//! The JSON documents the store keeps for each migration: what the administrator asked
//! for ([`Request`], written only by the CLI), where the worker is ([`Progress`],
//! written only by the worker) and each source folder's sync point ([`FolderState`]).
//! Unknown fields are ignored and missing ones default, so older and newer Terns can
//! read each other's documents.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which pass to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Pass {
    /// Bulk copy before the MX record moves; runs only inside the schedule's windows.
    #[default]
    Prestage,
    /// Everything, now: every folder listed from its first message, every flag compared.
    Full,
    /// What changed since the last pass: new messages and flag changes (CONDSTORE
    /// CHANGEDSINCE where offered); a folder with nothing new costs one STATUS.
    Delta,
    /// The messages that failed before, and whatever a delta would bring.
    RetryErrors,
    /// A last delta, then the credentials are wiped and the migration is done.
    Finish,
}

impl Pass {
    pub fn name(self) -> &'static str {
        match self {
            Pass::Prestage => "prestage",
            Pass::Full => "full",
            Pass::Delta => "delta",
            Pass::RetryErrors => "retry-errors",
            Pass::Finish => "finish",
        }
    }

    /// Lists every folder from UID 1 rather than from the last UIDNEXT seen.
    pub fn lists_everything(self) -> bool {
        matches!(self, Pass::Prestage | Pass::Full | Pass::RetryErrors)
    }

    /// Held to the schedule's windows.
    pub fn windowed(self) -> bool {
        self == Pass::Prestage
    }
}

/// What the administrator asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Request {
    /// Bumped by every `start`; the worker runs a pass when this is above the last one
    /// it handled.
    pub seq: u64,
    pub pass: Pass,
    /// Only messages with an INTERNALDATE at or after this (unix seconds).
    pub since: Option<i64>,
    /// Only messages with an INTERNALDATE before this (unix seconds).
    pub before: Option<i64>,
    /// Propagate deletions at the source (only before cutover).
    pub propagate_deletions: bool,
    pub paused: bool,
    pub cancelled: bool,
    /// Set once the domain's MX points here; deletions are no longer propagated.
    pub cutover: Option<i64>,
    /// The mailbox's root folder at the source (the CSV's UserRoot): only folders
    /// beneath it are copied, without the root in their names.
    pub user_root: Option<String>,
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Added; no pass asked for yet.
    #[default]
    Idle,
    /// A pass is asked for and waits for a worker.
    Queued,
    /// Waiting for the schedule's next window.
    WaitingWindow,
    /// Waiting for the daily download cap to reset (Gmail).
    WaitingCap,
    Running,
    Paused,
    /// The last pass ended; more passes may follow.
    Passed,
    /// The last pass could not run (login refused, source unreachable).
    Failed,
    Cancelled,
    /// `finish` ran: final delta copied and credentials wiped.
    Done,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Queued => "queued",
            Phase::WaitingWindow => "waiting for window",
            Phase::WaitingCap => "waiting for daily cap",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Passed => "passed",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
            Phase::Done => "done",
        }
    }
}

/// One message that could not be copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageError {
    pub folder: String,
    /// The source UID (IMAP) or UIDL (POP3); empty when the whole folder failed.
    pub message: String,
    pub error: String,
    pub at: i64,
}

/// The most errors kept per migration; the counters keep counting.
pub const MAX_ERRORS_KEPT: usize = 200;

/// Where the worker is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub phase: Phase,
    /// The request `seq` the last finished (or failed) pass was for.
    pub handled_seq: u64,
    pub pass: Option<Pass>,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    /// How long the last pass took, in milliseconds (for delta timings).
    pub duration_ms: u64,
    /// Totals of the current (or last) pass over all folders.
    pub source_messages: u64,
    pub source_bytes: u64,
    /// Messages in Tern from this source (all passes), and bytes copied by this pass.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Messages copied by this pass.
    pub pass_copied: u64,
    pub skipped: u64,
    pub flag_updates: u64,
    pub deleted: u64,
    pub errors: u64,
    /// Bytes per second of the current pass.
    pub rate: f64,
    /// The most recent errors, newest last.
    pub recent_errors: Vec<MessageError>,
    /// Why the last pass could not run.
    pub last_error: Option<String>,
    /// When a pass that failed for a passing reason (source unreachable, throttling)
    /// is tried again by itself (unix seconds).
    pub retry_at: Option<i64>,
    /// The request the retry is for: a newer request from the admin starts at once.
    pub retry_seq: u64,
    /// Downloads today (UTC day number, bytes), for a daily cap.
    pub day: i64,
    pub day_bytes: u64,
}

impl Progress {
    pub fn record_error(&mut self, folder: &str, message: &str, error: &str) {
        self.errors += 1;
        self.recent_errors.push(MessageError {
            folder: folder.into(),
            message: message.into(),
            error: error.into(),
            at: crate::now(),
        });
        if self.recent_errors.len() > MAX_ERRORS_KEPT {
            let extra = self.recent_errors.len() - MAX_ERRORS_KEPT;
            self.recent_errors.drain(..extra);
        }
    }

    /// Waiting to retry `request` by itself, not yet due.
    pub fn retry_pending(&self, request: &Request) -> bool {
        self.phase == Phase::Failed && request.seq == self.retry_seq && self.retry_at.is_some_and(|t| crate::now() < t)
    }

    /// Seconds left at the current rate, if it can be told.
    pub fn eta(&self) -> Option<u64> {
        let left = self.source_bytes.saturating_sub(self.copied_bytes_total_estimate());
        (self.rate > 0.0 && left > 0).then(|| (left as f64 / self.rate) as u64)
    }

    fn copied_bytes_total_estimate(&self) -> u64 {
        // Messages copied by earlier passes count as done too.
        if self.source_messages == 0 {
            return 0;
        }
        let share = (self.copied.min(self.source_messages)) as f64 / self.source_messages as f64;
        (self.source_bytes as f64 * share) as u64
    }
}

/// One source folder's sync point and counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FolderState {
    /// The Tern folder it goes to.
    pub target: String,
    pub uidvalidity: u32,
    /// UIDNEXT when the last complete pass of this folder started: a delta lists from
    /// here. 0 until a pass completed the folder.
    pub uidnext: u32,
    /// HIGHESTMODSEQ when the last complete pass started (0: none or no CONDSTORE).
    pub highest_modseq: u64,
    /// MESSAGES at that point: with UIDNEXT and HIGHESTMODSEQ, "nothing changed".
    pub messages: u32,
    /// At the source, as of the last pass.
    pub source_messages: u64,
    pub source_bytes: u64,
    /// In the map (copied by any pass).
    pub copied: u64,
    pub copied_bytes: u64,
    /// Not copied, by reason (too large, outside the date range, ...).
    pub skipped: BTreeMap<String, u64>,
    pub errors: u64,
    /// Source keys of messages that failed, for `--pass retry-errors`.
    pub failed: Vec<String>,
    /// The folder no longer exists at the source.
    pub gone: bool,
}
