//! `tern import maildir|mbox`: brings an exported mailbox into an account, keeping flags
//! and dates, with a progress bar. Messages are appended in batches (each batch one
//! atomic multi-append) so a large export goes in at group-commit speed.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tern_migrate::export::{ExportError, ExportedMessage, Maildir, Mbox, maildir};
use tern_store::{AccountId, ContentHash, Flags, MailboxId, NewMessage, Store, StoreError, SystemFlags, content_hash};

use super::{DataDir, human_size};
use crate::cli::{ImportArgs, ImportCommand};

/// Messages per atomic append: large enough to share fsyncs, small enough that an
/// interrupted import loses little progress.
const BATCH_MESSAGES: usize = 200;
const BATCH_BYTES: usize = 16 << 20;

pub async fn run(data: DataDir<'_>, cmd: ImportCommand) -> Result<()> {
    let store = data.open_store()?;
    let (kind, args) = match cmd {
        ImportCommand::Maildir(a) => ("maildir", a),
        ImportCommand::Mbox(a) => ("mbox", a),
    };
    let account = store.account(&args.email).await?;
    let started = Instant::now();
    let mut import = Import {
        store: &store,
        account: account.id,
        imported: Vec::new(),
        failed: Vec::new(),
        bytes: 0,
        already_there: 0,
    };
    if kind == "maildir" {
        import.maildir(&args).await?;
    } else {
        import.mbox(&args).await?;
    }
    store.close().await?;
    let total: usize = import.imported.iter().map(|(_, n)| n).sum();
    let per_folder: Vec<String> = import.imported.iter().map(|(f, n)| format!("{f}: {n}")).collect();
    println!(
        "Imported {total} messages ({}) into {} in {:.1} s ({}).",
        human_size(import.bytes),
        account.address,
        started.elapsed().as_secs_f64(),
        per_folder.join(", ")
    );
    if import.already_there > 0 {
        println!(
            "Skipped {} message(s) the folders already held (an earlier import).",
            import.already_there
        );
    }
    if !import.failed.is_empty() {
        for f in &import.failed {
            eprintln!("  not imported: {f}");
        }
        bail!(
            "{} message(s) could not be read (listed above); everything else was imported",
            import.failed.len()
        );
    }
    Ok(())
}

struct Import<'a, S: Store> {
    store: &'a S,
    account: AccountId,
    /// (folder, messages imported), in import order.
    imported: Vec<(String, usize)>,
    failed: Vec<String>,
    bytes: u64,
    /// Messages skipped because the folder already held the same bytes.
    already_there: usize,
}

fn flags_of(m: &ExportedMessage) -> Flags {
    let mut system = SystemFlags::empty();
    for (on, flag) in [
        (m.seen, SystemFlags::SEEN),
        (m.answered, SystemFlags::ANSWERED),
        (m.flagged, SystemFlags::FLAGGED),
        (m.deleted, SystemFlags::DELETED),
        (m.draft, SystemFlags::DRAFT),
    ] {
        if on {
            system = system.union(flag);
        }
    }
    Flags::new(system, m.keywords.iter().cloned())
}

fn bar(len: u64, bytes: bool) -> ProgressBar {
    let template = if bytes {
        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})"
    } else {
        "{spinner} {msg} [{bar:30}] {pos}/{len} messages ({per_sec}, ETA {eta})"
    };
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

