//! The full-text index, in a database file of its own (`DATA/store/index.db`) written by
//! a thread of its own.
//!
//! Tokenising and indexing a message costs about as much as everything else an append
//! does in the database; in the same file it would sit on the single writer's critical
//! path. In its own file it has its own write lock, so the indexer runs on the other
//! core while the writer commits the next batch. The index is derived data: it is fed
//! only committed, durable blobs (in commit order), and on open the store re-indexes
//! any recent blob the index lacks (a crash can lose the index's last commits, which
//! run without fsync). Rows of removed blobs are deleted when the removal commits; a
//! leftover row is harmless, because searches join through the messages table and
//! blob ids are never reused.
//!
//! Searches wait until the indexer has caught up with every blob committed before the
//! search began, so a client that appends and then searches finds its message.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{oneshot, watch};

use crate::StoreError;
use crate::blob::BlobStore;
use crate::metadata::MessageMetadata;

/// How far below the index's high-water mark the start-up check looks for unindexed
/// blobs. Blob ids follow commit order, and one indexer indexes in commit order, but
/// two processes (a server and a CLI import) index side by side, so one may have
/// recorded a higher mark while the other's lower blobs were still queued.
const CATCH_UP_WINDOW: i64 = 5_000;
/// How long a search waits for the indexer before answering from what is indexed.
const SEARCH_WAIT: Duration = Duration::from_secs(10);

/// `detail = column`: the index records which column a word occurs in but not where, so
/// it is smaller and cheaper to write; queries never need positions (every word must
/// occur, as a word or a prefix; no phrases, no NEAR).
const SCHEMA: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5 (
    headers, body,
    content = '', contentless_delete = 1, detail = column,
    tokenize = 'unicode61 remove_diacritics 2'
);
-- The highest blob id indexed, written in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS mark (id INTEGER PRIMARY KEY CHECK (id = 0), upto INTEGER NOT NULL);
INSERT OR IGNORE INTO mark (id, upto) VALUES (0, 0);";

/// A blob's text for the index.
pub type IndexRow = (i64, String, String);

/// Text waiting for the index thread, at most. Appends come faster than FTS5 indexes
/// during a bulk migration or import; beyond this the committing writer waits, so the
/// queue cannot grow with the size of what is being brought in.
const MAX_QUEUED_TEXT: usize = 24 << 20;

/// Bytes of text queued, with a condition the index thread signals as it drains.
#[derive(Default)]
struct Backlog {
    bytes: Mutex<usize>,
    drained: std::sync::Condvar,
}

fn text_len(rows: &[IndexRow]) -> usize {
    rows.iter().map(|(_, h, b)| h.len() + b.len()).sum()
}

enum Msg {
    Add(Vec<IndexRow>),
    Remove(Vec<i64>),
    Close(oneshot::Sender<()>),
}

