//! Source passwords and tokens at rest: XChaCha20-Poly1305 under a key kept in a file
//! of its own (mode 0600) beside the store, so a copy of the database alone does not
//! reveal anyone's old-provider password.
//!
//! A sealed secret is `nonce (24 bytes) || ciphertext+tag`; the nonce is random, which
//! the extended 192-bit nonce of XChaCha makes safe for any number of secrets.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the migration key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the migration key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "the migration key {0} is not 32 bytes; restore it from backup (without it the stored source passwords cannot be read; add them again with `tern migrate add`)"
    )]
    BadKey(PathBuf),
    #[error("{0} is readable by other users; run `chmod 600 {0}`")]
    KeyTooOpen(PathBuf),
    #[error(
        "a stored source password cannot be decrypted with {0} (wrong or replaced key file); add the credentials again with `tern migrate add`"
    )]
    Undecryptable(PathBuf),
}

/// The key that seals and opens source secrets.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SecretBox").field("path", &self.path).finish()
    }
}

impl SecretBox {
    /// The key file's name inside the data folder.
    pub const FILE: &'static str = "migration.key";

    /// Opens the key at `path`, creating it (0600) if it does not exist yet.
    pub fn open_or_create(path: &Path) -> Result<SecretBox, SecretError> {
        let key = match std::fs::read(path) {
            Ok(bytes) => {
                check_private(path)?;
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(path)?,
            Err(source) => {
                return Err(SecretError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if key.len() != KEY_LEN {
            return Err(SecretError::BadKey(path.to_path_buf()));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretError::BadKey(path.to_path_buf()))?;
        Ok(SecretBox {
            cipher,
            path: path.to_path_buf(),
        })
    }

    /// Encrypts a secret for storage.
    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            .expect("XChaCha20-Poly1305 encryption of a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a stored secret.
    pub fn open(&self, sealed: &[u8]) -> Result<String, SecretError> {
        let bad = || SecretError::Undecryptable(self.path.clone());
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce), ciphertext)
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

fn create_key(path: &Path) -> Result<Vec<u8>, SecretError> {
    let write_err = |source| SecretError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut key = vec![0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    // Created 0600 from the start (never briefly world-readable), and create_new so two
    // processes starting at once cannot each write a different key.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(&key).map_err(write_err)?;
            file.sync_all().map_err(write_err)?;
            Ok(key)
        }
        // Someone else created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(|source| SecretError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(e) => Err(write_err(e)),
    }
}

fn check_private(path: &Path) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(SecretError::KeyTooOpen(path.to_path_buf()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SecretBox::FILE);
        let sb = SecretBox::open_or_create(&path).unwrap();
        let sealed = sb.seal("hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_ne!(sealed, sb.seal("hunter2"), "random nonce per secret");
        // A second opening reads the same key.
        let again = SecretBox::open_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), "hunter2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open_or_create(&dir.path().join("a.key")).unwrap();
        let other = SecretBox::open_or_create(&dir.path().join("b.key")).unwrap();
        let mut sealed = sb.seal("secret");
        assert!(matches!(other.open(&sealed), Err(SecretError::Undecryptable(_))));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(sb.open(&sealed).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        SecretBox::open_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretBox::open_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
