//! `tern migrate verify`: compares the source and Tern folder by folder — counts,
//! sizes, flags and content hashes — from scratch. It reads every message at the
//! source and every message in Tern and compares them as multisets by content hash; it
//! never consults the migration's own map or counters, so a bug there cannot hide a
//! loss.
//!
//! Several source folders may land in one Tern folder (two "Sent" folders), so the
//! comparison is per Tern folder. Messages in Tern that did not come from the source
//! (mail delivered to Tern, messages the user filed there) are counted, not faulted.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tern_store::{ContentHash, Flags, Store};

use crate::MigrateError;
use crate::folders::{self, Plan};
use crate::imap_source::ImapSource;
use crate::source::{Login, Protocol, SourceSettings};

/// Bytes fetched per UID FETCH while verifying.
const VERIFY_BATCH_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FolderVerdict {
    pub target: String,
    /// The source folders that go into it.
    pub sources: Vec<String>,
    pub source_messages: u64,
    pub source_bytes: u64,
    pub tern_messages: u64,
    /// At the source, not in Tern (by content).
    pub missing: u64,
    /// In Tern with the same content but other flags or INTERNALDATE.
    pub flags_differ: u64,
    pub dates_differ: u64,
    /// In Tern, not from the source.
    pub extra_in_tern: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub folders: Vec<FolderVerdict>,
}

impl Verdict {
    pub fn missing(&self) -> u64 {
        self.folders.iter().map(|f| f.missing).sum()
    }

    /// Every message is there, with the source's flags and dates.
    pub fn identical(&self) -> bool {
        self.folders
            .iter()
            .all(|f| f.missing == 0 && f.flags_differ == 0 && f.dates_differ == 0)
    }

    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "{:<28} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "Tern folder", "Source", "Size", "Tern", "Missing", "Flags≠", "Dates≠", "Extra"
        );
        for f in &self.folders {
            let _ = writeln!(
                out,
                "{:<28} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
                f.target,
                f.source_messages,
                crate::report::human_bytes(f.source_bytes),
                f.tern_messages,
                f.missing,
                f.flags_differ,
                f.dates_differ,
                f.extra_in_tern
            );
        }
        let _ = writeln!(
            out,
            "{}",
            if self.identical() {
                "Identical: every source message is in Tern, byte for byte, with its flags and date.".to_string()
            } else if self.missing() == 0 {
                "Complete: every source message is in Tern byte for byte; some flags or dates differ (changed by the user in Tern, or at the source since the last pass).".to_string()
            } else {
                format!(
                    "NOT complete: {} source message(s) are not in Tern; run a delta pass.",
                    self.missing()
                )
            }
        );
        out
    }
}

/// One message as compared: content hash, flags and INTERNALDATE.
type Digest = (ContentHash, Flags, Option<i64>);

/// Compares an IMAP source with the account's folders.
pub async fn verify(
    store: &dyn Store,
    account: tern_store::AccountId,
    settings: &SourceSettings,
    login: &Login,
    user_root: Option<&str>,
) -> Result<Verdict, MigrateError> {
    if settings.protocol == Protocol::Pop3 {
        return verify_pop3(store, account, settings, login).await;
    }
    let mut source = ImapSource::connect(settings, login).await?;
    let listed = source.folders().await?;
    let namespace = match user_root {
        Some(root) => source.namespace.clone().with_root(root),
        None => source.namespace.clone(),
    };
    let mailboxes = store.mailboxes(account).await?;
    let mut by_target: BTreeMap<String, (Vec<String>, Vec<Digest>, u64)> = BTreeMap::new();
    for folder in &listed {
        let Plan::Copy { target, special_use } = folders::plan(folder, &namespace, &settings.rules) else {
            continue;
        };
        // The same resolution as a pass: a special folder by its attribute in Tern.
        let target = special_use
            .and_then(|u| mailboxes.iter().find(|m| m.special_use == Some(u)))
            .map(|m| m.name.clone())
            .unwrap_or(target);
        let status = source.examine(&folder.wire_name).await?;
        let listing = if status.messages == 0 {
            Vec::new()
        } else {
            source.list_messages(1).await?
        };
        let entry = by_target.entry(target).or_default();
        entry
            .0
            .push(folders::display_name(folder, &namespace).unwrap_or_else(|| folder.wire_name.clone()));
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (i, m) in listing.iter().enumerate() {
            batch.push(m.uid);
            bytes += m.size;
            if bytes >= VERIFY_BATCH_BYTES || i + 1 == listing.len() {
                for f in source.fetch(&batch).await? {
                    entry.2 += f.raw.len() as u64;
                    entry
                        .1
                        .push((tern_store::content_hash(&f.raw), f.flags, f.internal_date));
                }
                batch.clear();
                bytes = 0;
            }
        }
    }
    source.logout().await;
    let mut verdict = Verdict::default();
    for (target, (sources, digests, bytes)) in by_target {
        verdict
            .folders
            .push(compare(store, account, &target, sources, digests, bytes).await?);
    }
    Ok(verdict)
}

