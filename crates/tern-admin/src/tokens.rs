//! API tokens: what scripts send (`Authorization: Bearer tern_...`) instead of logging
//! in. A token is 256 random bits, shown once when made; only its SHA-256 is kept, so
//! a copy of the store gives no access. (A slow hash would add nothing: the token is
//! not guessable, unlike a password.)

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tern_store::Store;

use crate::{AdminError, Result, now};

/// The setting holding the tokens (a JSON array of [`Token`]).
pub const SETTING: &str = "admin/tokens";
/// Every token starts with this, so a leaked one is recognisable (secret scanners).
pub const PREFIX: &str = "tern_";

/// A token as shown: its name, when it was made and by whom, when last used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    pub created: i64,
    /// Who made it (an administrator's address, or "tern admin token").
    pub created_by: String,
    /// Updated at most once a minute.
    #[serde(default)]
    pub last_used: Option<i64>,
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

async fn load(store: &dyn Store) -> Result<Vec<Stored>> {
    Ok(match store.setting(SETTING).await? {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| AdminError::Internal(format!("the stored API tokens are unreadable: {e}")))?,
        None => Vec::new(),
    })
}

async fn save(store: &dyn Store, tokens: &[Stored]) -> Result<()> {
    let json = serde_json::to_string(tokens).map_err(|e| AdminError::Internal(e.to_string()))?;
    Ok(store.set_setting(SETTING, Some(&json)).await?)
}

/// The tokens, without their secrets.
pub async fn list(store: &dyn Store) -> Result<Vec<Token>> {
    Ok(load(store).await?.into_iter().map(|s| s.token).collect())
}

/// Makes a token; returns it: the only time its secret exists outside the client.
pub async fn create(store: &dyn Store, name: &str, created_by: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(AdminError::Invalid(format!(
            "{name:?}: name the token with letters, digits, - _ or . (at most 64), e.g. backup-script"
        )));
    }
    let mut tokens = load(store).await?;
    if tokens.iter().any(|t| t.token.name == name) {
        return Err(AdminError::Invalid(format!(
            "a token named {name} exists; revoke it first or choose another name"
        )));
    }
    let secret = format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    tokens.push(Stored {
        token: Token {
            name: name.to_string(),
            created: now(),
            created_by: created_by.to_string(),
            last_used: None,
        },
        sha256: hash(&secret),
    });
    save(store, &tokens).await?;
    Ok(secret)
}

/// Revokes a token: requests carrying it are refused from now on.
pub async fn revoke(store: &dyn Store, name: &str) -> Result<()> {
    let mut tokens = load(store).await?;
    let before = tokens.len();
    tokens.retain(|t| t.token.name != name);
    if tokens.len() == before {
        return Err(AdminError::NotFound(format!("there is no API token named {name}")));
    }
    save(store, &tokens).await
}

/// The name of the token a request carries, if it is a live one; notes its use.
pub async fn authenticate(store: &dyn Store, secret: &str) -> Result<Option<String>> {
    if !secret.starts_with(PREFIX) {
        return Ok(None);
    }
    let digest = hash(secret);
    let mut tokens = load(store).await?;
    // Compared by hash: equal-length hex of a digest the caller cannot steer, so the
    // comparison's timing tells nothing about a stored token.
    let Some(stored) = tokens.iter_mut().find(|t| t.sha256 == digest) else {
        return Ok(None);
    };
    let token = &mut stored.token;
    let name = token.name.clone();
    let t = now();
    if token.last_used.is_none_or(|last| t - last >= 60) {
        token.last_used = Some(t);
        save(store, &tokens).await?;
    }
    Ok(Some(name))
}
