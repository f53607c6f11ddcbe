//! What the store keeps for SMTP (`tern-smtp`): the outbound queue and the domains'
//! DKIM keys.
//!
//! As with migrations, the store gives these records durability and atomicity, not
//! meaning. A queue entry's envelope (recipients, their delivery state, DSN options) is
//! a JSON document that tern-smtp defines; the store only needs the entry's next
//! attempt time to find what is due, and a lease so that two delivery workers never
//! send the same message at the same time. The message itself is a file, made durable
//! (fsync, rename) before the row commits: an acknowledged submission survives kill -9.

use serde::{Deserialize, Serialize};

/// Row id of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub i64);

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A message waiting for (or in) delivery to other hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: QueueId,
    /// The envelope sender (RFC 5321 reverse-path); empty for bounces (`<>`).
    pub sender: String,
    pub size: u64,
    /// Unix seconds when it was queued.
    pub created: i64,
    /// Unix seconds of the next delivery attempt.
    pub next_attempt: i64,
    /// Recipients and their delivery state: JSON owned by tern-smtp.
    pub envelope: String,
    /// The worker delivering it and until when its lease holds.
    pub lease: Option<(String, i64)>,
}

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewQueueEntry {
    pub sender: String,
    pub raw: Vec<u8>,
    pub envelope: String,
    pub next_attempt: i64,
}

/// The signing algorithm of a DKIM key (RFC 6376 §3.3, RFC 8463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DkimAlgorithm {
    /// rsa-sha256; the private key is PKCS#1 DER, the public key PKCS#1 DER.
    RsaSha256,
    /// ed25519-sha256; the private key is PKCS#8 DER, the public key the raw 32 bytes.
    Ed25519Sha256,
}

impl DkimAlgorithm {
    /// The `k=` tag of the DNS record (RFC 6376 §3.6.1).
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa",
            DkimAlgorithm::Ed25519Sha256 => "ed25519",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa-sha256",
            DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    pub fn parse(s: &str) -> Option<DkimAlgorithm> {
        match s {
            "rsa-sha256" => Some(DkimAlgorithm::RsaSha256),
            "ed25519-sha256" => Some(DkimAlgorithm::Ed25519Sha256),
            _ => None,
        }
    }
}

/// One DKIM key of a hosted domain. A domain signs with every active key (one RSA and
/// one Ed25519 after `tern domain add`); a rotation adds new keys under new selectors
/// and retires the old ones, which stay listed until deleted so their DNS records can
/// be removed after messages signed with them have been delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    /// Unix seconds.
    pub created: i64,
    pub active: bool,
}
