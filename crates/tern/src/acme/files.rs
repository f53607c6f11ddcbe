//! What ACME keeps in the data folder (`DATA/acme/`): the account, the status of the
//! last checks, and a renewal request from `tern cert renew`.

use super::*;

/// Where ACME keeps its state: `DATA/acme/`.
#[derive(Debug, Clone)]
pub struct AcmeFiles {
    pub(super) dir: PathBuf,
}

/// `account.json`: the account and the directory (and contact) it was made with.
#[derive(Serialize, Deserialize)]
pub(super) struct SavedAccount {
    pub(super) directory: String,
    pub(super) contact: String,
    pub(super) credentials: AccountCredentials,
}

impl AcmeFiles {
    pub fn new(data_dir: &Path) -> AcmeFiles {
        AcmeFiles {
            dir: data_dir.join("acme"),
        }
    }

    pub fn status_path(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    pub(super) fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    pub(super) fn request_path(&self) -> PathBuf {
        self.dir.join("renew-request")
    }

    /// The folder, created private (0700) if missing.
    pub(super) fn ensure_dir(&self) -> Result<(), AcmeError> {
        let err = |source| AcmeError::File {
            path: self.dir.clone(),
            source,
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.dir).map_err(err)
    }

    pub(super) fn write(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), AcmeError> {
        self.ensure_dir()?;
        tls::write_file_atomically(path, contents, mode).map_err(AcmeError::from)
    }

    pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AcmeError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| AcmeError::Damaged {
                    path: path.to_path_buf(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AcmeError::File {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// What the server last recorded; `None` before its first check.
    pub fn read_status(&self) -> Result<Option<Status>, AcmeError> {
        Self::read_json(&self.status_path())
    }

    pub(super) fn write_status(&self, status: &Status) -> Result<(), AcmeError> {
        let json = serde_json::to_vec_pretty(status).map_err(|source| AcmeError::Damaged {
            path: self.status_path(),
            source,
        })?;
        self.write(&self.status_path(), &json, 0o644)
    }

    pub(super) fn read_account(&self) -> Result<Option<SavedAccount>, AcmeError> {
        Self::read_json(&self.account_path())
    }

    /// Saved 0600: it holds the account's private key.
    pub(super) fn write_account(&self, account: &SavedAccount) -> Result<(), AcmeError> {
        let json = serde_json::to_vec(account).map_err(|source| AcmeError::Damaged {
            path: self.account_path(),
            source,
        })?;
        self.write(&self.account_path(), &json, 0o600)
    }

    /// Asks the running server to order a certificate now; returns the request's id,
    /// which `status.json`'s `handled_request` shows once it is done.
    pub fn request_renewal(&self) -> Result<String, AcmeError> {
        let id = format!("{}-{}", unix_now(), rand::random::<u32>());
        self.write(&self.request_path(), id.as_bytes(), 0o644)?;
        Ok(id)
    }

    /// Whether a request is still waiting to be picked up.
    pub fn renewal_requested(&self) -> bool {
        self.request_path().exists()
    }

    /// Takes `tern cert renew`'s request, if one is waiting.
    pub(super) fn take_request(&self) -> Option<String> {
        let path = self.request_path();
        let id = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        Some(id.trim().to_string())
    }
}

/// What the server found at its checks, kept in `status.json` for `tern cert status`.
/// Holds no secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The `tern serve` process that wrote it, and how many checks it has made since
    /// it started (0: its first check is still under way).
    pub pid: u32,
    #[serde(default)]
    pub checks: u64,
    pub directory: String,
    /// Unix times.
    pub last_check: Option<i64>,
    pub next_check: Option<i64>,
    pub last_issued: Option<i64>,
    pub last_error: Option<StatusError>,
    /// Failures in a row; the next retry waits longer after each.
    pub failures: u32,
    /// The names the last check wanted on the certificate.
    pub wanted: Vec<String>,
    /// Names of hosted domains left out, and why.
    pub left_out: Vec<LeftOut>,
    /// The SHA-256 of the last certificate issued through ACME (hex), so a restart
    /// knows the certificate on disk is one.
    pub issued_sha256: Option<String>,
    /// The last `tern cert renew` request handled.
    pub handled_request: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusError {
    pub at: i64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeftOut {
    pub name: String,
    pub reason: String,
}