async fn verify_pop3(
    store: &dyn Store,
    account: tern_store::AccountId,
    settings: &SourceSettings,
    login: &Login,
) -> Result<Verdict, MigrateError> {
    let digests = crate::pop3_source::digests(settings, login).await?;
    let bytes = digests.iter().map(|(_, size)| size).sum();
    let digests = digests.into_iter().map(|(d, _)| d).collect();
    let folder = compare(
        store,
        account,
        tern_store::INBOX,
        vec![crate::pop3_source::MAILDROP.into()],
        digests,
        bytes,
    )
    .await?;
    Ok(Verdict { folders: vec![folder] })
}

/// Matches the source's messages against the Tern folder's by content; among equal
/// contents, equal flags and dates are paired first.
async fn compare(
    store: &dyn Store,
    account: tern_store::AccountId,
    target: &str,
    sources: Vec<String>,
    digests: Vec<Digest>,
    bytes: u64,
) -> Result<FolderVerdict, MigrateError> {
    let mut verdict = FolderVerdict {
        target: target.to_string(),
        sources,
        source_messages: digests.len() as u64,
        source_bytes: bytes,
        ..Default::default()
    };
    let mut tern: HashMap<ContentHash, Vec<(Flags, Option<i64>)>> = HashMap::new();
    if let Ok(mailbox) = store.mailbox(account, target).await {
        let summaries: HashMap<u32, tern_store::MessageSummary> = store
            .messages(mailbox.id)
            .await?
            .into_iter()
            .map(|s| (s.uid, s))
            .collect();
        for (uid, hash) in store.content_hashes(mailbox.id).await? {
            if let Some(s) = summaries.get(&uid) {
                tern.entry(hash)
                    .or_default()
                    .push((s.flags.clone(), Some(s.internal_date)));
            }
        }
        verdict.tern_messages = summaries.len() as u64;
    }
    // Exact matches first, so a duplicate with other flags is not paired wrongly.
    let mut rest = Vec::new();
    for (hash, flags, date) in digests {
        let candidates = tern.entry(hash).or_default();
        if let Some(i) = candidates
            .iter()
            .position(|(f, d)| *f == flags && dates_match(*d, date))
        {
            candidates.swap_remove(i);
        } else {
            rest.push((hash, flags, date));
        }
    }
    for (hash, flags, date) in rest {
        let candidates = tern.entry(hash).or_default();
        match candidates.pop() {
            Some((f, d)) => {
                if f != flags {
                    verdict.flags_differ += 1;
                }
                if !dates_match(d, date) {
                    verdict.dates_differ += 1;
                }
            }
            None => verdict.missing += 1,
        }
    }
    verdict.extra_in_tern = tern.values().map(|v| v.len() as u64).sum();
    Ok(verdict)
}

fn dates_match(tern: Option<i64>, source: Option<i64>) -> bool {
    match (tern, source) {
        (Some(a), Some(b)) => a == b,
        // A source without INTERNALDATE (POP3) has nothing to compare.
        _ => true,
    }
}
