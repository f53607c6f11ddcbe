//! API tokens: what scripts send (`Authorization: Bearer tern_...`) instead of logging
//! in. A token is 256 random bits, shown once when made; only its SHA-256 is kept, so
//! a copy of the store gives no access. (A slow hash would add nothing: the token is
//! not guessable, unlike a password.)
//!
//! A token may be read-only (a monitoring script reading health and progress needs no
//! power to delete users) and may expire (a contractor's script for the migration
//! weeks). Both are fixed when the token is made: a token is changed by making a new one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tern_store::Store;

use crate::{AdminError, Result, load_json, now, update_json};

/// The setting holding the tokens (a JSON array of the stored tokens).
pub const SETTING: &str = "admin/tokens";
const WHAT: &str = "the stored API tokens";
/// Every token starts with this, so a leaked one is recognisable (secret scanners).
pub const PREFIX: &str = "tern_";
/// The longest validity a token can be given: ten years.
pub const MAX_VALID_DAYS: u32 = 3650;
/// How often the last use is written down, at most: once a minute per token, so busy
/// scripts do not turn every read into a write.
const LAST_USED_EVERY: i64 = 60;

/// What a token may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Everything the console does.
    #[default]
    Full,
    /// Reading only: the API answers its GET requests and refuses every change.
    ReadOnly,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Full => "full",
            Access::ReadOnly => "read-only",
        }
    }

    /// `full` or `read-only`, as the CLI, the console's form and the API take it.
    pub fn parse(s: &str) -> Result<Access> {
        match s.trim() {
            "full" => Ok(Access::Full),
            "read-only" => Ok(Access::ReadOnly),
            other => Err(AdminError::Invalid(format!(
                "{other:?} is not a token access: say full or read-only"
            ))),
        }
    }
}

/// A token as shown: its name, what it may do, when it was made and by whom, when it
/// was last used and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    pub created: i64,
    /// Who made it (an administrator's address, or "tern admin token").
    pub created_by: String,
    /// Updated at most once a minute.
    #[serde(default)]
    pub last_used: Option<i64>,
    /// Tokens made before access existed had full access.
    #[serde(default)]
    pub access: Access,
    /// Unix seconds from which it is refused; `None`: until revoked.
    #[serde(default)]
    pub expires: Option<i64>,
}

impl Token {
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires.is_some_and(|t| now >= t)
    }
}

/// What a new token is to be.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub name: String,
    pub access: Access,
    /// Days from now until it expires; `None`: until revoked.
    pub valid_days: Option<u32>,
}

/// A token as stored: what is shown, and the hash of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    token: Token,
    /// Hex SHA-256 of the whole token.
    sha256: String,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The tokens, without their secrets.
pub async fn list(store: &dyn Store) -> Result<Vec<Token>> {
    let stored: Vec<Stored> = load_json(store, SETTING, WHAT).await?;
    Ok(stored.into_iter().map(|s| s.token).collect())
}

/// Makes a token; returns it: the only time its secret exists outside the client.
pub async fn create(store: &dyn Store, new: &NewToken, created_by: &str) -> Result<String> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(AdminError::Invalid(format!(
            "{name:?}: name the token with letters, digits, - _ or . (at most 64), e.g. backup-script"
        )));
    }
    if let Some(days) = new.valid_days
        && !(1..=MAX_VALID_DAYS).contains(&days)
    {
        return Err(AdminError::Invalid(format!(
            "a token is valid for 1 to {MAX_VALID_DAYS} days, not {days}; leave the expiry out for a token that \
             lasts until revoked"
        )));
    }
    let secret = format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let created = now();
    let stored = Stored {
        token: Token {
            name: name.to_string(),
            created,
            created_by: created_by.to_string(),
            last_used: None,
            access: new.access,
            expires: new.valid_days.map(|days| created + i64::from(days) * 86_400),
        },
        sha256: hash(&secret),
    };
    update_json(store, SETTING, WHAT, |tokens: &mut Vec<Stored>| {
        if tokens.iter().any(|t| t.token.name == name) {
            return Err(AdminError::Invalid(format!(
                "a token named {name} exists; revoke it first or choose another name"
            )));
        }
        tokens.push(stored.clone());
        Ok(())
    })
    .await?;
    Ok(secret)
}

/// Revokes a token: requests carrying it are refused from now on.
pub async fn revoke(store: &dyn Store, name: &str) -> Result<()> {
    update_json(store, SETTING, WHAT, |tokens: &mut Vec<Stored>| {
        let before = tokens.len();
        tokens.retain(|t| t.token.name != name);
        if tokens.len() == before {
            return Err(AdminError::NotFound(format!("there is no API token named {name}")));
        }
        Ok(())
    })
    .await
}

/// What a request's token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// A live token: the request may go on, as far as its access allows.
    Valid(Token),
    /// A token that was good and has expired: the script needs a new one.
    Expired(Token),
    /// Not a token of this server, or a revoked one.
    Unknown,
}

/// Checks the token a request carries, now; notes its use.
pub async fn authenticate(store: &dyn Store, secret: &str) -> Result<Checked> {
    authenticate_at(store, secret, now()).await
}

/// [`authenticate`] at a given time (unix seconds), for tests of expiry.
pub async fn authenticate_at(store: &dyn Store, secret: &str, now: i64) -> Result<Checked> {
    if !secret.starts_with(PREFIX) {
        return Ok(Checked::Unknown);
    }
    let digest = hash(secret);
    let tokens: Vec<Stored> = load_json(store, SETTING, WHAT).await?;
    // Compared by hash: equal-length hex of a digest the caller cannot steer, so the
    // comparison's timing tells nothing about a stored token.
    let Some(token) = tokens.into_iter().find(|t| t.sha256 == digest).map(|t| t.token) else {
        return Ok(Checked::Unknown);
    };
    if token.expired_at(now) {
        return Ok(Checked::Expired(token));
    }
    if token.last_used.is_none_or(|last| now - last >= LAST_USED_EVERY) {
        // Written through update_json, so a token revoked or made meanwhile stays so.
        update_json(store, SETTING, WHAT, |tokens: &mut Vec<Stored>| {
            if let Some(t) = tokens.iter_mut().find(|t| t.sha256 == digest) {
                t.token.last_used = Some(now);
            }
            Ok(())
        })
        .await?;
    }
    Ok(Checked::Valid(token))
}