impl<S: Store> Import<'_, S> {
    /// The target mailbox, created if missing.
    async fn mailbox(&self, name: &str) -> Result<MailboxId> {
        match self.store.mailbox(self.account, name).await {
            Ok(m) => Ok(m.id),
            Err(StoreError::NoSuchMailbox(_)) => Ok(self.store.create_mailbox(self.account, name, None).await?.id),
            Err(e) => Err(e.into()),
        }
    }

    async fn flush(&mut self, mailbox: MailboxId, folder: &str, batch: &mut Vec<NewMessage>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        let bytes: usize = batch.iter().map(|m| m.raw.len()).sum();
        self.store
            .append(mailbox, std::mem::take(batch))
            .await
            .with_context(|| format!("cannot store messages in {folder}"))?;
        self.bytes += bytes as u64;
        match self.imported.last_mut() {
            Some((f, count)) if f == folder => *count += n,
            _ => self.imported.push((folder.to_string(), n)),
        }
        Ok(())
    }

    /// Appends messages from an iterator into one folder, in batches.
    async fn messages(
        &mut self,
        folder: &str,
        source: impl Iterator<Item = Result<ExportedMessage, ExportError>>,
        mut progress: impl FnMut(&ExportedMessage),
    ) -> Result<()> {
        let mailbox = self.mailbox(folder).await?;
        // Running an import again (after an interruption, say) must not duplicate what
        // is already in the folder. Each identical message in the folder absorbs one
        // occurrence in the export, so duplicates within the export stay duplicates.
        let mut present: HashMap<ContentHash, usize> = HashMap::new();
        for (_, hash) in self.store.content_hashes(mailbox).await? {
            *present.entry(hash).or_default() += 1;
        }
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for item in source {
            let m = match item {
                Ok(m) => m,
                Err(e @ ExportError::Io { .. }) if batch.is_empty() && self.imported.is_empty() => return Err(e.into()),
                Err(e) => {
                    self.failed.push(e.to_string());
                    continue;
                }
            };
            progress(&m);
            if m.raw.is_empty() {
                self.failed.push(format!("{}: the message is empty", m.source));
                continue;
            }
            if let Some(n) = present.get_mut(&content_hash(&m.raw))
                && *n > 0
            {
                *n -= 1;
                self.already_there += 1;
                continue;
            }
            batch_bytes += m.raw.len();
            batch.push(NewMessage {
                flags: flags_of(&m),
                internal_date: m.internal_date,
                raw: m.raw,
                pop3_uidl: None,
                migrated_from: None,
            });
            if batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES {
                self.flush(mailbox, folder, &mut batch).await?;
                batch_bytes = 0;
            }
        }
        self.flush(mailbox, folder, &mut batch).await?;
        if !self.imported.iter().any(|(f, _)| f == folder) {
            self.imported.push((folder.to_string(), 0));
        }
        Ok(())
    }

    async fn maildir(&mut self, args: &ImportArgs) -> Result<()> {
        let folders = maildir::folders(&args.path)?;
        let mut opened = Vec::new();
        for (name, path) in folders {
            let target = match (&args.folder, name.as_str()) {
                (None, _) => name.clone(),
                (Some(base), "INBOX") => base.clone(),
                (Some(base), sub) => format!("{base}/{sub}"),
            };
            opened.push((target, Maildir::open(&path)?));
        }
        let total: usize = opened.iter().map(|(_, m)| m.len()).sum();
        let pb = bar(total as u64, false);
        for (target, dir) in &opened {
            pb.set_message(target.clone());
            self.messages(target, dir.messages(), |_| pb.inc(1)).await?;
        }
        pb.finish_and_clear();
        Ok(())
    }

    async fn mbox(&mut self, args: &ImportArgs) -> Result<()> {
        let path: &Path = &args.path;
        let mbox = Mbox::open(path)?;
        let target = args.folder.clone().unwrap_or_else(|| tern_store::INBOX.to_string());
        let pb = bar(mbox.len_bytes(), true);
        pb.set_message(target.clone());
        // The reader is consumed by the import loop; progress follows its byte count.
        let mut mbox = mbox;
        let pb2 = pb.clone();
        let iter = std::iter::from_fn(move || {
            let next = mbox.next();
            pb2.set_position(mbox.bytes_read());
            next
        });
        self.messages(&target, iter, |_| {}).await?;
        pb.finish_and_clear();
        Ok(())
    }
}
