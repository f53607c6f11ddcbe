//! The outbound queue's envelope: what tern-smtp records about a queued message, as the
//! JSON document the store keeps beside it (see `tern_store::outbound`).
//!
//! Each recipient carries its own state, so a message to three domains where one
//! refuses and one is down is delivered once to the first, bounced for the second and
//! retried for the third, never sent twice to the same recipient.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tern_store::{NewQueueEntry, QueueEntry, QueueId, Store, StoreError};

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Where a recipient's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not delivered yet; tried again at the entry's next attempt.
    Pending,
    /// The receiving server accepted it (2xx after DATA).
    Delivered,
    /// Refused for good (5xx) or given up after `max_queue_age`; bounced.
    Failed,
}

/// RFC 3461 §4.1 NOTIFY: which outcomes the sender wants to hear about. The default
/// (no NOTIFY given) is failure and delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            success: false,
            failure: true,
            delay: true,
        }
    }
}

impl Notify {
    /// From smtp-proto's RCPT flags.
    pub fn from_flags(flags: u64) -> Notify {
        use smtp_proto::{RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS};
        if flags & (RCPT_NOTIFY_DELAY | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_NEVER | RCPT_NOTIFY_SUCCESS) == 0 {
            return Notify::default();
        }
        Notify {
            success: flags & RCPT_NOTIFY_SUCCESS != 0,
            failure: flags & RCPT_NOTIFY_FAILURE != 0,
            delay: flags & RCPT_NOTIFY_DELAY != 0,
        }
    }
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// RFC 3461 §4.2 ORCPT, as given by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    #[serde(default)]
    pub notify: Notify,
    pub status: Status,
    #[serde(default)]
    pub attempts: u32,
    /// The last reply about it ("550 5.1.1 no such user") or why it could not be tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// The host that gave `last_reply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
}

impl Recipient {
    pub fn new(address: impl Into<String>) -> Recipient {
        Recipient {
            address: address.into(),
            orcpt: None,
            notify: Notify::default(),
            status: Status::Pending,
            attempts: 0,
            last_reply: None,
            remote_host: None,
        }
    }

    pub fn domain(&self) -> String {
        crate::policy::domain_of(&self.address).to_ascii_lowercase()
    }
}

/// The envelope of a queued message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub recipients: Vec<Recipient>,
    /// RFC 3461 §4.4 ENVID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_id: Option<String>,
    /// RFC 3461 §4.3 RET=HDRS: bounces carry only the headers.
    #[serde(default)]
    pub ret_headers_only: bool,
    /// The message needs SMTPUTF8 (RFC 6531) or 8BITMIME (RFC 6152) at the next hop.
    #[serde(default)]
    pub smtputf8: bool,
    #[serde(default)]
    pub eight_bit: bool,
    /// Delivery attempts of the whole message so far (for the backoff).
    #[serde(default)]
    pub attempts: u32,
    /// Whether the sender has been told the message is delayed.
    #[serde(default)]
    pub delay_notified: bool,
    /// The account that submitted it, for `tern queue show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

impl Envelope {
    pub fn parse(entry: &QueueEntry) -> Envelope {
        serde_json::from_str(&entry.envelope).unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.status == Status::Pending)
    }
}

/// Queues messages and wakes the delivery worker. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn Store>,
    wake: Arc<WakeUp>,
}

/// tokio's Notify, named so it does not clash with RFC 3461's NOTIFY above.
type WakeUp = tokio::sync::Notify;

impl Queue {
    pub fn new(store: Arc<dyn Store>) -> Queue {
        Queue {
            store,
            wake: Arc::new(WakeUp::new()),
        }
    }

    /// Queues `raw` for `envelope`'s recipients, due at once. Durable when it returns.
    pub async fn submit(&self, sender: &str, raw: Vec<u8>, envelope: &Envelope) -> Result<QueueId, StoreError> {
        let id = self
            .store
            .enqueue(NewQueueEntry {
                sender: sender.to_string(),
                raw,
                envelope: envelope.to_json(),
                next_attempt: now(),
            })
            .await?;
        self.wake.notify_one();
        Ok(id)
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
