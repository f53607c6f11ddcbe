//! Message bodies as content-addressed files: `blobs/<account>/<aa>/<sha256>`.
//!
//! The same bytes are stored once per account however many mailboxes hold them (a copy
//! or move never writes a body again). A blob is made durable before the database row
//! that refers to it commits: write to a temporary file, fsync, rename into place,
//! fsync the directory. After a crash a blob can exist without a row (harmless: it is
//! not visible and the next identical message reuses it), never a row without a blob.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{AccountId, StoreError};

/// SHA-256 of a message's bytes: what identifies its content.
pub type BlobHash = [u8; 32];

/// The content hash of a message's bytes (SHA-256).
pub fn hash(bytes: &[u8]) -> BlobHash {
    Sha256::digest(bytes).into()
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn open(root: PathBuf) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join("tmp"))
            .map_err(|e| StoreError::io(format!("cannot create blob folder {}", root.display()), e))?;
        Ok(BlobStore { root })
    }

    pub fn path(&self, account: AccountId, hash: &BlobHash) -> PathBuf {
        let hex = hex::encode(hash);
        self.root.join(account.0.to_string()).join(&hex[..2]).join(hex)
    }

    /// Makes sure the blob is on disk and durable. Returns quickly if it already is.
    pub fn put(&self, account: AccountId, hash: &BlobHash, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.path(account, hash);
        if path.exists() {
            return Ok(path);
        }
        let dir = path.parent().expect("blob path has a parent");
        let ctx = |what: &str| format!("cannot {what} blob {}", path.display());
        fs::create_dir_all(dir).map_err(|e| StoreError::io(ctx("create folder for"), e))?;
        let mut tmp =
            tempfile_in(&self.root.join("tmp")).map_err(|e| StoreError::io(ctx("create temporary file for"), e))?;
        tmp.1.write_all(bytes).map_err(|e| StoreError::io(ctx("write"), e))?;
        tmp.1.sync_all().map_err(|e| StoreError::io(ctx("fsync"), e))?;
        fs::rename(&tmp.0, &path).map_err(|e| StoreError::io(ctx("rename into place"), e))?;
        sync_dir(dir).map_err(|e| StoreError::io(ctx("fsync folder of"), e))?;
        Ok(path)
    }

    /// Makes the blob of `from` also the blob of `to` with a hard link, so the bytes
    /// are on disk once (a message delivered to several accounts). Falls back to a copy
    /// where links are not possible.
    pub fn link(&self, from: AccountId, to: AccountId, hash: &BlobHash, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.path(to, hash);
        if path.exists() {
            return Ok(path);
        }
        let dir = path.parent().expect("blob path has a parent");
        if fs::create_dir_all(dir).is_ok() && fs::hard_link(self.path(from, hash), &path).is_ok() {
            sync_dir(dir).map_err(|e| StoreError::io(format!("cannot fsync folder of blob {}", path.display()), e))?;
            return Ok(path);
        }
        self.put(to, hash, bytes)
    }

    pub fn read(&self, account: AccountId, hash: &BlobHash) -> Result<Vec<u8>, StoreError> {
        let path = self.path(account, hash);
        fs::read(&path).map_err(|e| StoreError::io(format!("cannot read blob {}", path.display()), e))
    }

    /// Removes a blob no row refers to any more. A missing file is not an error.
    pub fn remove(&self, account: AccountId, hash: &BlobHash) {
        let path = self.path(account, hash);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove unreferenced blob");
        }
    }

    /// Removes every blob of an account (after the account's rows are gone).
    pub fn remove_account(&self, account: AccountId) {
        let dir = self.root.join(account.0.to_string());
        if let Err(e) = fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove account blobs");
        }
    }
}

/// A uniquely named temporary file; the name carries the pid and a counter so that
/// concurrent writers (threads and processes) never collide.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}.{}.{}", std::process::id(), n, rand::random::<u32>()));
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlobStore {
    /// Removes temporary files left by a crash mid-write. Only old ones: another process
    /// (the CLI beside a running server) may be writing a fresh one right now.
    pub(crate) fn clean_tmp(&self) {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in entries.flatten() {
            if e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < old) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
