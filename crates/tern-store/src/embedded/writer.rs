//! Group commit: one thread owns the write connection and applies jobs in batches; a
//! second thread makes each committed batch durable; a third checkpoints the WAL.
//!
//! Each caller's job runs inside its own SAVEPOINT, so a job that fails rolls back alone.
//! The batch then commits once. The write connection runs with `synchronous = NORMAL`,
//! so COMMIT only writes the batch's frames to the WAL; the sync thread then fdatasyncs
//! the WAL file, which makes every frame written so far durable, and only after that do
//! the batch's callers hear "done" and are its change events published. While one
//! batch's fsync runs, the writer already applies and writes the next batch, so the
//! disk's flush latency is paid once per group, not once per message, and batches grow
//! by themselves under load. After a crash SQLite's WAL recovery keeps exactly the
//! frames of complete commits whose bytes reached the disk (their checksum chain is
//! intact), which includes every batch that was acknowledged.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::index::{IndexRow, Indexer};
use super::messages::Removed;
use crate::blob::BlobStore;
use crate::changes::{ChangeBus, ChangeEvent};
use crate::{AccountId, StoreError};

/// Jobs applied in one transaction at most; bounds commit latency under heavy load.
const MAX_BATCH: usize = 512;
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// WAL size above which the checkpointer makes the writer start the WAL over. Passive
/// checkpoints never get ahead of a writer that commits without pause, so under steady
/// load the WAL would otherwise grow without end.
const WAL_RESTART_BYTES: u64 = 64 << 20;

/// What a job leaves for after the commit.
#[derive(Default)]
pub struct Effects {
    pub events: Vec<ChangeEvent>,
    /// Blobs no message refers to any more: their index rows and files go once the
    /// commit is durable.
    pub unreferenced: Vec<Removed>,
    /// Accounts whose whole blob folder goes.
    pub removed_accounts: Vec<AccountId>,
    /// New blobs' text for the full-text index, handed to the indexer once durable.
    pub index: Vec<IndexRow>,
}

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job gets the connection inside its savepoint, or the reason it cannot run.
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Option<(Effects, Finish)> + Send>;

enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

/// A committed batch waiting for its fsync.
enum Synced {
    Batch(Vec<(Effects, Finish)>),
    Close(oneshot::Sender<()>),
}

pub struct Writer {
    tx: mpsc::Sender<Msg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    checkpoint_stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Writer {
    pub fn start(db: &Path, blobs: BlobStore, bus: ChangeBus, indexer: Arc<Indexer>) -> Result<Writer, StoreError> {
        let conn = super::schema::connect(db)?;
        // Durability comes from the sync thread's fdatasync of the WAL (see above);
        // checkpoints run on their own thread so commits never wait for them.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")?;
        let wal_path = db.with_extension("db-wal");
        let wal = File::open(&wal_path)
            .map_err(|e| StoreError::io(format!("cannot open the WAL {}", wal_path.display()), e))?;
        let checkpoint_conn = super::schema::connect(db)?;
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::io(format!("cannot start the store's {name} thread"), e))
        };
        let (tx, rx) = mpsc::channel();
        let (sync_tx, sync_rx) = mpsc::channel();
        let checkpoint_stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop = checkpoint_stop.clone();
        let threads = vec![
            spawn("tern-store-writer", Box::new(move || write_loop(conn, rx, sync_tx)))?,
            spawn(
                "tern-store-sync",
                Box::new(move || sync_loop(wal, sync_rx, blobs, bus, indexer)),
            )?,
            spawn(
                "tern-store-checkpoint",
                Box::new(move || checkpoint_loop(checkpoint_conn, &wal_path, stop)),
            )?,
        ];
        Ok(Writer {
            tx,
            threads: Mutex::new(threads),
            checkpoint_stop,
        })
    }

    /// Runs `f` in the write transaction. `f` returns its value and its effects; the
    /// value is handed back after the commit that includes it is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Effects), StoreError> + Send + 'static,
    {
        let (reply, done) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn| match conn.and_then(f) {
            Ok((value, effects)) => {
                let finish: Finish = Box::new(move |r| {
                    let _ = reply.send(r.map(|()| value));
                });
                Some((effects, finish))
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        });
        self.tx.send(Msg::Job(job)).map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits for queued jobs to be committed and durable, then stops the threads; the
    /// last checkpoint truncates the WAL.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        self.stop_checkpoints();
        let threads: Vec<_> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
    }

    fn stop_checkpoints(&self) {
        if let Ok(mut s) = self.checkpoint_stop.0.lock() {
            *s = true;
        }
        self.checkpoint_stop.1.notify_all();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Without close(), the writer and sync threads end when their channels close;
        // the checkpointer needs telling.
        self.stop_checkpoints();
    }
}

