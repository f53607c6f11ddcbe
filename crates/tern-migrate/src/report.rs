//! Migration reports: per mailbox and folder, what the source holds, what was copied,
//! what was skipped and why, and what failed — for `tern migrate status` and `report`,
//! as text, JSON, or a message delivered into the user's INBOX.

use std::fmt::Write as _;

use serde::Serialize;
use tern_store::{Migration, NewMessage, Store};

use crate::MigrateError;
use crate::state::{FolderState, Phase, Progress, Request};
use crate::worker::{effective_phase, parse_progress, parse_request};

#[derive(Debug, Clone, Serialize)]
pub struct FolderReport {
    pub source: String,
    #[serde(flatten)]
    pub state: FolderState,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub address: String,
    pub source: String,
    pub remote_user: String,
    pub phase: Phase,
    pub request: Request,
    pub progress: Progress,
    pub folders: Vec<FolderReport>,
    /// The credentials are still stored (wiped by finish).
    pub has_credentials: bool,
}

impl Report {
    pub async fn load(store: &dyn Store, migration: &Migration) -> Result<Report, MigrateError> {
        let request = parse_request(migration);
        let progress = parse_progress(migration);
        let folders = store
            .migration_folders(migration.id)
            .await?
            .into_iter()
            .map(|f| FolderReport {
                source: tern_store::utf7::decode(&f.source_name).unwrap_or(f.source_name.clone()),
                state: serde_json::from_str(&f.state).unwrap_or_default(),
            })
            .collect();
        Ok(Report {
            address: migration.address.clone(),
            source: migration.source.clone(),
            remote_user: migration.remote_user.clone(),
            phase: effective_phase(&request, &progress),
            request,
            progress,
            folders,
            has_credentials: migration.secret.is_some(),
        })
    }

    /// Messages at the source over all folders.
    pub fn source_messages(&self) -> u64 {
        self.folders
            .iter()
            .filter(|f| !f.state.gone)
            .map(|f| f.state.source_messages)
            .sum()
    }

    pub fn copied(&self) -> u64 {
        self.folders.iter().map(|f| f.state.copied).sum()
    }

    /// The full report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let p = &self.progress;
        let _ = writeln!(
            out,
            "Migration of {} from {} (user {})",
            self.address, self.source, self.remote_user
        );
        let _ = writeln!(out, "State: {}", self.phase.name());
        if let Some(pass) = p.pass {
            let _ = writeln!(
                out,
                "Last pass: {}{}{}",
                pass.name(),
                p.started
                    .map(|t| format!(", started {}", timestamp(t)))
                    .unwrap_or_default(),
                p.finished
                    .map(|t| format!(", ended {}", timestamp(t)))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "Messages: {} at the source, {} in Tern from it; this pass copied {} ({}), {} flag changes, {} skipped, {} errors",
            self.source_messages(),
            self.copied(),
            p.pass_copied,
            human_bytes(p.copied_bytes),
            p.flag_updates,
            p.skipped,
            p.errors
        );
        if let Some(e) = &p.last_error {
            let _ = writeln!(out, "Last error: {e}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<32} {:<24} {:>8} {:>10} {:>8} {:>8} {:>7}",
            "Source folder", "Tern folder", "Source", "Size", "Copied", "Skipped", "Errors"
        );
        for f in &self.folders {
            let s = &f.state;
            let skipped: u64 = s.skipped.values().sum();
            let _ = writeln!(
                out,
                "{:<32} {:<24} {:>8} {:>10} {:>8} {:>8} {:>7}{}",
                truncate(&f.source, 32),
                truncate(&s.target, 24),
                s.source_messages,
                human_bytes(s.source_bytes),
                s.copied,
                skipped,
                s.errors,
                if s.gone { "  (deleted at the source)" } else { "" }
            );
            for (reason, n) in &s.skipped {
                let _ = writeln!(out, "    skipped {n}: {reason}");
            }
        }
        if !p.recent_errors.is_empty() {
            let _ = writeln!(out, "\nErrors (most recent last):");
            for e in &p.recent_errors {
                let what = if e.message.is_empty() {
                    String::new()
                } else {
                    format!(" message {}", e.message)
                };
                let _ = writeln!(out, "  {} {}{}: {}", timestamp(e.at), e.folder, what, e.error);
            }
        }
        if !self.has_credentials {
            let _ = writeln!(out, "\nThe source credentials are wiped.");
        }
        out
    }

    /// The report as a message for the user's INBOX.
    pub fn message(&self) -> Vec<u8> {
        let body = format!(
            "Your mail from your previous provider has been copied to this mailbox.\n\n{}\n\
             Folders and messages keep their flags and dates. If something is missing, \
             tell your administrator.\n",
            self.text()
        );
        mail_builder::MessageBuilder::new()
            .from((
                "Tern migration",
                format!("postmaster@{}", domain_of(&self.address)).as_str(),
            ))
            .to(self.address.as_str())
            .subject(format!("Your mailbox migration: {}", self.phase.name()))
            .text_body(body)
            .write_to_vec()
            .unwrap_or_default()
    }

    /// Delivers the report into the user's INBOX.
    pub async fn deliver(&self, store: &dyn Store, account: tern_store::AccountId) -> Result<(), MigrateError> {
        let inbox = store.mailbox(account, tern_store::INBOX).await?;
        store.append(inbox.id, vec![NewMessage::new(self.message())]).await?;
        Ok(())
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("localhost")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn timestamp(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// `1.5 MB`, `320 KB`, `12 B` (powers of 1000, as disks and links are sold).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Seconds as `1h 02m`, `4m 10s`, `12s`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_duration(3720), "1h 02m");
        assert_eq!(human_duration(250), "4m 10s");
    }
}
