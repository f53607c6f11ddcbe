//! What an administrator does to a Tern installation, in one place, so the command
//! line (`tern domain`, `tern user`, `tern migrate`, `tern admin`), the admin console
//! and the JSON API do exactly the same thing and word their refusals the same way.
//!
//! Modules, each with one job:
//! - [`domains`]: adding a domain with its DKIM signing keys, rotating and retiring
//!   keys;
//! - [`users`]: creating accounts (with the RFC 5321 postmaster and abuse aliases),
//!   resetting passwords, and importing many accounts from a CSV file;
//! - [`migrations`]: choosing migrations, asking for passes, pausing, finishing, and
//!   adding mailboxes to migrate (one, or a CSV file of them);
//! - [`admins`]: which accounts may use the admin console;
//! - [`tokens`]: the API tokens scripts use instead of a login.
//! - [`health`]: the running server's health and what needs the administrator.
//!
//! Nothing here runs a pass or talks to the network: the store is the interface, and
//! the worker inside `tern serve` acts on what is written here.

pub mod admins;
pub mod domains;
pub mod health;
pub mod migrations;
pub mod tokens;
pub mod users;

use tern_store::StoreError;
use thiserror::Error;

/// Why an administrative action was refused or failed. [`AdminError::Invalid`] and
/// [`AdminError::NotFound`] are the administrator's to fix and say how.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The request cannot be done as asked.
    #[error("{0}")]
    Invalid(String),
    /// It names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(StoreError),
    /// Something on this server failed (key generation, the secrets file).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        match e {
            StoreError::NoSuchDomain(_)
            | StoreError::NoSuchAccount(_)
            | StoreError::NoSuchAlias(_)
            | StoreError::NoSuchMigration(_)
            | StoreError::NoSuchMigrationSource(_)
            | StoreError::NoSuchQueueEntry(_)
            | StoreError::NoSuchDkimKey(..) => AdminError::NotFound(e.to_string()),
            StoreError::DomainExists(_)
            | StoreError::DomainNotEmpty(..)
            | StoreError::AddressInUse(_)
            | StoreError::InvalidAddress(_)
            | StoreError::MigrationSourceInUse(..) => AdminError::Invalid(e.to_string()),
            other => AdminError::Store(other),
        }
    }
}

impl From<tern_migrate::MigrateError> for AdminError {
    fn from(e: tern_migrate::MigrateError) -> AdminError {
        match e {
            tern_migrate::MigrateError::Store(s) => s.into(),
            other => AdminError::Invalid(other.to_string()),
        }
    }
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

/// Now, in unix seconds.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A setting holding JSON (`None`, absent: the type's default); `what` names it in
/// the error when it cannot be read.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned + Default>(stored: Option<&str>, what: &str) -> Result<T> {
    match stored {
        Some(json) => {
            serde_json::from_str(json).map_err(|e| AdminError::Internal(format!("{what} are unreadable: {e}")))
        }
        None => Ok(T::default()),
    }
}

/// Reads a JSON setting (see [`parse_json`]).
pub(crate) async fn load_json<T: serde::de::DeserializeOwned + Default>(
    store: &dyn tern_store::Store,
    key: &str,
    what: &str,
) -> Result<T> {
    parse_json(store.setting(key).await?.as_deref(), what)
}

/// Changes a JSON setting with `change`, which may refuse; a concurrent change is never
/// undone (`tern_store::setting::update`): `change` then runs again on the newer value.
pub(crate) async fn update_json<T, R>(
    store: &dyn tern_store::Store,
    key: &str,
    what: &str,
    mut change: impl FnMut(&mut T) -> Result<R>,
) -> Result<R>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default,
{
    tern_store::setting::update(store, key, |stored| {
        let mut value: T = parse_json(stored, what)?;
        let result = change(&mut value)?;
        let json = serde_json::to_string(&value).map_err(|e| AdminError::Internal(e.to_string()))?;
        Ok((Some(json), result))
    })
    .await
}

/// A CSV file and its first line, the column names: trimmed fields, lines of any
/// length (a missing trailing column is empty, not an error).
pub(crate) fn open_csv<R: std::io::Read>(input: R) -> Result<(csv::Reader<R>, csv::StringRecord)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| AdminError::Invalid(format!("the CSV file cannot be read: {e}")))?
        .clone();
    Ok((reader, headers))
}

/// The domain part of an address, lower-cased.
pub fn domain_of(address: &str) -> String {
    address.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase()
}
