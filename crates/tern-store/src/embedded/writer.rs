//! Group commit: one thread owns the write connection and applies jobs in batches.
//!
//! Each caller's job runs inside its own SAVEPOINT, so a job that fails rolls back alone;
//! the batch then commits once (one WAL fsync for everyone in it), and only after that
//! commit does any caller hear "done" and are change events published. Under load the
//! batch grows by itself: while one commit's fsync runs, the next jobs queue up.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::blob::{BlobHash, BlobStore};
use crate::changes::{ChangeBus, ChangeEvent};
use crate::{AccountId, StoreError};

/// Jobs applied in one transaction at most; bounds commit latency under heavy load.
const MAX_BATCH: usize = 512;

/// What a job leaves for after the commit.
#[derive(Default)]
pub struct Effects {
    pub events: Vec<ChangeEvent>,
    /// Blobs no row refers to any more, removed once the commit is durable.
    pub unreferenced: Vec<(AccountId, BlobHash)>,
    /// Accounts whose whole blob folder goes.
    pub removed_accounts: Vec<AccountId>,
}

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job gets the connection inside its savepoint, or the reason it cannot run.
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Option<(Effects, Finish)> + Send>;

enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

pub struct Writer {
    tx: mpsc::Sender<Msg>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(db: &Path, blobs: BlobStore, bus: ChangeBus) -> Result<Writer, StoreError> {
        let conn = super::schema::connect(db)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tern-store-writer".into())
            .spawn(move || run(conn, rx, blobs, bus))
            .map_err(|e| StoreError::io("cannot start the store's writer thread", e))?;
        Ok(Writer { tx, thread: std::sync::Mutex::new(Some(thread)) })
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

    /// Waits for queued jobs to finish, then stops the thread (its connection closes,
    /// which checkpoints the WAL).
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Msg>, blobs: BlobStore, bus: ChangeBus) {
    let mut closing = None;
    while closing.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut batch = Vec::new();
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
            commit_batch(&conn, batch, &blobs, &bus);
        }
    }
    drop(conn);
    if let Some(c) = closing {
        let _ = c.send(());
    }
}

fn commit_batch(conn: &Connection, batch: Vec<Job>, blobs: &BlobStore, bus: &ChangeBus) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Nothing ran; fail every job with the reason.
        for job in batch {
            fail_unrun(job, &e);
        }
        return;
    }
    let mut done: Vec<(Effects, Finish)> = Vec::with_capacity(batch.len());
    for job in batch {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            fail_unrun(job, &e);
            continue;
        }
        match job(Ok(conn)) {
            Some(ok) => {
                let _ = conn.execute_batch("RELEASE job");
                done.push(ok);
            }
            None => {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for (effects, finish) in done {
                for (account, hash) in &effects.unreferenced {
                    blobs.remove(*account, hash);
                }
                for account in &effects.removed_accounts {
                    blobs.remove_account(*account);
                }
                bus.publish(effects.events);
                finish(Ok(()));
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let msg = e.to_string();
            for (_, finish) in done {
                finish(Err(StoreError::WriteFailed(format!("commit failed: {msg}"))));
            }
        }
    }
}

/// Tells a job's caller why it could not start.
fn fail_unrun(job: Job, e: &rusqlite::Error) {
    tracing::error!(error = %e, "store write could not start");
    job(Err(StoreError::WriteFailed(e.to_string())));
}
