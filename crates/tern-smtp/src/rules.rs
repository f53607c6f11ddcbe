//! What a user asks to happen to mail delivered to them, set in webmail's settings:
//! a vacation auto-reply and forwarding. Stored as one JSON setting per account (the
//! store's settings table), read by local delivery for every message it delivers.

use serde::{Deserialize, Serialize};
use tern_store::{AccountId, Store, StoreError};

/// The settings key of an account's rules.
pub fn key(account: AccountId) -> String {
    format!("delivery-rules/{}", account.0)
}

/// The settings key of the senders a vacation reply went to, and when.
pub fn replied_key(account: AccountId) -> String {
    format!("vacation-replied/{}", account.0)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryRules {
    pub vacation: Vacation,
    pub forwarding: Forwarding,
}

/// An automatic reply while the user is away (RFC 3834 rules for automatic responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Vacation {
    pub enabled: bool,
    pub subject: String,
    pub body: String,
    /// First and last day (YYYY-MM-DD, inclusive, UTC); empty means open-ended.
    pub start: String,
    pub end: String,
    /// A sender gets at most one reply in this many days (RFC 3834 §2 suggests 7;
    /// Sieve vacation's default, RFC 5230 §4.1, is 7 too; 4 is common in hosted mail).
    pub days_between: u32,
}

impl Default for Vacation {
    fn default() -> Self {
        Vacation {
            enabled: false,
            subject: String::new(),
            body: String::new(),
            start: String::new(),
            end: String::new(),
            days_between: 4,
        }
    }
}

impl Vacation {
    /// Whether the reply is on at `now` (unix seconds).
    pub fn active_at(&self, now: i64) -> bool {
        if !self.enabled {
            return false;
        }
        let day = |s: &str| {
            chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp())
        };
        let after_start = day(&self.start).is_none_or(|s| now >= s);
        let before_end = day(&self.end).is_none_or(|e| now < e + 86_400);
        after_start && before_end
    }
}

/// Sending a copy of every delivered message on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Forwarding {
    /// The address to forward to; empty means off.
    pub to: String,
    /// Keep a copy in the mailbox as well.
    pub keep_copy: bool,
}

impl Forwarding {
    pub fn active(&self) -> bool {
        !self.to.trim().is_empty()
    }
}

pub async fn load(store: &dyn Store, account: AccountId) -> Result<DeliveryRules, StoreError> {
    Ok(store
        .setting(&key(account))
        .await?
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default())
}

pub async fn save(store: &dyn Store, account: AccountId, rules: &DeliveryRules) -> Result<(), StoreError> {
    let json = serde_json::to_string(rules).unwrap_or_default();
    store.set_setting(&key(account), Some(&json)).await
}