fn write_loop(conn: Connection, rx: mpsc::Receiver<Msg>, synced: mpsc::Sender<Synced>) {
    loop {
        let Ok(first) = rx.recv() else { return };
        let mut batch = Vec::new();
        let mut closing = None;
        match first {
            Msg::Job(j) => batch.push(j),
            Msg::Close(c) => closing = Some(c),
        }
        // Everything already waiting joins this commit.
        while closing.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Close(c)) => closing = Some(c),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let done = commit_batch(&conn, batch);
            if !done.is_empty() && synced.send(Synced::Batch(done)).is_err() {
                return;
            }
        }
        if let Some(c) = closing {
            let _ = synced.send(Synced::Close(c));
            return;
        }
    }
}

/// Applies a batch and commits it (without fsync). Returns the jobs that succeeded,
/// to be acknowledged once the commit is durable.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

fn commit_batch(conn: &Connection, batch: Vec<Job>) -> Vec<(Effects, Finish)> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        for job in batch {
            fail_unrun(job, &e);
        }
        return Vec::new();
    }
    let mut done: Vec<(Effects, Finish)> = Vec::with_capacity(batch.len());
    for job in batch {
        if let Err(e) = run_cached(conn, "SAVEPOINT job") {
            fail_unrun(job, &e);
            continue;
        }
        match job(Ok(conn)) {
            Some(ok) => {
                let _ = run_cached(conn, "RELEASE job");
                done.push(ok);
            }
            None => {
                let _ = run_cached(conn, "ROLLBACK TO job").and_then(|_| run_cached(conn, "RELEASE job"));
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        let msg = e.to_string();
        for (_, finish) in done {
            finish(Err(StoreError::WriteFailed(format!("commit failed: {msg}"))));
        }
        return Vec::new();
    }
    done
}

/// Makes committed batches durable, then acknowledges them in commit order. Batches
/// that queued up while one fsync ran share the next one.
fn sync_loop(wal: File, rx: mpsc::Receiver<Synced>, blobs: BlobStore, bus: ChangeBus, indexer: Arc<Indexer>) {
    loop {
        let Ok(first) = rx.recv() else { return };
        let mut pending = vec![first];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let result = wal.sync_data().map_err(|e| e.to_string());
        for item in pending {
            match item {
                Synced::Batch(done) => {
                    for (effects, finish) in done {
                        if let Err(e) = &result {
                            // The batch is committed but may not survive a power cut;
                            // say so rather than claim durability.
                            finish(Err(StoreError::WriteFailed(format!("cannot fsync the WAL: {e}"))));
                            continue;
                        }
                        indexer.add(effects.index);
                        indexer.remove(effects.unreferenced.iter().map(|r| r.blob_id).collect());
                        for (account, hash) in effects.unreferenced.iter().filter_map(|r| r.file.as_ref()) {
                            blobs.remove(*account, hash);
                        }
                        for account in &effects.removed_accounts {
                            blobs.remove_account(*account);
                        }
                        bus.publish(effects.events);
                        finish(Ok(()));
                    }
                }
                Synced::Close(c) => {
                    let _ = c.send(());
                    return;
                }
            }
        }
    }
}

/// Copies committed WAL frames into the database file in the background (a PASSIVE
/// checkpoint never blocks the writer or readers; SQLite syncs the WAL before copying
/// and the database after), and truncates the WAL when stopped.
fn checkpoint_loop(conn: Connection, wal: &Path, stop: Arc<(Mutex<bool>, Condvar)>) {
    let (lock, cvar) = &*stop;
    loop {
        let Ok(guard) = lock.lock() else { return };
        let Ok((guard, _)) = cvar.wait_timeout(guard, CHECKPOINT_INTERVAL) else {
            return;
        };
        let stopping = *guard;
        drop(guard);
        let oversized = std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_RESTART_BYTES);
        // RESTART waits for the writer's current transaction and makes the next one
        // write the WAL from its start; the journal_size_limit pragma then trims it.
        let mode = match (stopping, oversized) {
            (true, _) => "TRUNCATE",
            (false, true) => "RESTART",
            (false, false) => "PASSIVE",
        };
        if let Err(e) = conn.execute_batch(&format!("PRAGMA wal_checkpoint({mode})")) {
            tracing::warn!(error = %e, "WAL checkpoint failed; it is tried again");
        }
        if stopping {
            return;
        }
    }
}

/// Tells a job's caller why it could not start.
fn fail_unrun(job: Job, e: &rusqlite::Error) {
    tracing::error!(error = %e, "store write could not start");
    job(Err(StoreError::WriteFailed(e.to_string())));
}