pub struct Indexer {
    tx: Mutex<mpsc::Sender<Msg>>,
    backlog: std::sync::Arc<Backlog>,
    /// The highest blob id committed (and acknowledged) by this process.
    committed: AtomicI64,
    /// The highest blob id the indexer has written.
    progress: watch::Receiver<i64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub fn open_index(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // Derived data: no fsync per commit; start-up repairs what a crash loses.
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

impl Indexer {
    /// Opens the index, indexes recent blobs it lacks, and starts the indexing thread.
    pub fn start(index_db: &Path, main: &Connection, blobs: &BlobStore) -> Result<Indexer, StoreError> {
        let conn = open_index(index_db)?;
        let newest = catch_up(&conn, main, blobs)?;
        let (tx, rx) = mpsc::channel();
        let (progress_tx, progress) = watch::channel(newest);
        let backlog = std::sync::Arc::new(Backlog::default());
        let drained = backlog.clone();
        let thread = std::thread::Builder::new()
            .name("tern-store-index".into())
            .spawn(move || run(conn, rx, progress_tx, &drained))
            .map_err(|e| StoreError::io("cannot start the store's index thread", e))?;
        Ok(Indexer {
            tx: Mutex::new(tx),
            backlog,
            committed: AtomicI64::new(newest),
            progress,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, msg: Msg) {
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(msg);
        }
    }

    /// Called with a durable batch's new blobs, before its callers are acknowledged.
    /// Waits (on the writer's sync thread, never the async executor) while the index
    /// thread is more than MAX_QUEUED_TEXT behind.
    pub fn add(&self, rows: Vec<IndexRow>) {
        if let Some(max) = rows.iter().map(|r| r.0).max() {
            let size = text_len(&rows);
            if let Ok(mut queued) = self.backlog.bytes.lock() {
                while *queued > 0 && *queued + size > MAX_QUEUED_TEXT {
                    match self.backlog.drained.wait_timeout(queued, Duration::from_secs(1)) {
                        Ok((q, _)) => queued = q,
                        Err(_) => return,
                    }
                }
                *queued += size;
            }
            self.committed.fetch_max(max, Ordering::SeqCst);
            self.send(Msg::Add(rows));
        }
    }

    pub fn remove(&self, blob_ids: Vec<i64>) {
        if !blob_ids.is_empty() {
            self.send(Msg::Remove(blob_ids));
        }
    }

    /// Waits until everything committed so far is indexed (or a while has passed).
    pub async fn caught_up(&self) {
        let target = self.committed.load(Ordering::SeqCst);
        let mut progress = self.progress.clone();
        let _ = tokio::time::timeout(SEARCH_WAIT, progress.wait_for(|p| *p >= target)).await;
    }

    /// Indexes what is queued, then stops the thread.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Close(tx));
        let _ = rx.await;
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Msg>, progress: watch::Sender<i64>, backlog: &Backlog) {
    loop {
        let Ok(first) = rx.recv() else { return };
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut closing = None;
        let mut newest = *progress.borrow();
        let mut drained = 0;
        let result = (|| -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let mut insert =
                conn.prepare_cached("INSERT OR REPLACE INTO fts (rowid, headers, body) VALUES (?1, ?2, ?3)")?;
            let mut delete = conn.prepare_cached("DELETE FROM fts WHERE rowid = ?1")?;
            for msg in batch {
                match msg {
                    Msg::Add(rows) => {
                        drained += text_len(&rows);
                        for (id, headers, body) in rows {
                            insert.execute(params![id, headers, body])?;
                            newest = newest.max(id);
                        }
                    }
                    Msg::Remove(ids) => {
                        for id in ids {
                            delete.execute([id])?;
                        }
                    }
                    Msg::Close(c) => closing = Some(c),
                }
            }
            conn.prepare_cached("UPDATE mark SET upto = max(upto, ?1)")?
                .execute([newest])?;
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = result {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, "full-text indexing failed; the messages are re-indexed at the next start");
        }
        progress.send_replace(newest);
        if let Ok(mut queued) = backlog.bytes.lock() {
            *queued = queued.saturating_sub(drained);
            backlog.drained.notify_all();
        }
        if let Some(c) = closing {
            let _ = c.send(());
            return;
        }
    }
}

/// Indexes recent blobs the index lacks; returns the newest blob id.
fn catch_up(index: &Connection, main: &Connection, blobs: &BlobStore) -> Result<i64, StoreError> {
    let newest: i64 = main.query_row("SELECT COALESCE(MAX(id), 0) FROM blobs", [], |r| r.get(0))?;
    let upto: i64 = index.query_row("SELECT upto FROM mark", [], |r| r.get(0))?;
    let from = upto.min(newest) - CATCH_UP_WINDOW;
    let mut present = index.prepare("SELECT 1 FROM fts WHERE rowid = ?1")?;
    // Ids first: reading every recent body just to find that the index has it made
    // every store open (every CLI command) read the last CATCH_UP_WINDOW bodies.
    let mut st = main.prepare("SELECT id, account_id, hash FROM blobs WHERE id > ?1")?;
    let mut lacking = Vec::new();
    for row in st.query_map([from], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
    })? {
        let (id, account, hash) = row?;
        if !present.exists([id])? {
            lacking.push((id, account, hash));
        }
    }
    let mut body = main.prepare("SELECT data FROM blob_bodies WHERE blob_id = ?1")?;
    let mut missing = Vec::new();
    for (id, account, hash) in lacking {
        let raw = match body.query_row([id], |r| r.get::<_, Vec<u8>>(0)).optional()? {
            Some(d) => d,
            None => {
                let Ok(hash) = hash.try_into() else { continue };
                blobs.read(crate::AccountId(account), &hash)?
            }
        };
        let m = MessageMetadata::parse(&raw);
        missing.push((id, m.index_headers, m.index_body));
    }
    if !missing.is_empty() {
        tracing::info!(
            messages = missing.len(),
            "re-indexing messages the full-text index lacked"
        );
        let tx = index.unchecked_transaction()?;
        {
            let mut insert = tx.prepare("INSERT OR REPLACE INTO fts (rowid, headers, body) VALUES (?1, ?2, ?3)")?;
            for (id, h, b) in missing {
                insert.execute(params![id, h, b])?;
            }
        }
        tx.execute("UPDATE mark SET upto = max(upto, ?1)", [newest])?;
        tx.commit()?;
    }
    Ok(newest)
}
