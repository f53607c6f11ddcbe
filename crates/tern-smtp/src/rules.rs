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

// --- Applying the rules at delivery ---------------------------------------------------

/// Header fields that mark mail no vacation reply may answer (RFC 3834 §2, §3.1.7;
/// RFC 2369 list fields; the de-facto Precedence field).
fn is_automatic_or_bulk(message: &mail_parser::Message<'_>) -> bool {
    let raw = |name: &str| message.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    if raw("Auto-Submitted").is_some_and(|v| v != "no") {
        return true;
    }
    if [
        "List-Id",
        "List-Unsubscribe",
        "List-Post",
        "X-Auto-Response-Suppress",
        "Feedback-ID",
    ]
    .iter()
    .any(|h| message.header_raw(*h).is_some())
    {
        return true;
    }
    raw("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk"))
}

/// Senders that are machines: replying to them only makes noise or loops.
fn is_machine_sender(sender: &str) -> bool {
    let local = sender.split('@').next().unwrap_or("").to_ascii_lowercase();
    local.is_empty()
        || matches!(
            local.as_str(),
            "mailer-daemon" | "postmaster" | "listserv" | "majordomo" | "daemon"
        )
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.starts_with("bounce")
        || local.contains("noreply")
        || local.contains("no-reply")
        || local.contains("donotreply")
        || local.contains("do-not-reply")
}

/// What local delivery does with one recipient's rules once the message is stored (or,
/// for forwarding without a copy, instead of storing it).
pub(crate) struct Applied {
    /// A forward could not be queued: the message must not be acknowledged.
    pub forward_failed: bool,
}

/// Forwards and answers for `account` as its rules say. `sender` is the envelope sender
/// (empty for bounces), `raw` the message as delivered here.
pub(crate) async fn apply(
    server: &crate::SmtpServer,
    account: &tern_store::Account,
    rules: &DeliveryRules,
    sender: &str,
    raw: &[u8],
) -> Applied {
    let mut applied = Applied { forward_failed: false };
    if rules.forwarding.active()
        && let Err(e) = forward(server, account, rules.forwarding.to.trim(), raw).await
    {
        tracing::warn!(user = %account.address, error = %e, "could not queue a forwarded copy");
        applied.forward_failed = true;
    }
    let now = crate::queue::now();
    if rules.vacation.active_at(now)
        && let Err(e) = vacation_reply(server, account, &rules.vacation, sender, raw, now).await
    {
        tracing::warn!(user = %account.address, error = %e, "could not send a vacation reply");
    }
    applied
}

/// Sends the message on, unchanged below a Delivered-To field (so the sender's DKIM
/// signature still verifies), with the account as envelope sender: bounces come back
/// to the user, and SPF checks the forward against Tern, which is allowed to send.
async fn forward(
    server: &crate::SmtpServer,
    account: &tern_store::Account,
    to: &str,
    raw: &[u8],
) -> Result<(), StoreError> {
    // Delivered-To (as Postfix and others write it) names each mailbox a message has
    // been delivered to; finding ours means the message went round a forwarding loop.
    let marker = format!("delivered-to: {}", account.address.to_ascii_lowercase());
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    if String::from_utf8_lossy(&raw[..head_end])
        .to_ascii_lowercase()
        .contains(&marker)
    {
        tracing::info!(user = %account.address, "not forwarding: the message has been here before (loop)");
        return Ok(());
    }
    let mut copy = format!("Delivered-To: {}\r\n", account.address).into_bytes();
    copy.extend_from_slice(raw);
    send_generated(server, &account.address, to, copy).await
}

/// Delivers a message Tern writes or forwards: into the mailbox if `to` is hosted here,
/// else through the queue.
async fn send_generated(server: &crate::SmtpServer, sender: &str, to: &str, raw: Vec<u8>) -> Result<(), StoreError> {
    let store = server.store.as_ref();
    if let Ok(Some(local)) = crate::policy::local_recipient(store, to, false).await {
        crate::local::deliver(store, &[local], raw, crate::local::Folder::Inbox).await?;
        return Ok(());
    }
    let mut envelope = crate::queue::Envelope::default();
    envelope.recipients.push(crate::queue::Recipient::new(to.to_string()));
    envelope.submitted_by = (!sender.is_empty()).then(|| sender.to_string());
    envelope.eight_bit = !raw.is_ascii();
    server.queue.submit(sender, raw, &envelope).await?;
    Ok(())
}

/// RFC 3834: one automatic reply per sender per `days_between`, never to machines,
/// lists or bulk mail, and only to mail addressed to the user by name (To or Cc).
async fn vacation_reply(
    server: &crate::SmtpServer,
    account: &tern_store::Account,
    vacation: &Vacation,
    sender: &str,
    raw: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let sender = sender.trim().to_ascii_lowercase();
    if sender.is_empty() || is_machine_sender(&sender) || sender == account.address.to_ascii_lowercase() {
        return Ok(());
    }
    let Some(message) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Ok(());
    };
    if is_automatic_or_bulk(&message) {
        return Ok(());
    }
    // RFC 3834 §2: only reply when this mailbox (or one of its aliases) is among the
    // recipients the message names, not when it arrived as a Bcc or through a list.
    let store = server.store.as_ref();
    let mut own = vec![account.address.to_ascii_lowercase()];
    let domain = crate::policy::domain_of(&account.address).to_string();
    for alias in store.aliases(Some(&domain)).await? {
        if alias.target.eq_ignore_ascii_case(&account.address) {
            own.push(alias.address.to_ascii_lowercase());
        }
    }
    let named = message
        .to()
        .into_iter()
        .chain(message.cc())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address.as_deref())
        .any(|a| own.contains(&a.to_ascii_lowercase()));
    if !named {
        return Ok(());
    }
    // Once per sender per period (RFC 5230 §4.2): remembered in a setting, entries older
    // than a month dropped. Two messages delivered at once (from one sender, or two)
    // must not both reply or forget each other's entry, so the setting is changed
    // only if no other delivery changed it meanwhile.
    let period = i64::from(vacation.days_between.max(1)) * 86_400;
    let reply_now = tern_store::setting::update(store, &replied_key(account.id), |stored| {
        let mut replied: std::collections::BTreeMap<String, i64> = stored
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        if replied.get(&sender).is_some_and(|&at| now - at < period) {
            return Ok::<_, StoreError>((stored.map(str::to_string), false));
        }
        replied.retain(|_, at| now - *at < 31 * 86_400);
        replied.insert(sender.clone(), now);
        Ok((Some(serde_json::to_string(&replied).unwrap_or_default()), true))
    })
    .await?;
    if !reply_now {
        return Ok(());
    }

    let subject = if vacation.subject.trim().is_empty() {
        format!("Auto: {}", message.subject().unwrap_or("your message"))
    } else {
        vacation.subject.trim().to_string()
    };
    let mut reply = mail_builder::MessageBuilder::new()
        .from(match &account.display_name {
            Some(name) if !name.trim().is_empty() => {
                mail_builder::headers::address::Address::new_address(Some(name.clone()), account.address.clone())
            }
            _ => mail_builder::headers::address::Address::new_address(None::<String>, account.address.clone()),
        })
        .to(sender.clone())
        .subject(subject)
        // RFC 3834 §5: marks the reply as automatic, so other responders stay quiet.
        .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-replied"))
        .text_body(vacation.body.clone());
    if let Some(id) = message.message_id() {
        // RFC 3834 §3.1.5: In-Reply-To and References name the message answered.
        reply = reply.in_reply_to(id.to_string()).references(id.to_string());
    }
    let Ok(bytes) = reply.write_to_vec() else {
        return Ok(());
    };
    let signed = crate::dkim::sign_with_domain_keys(store, &account.address, &bytes)
        .await
        .unwrap_or(bytes);
    // RFC 3834 §3.3: the reply goes out with an empty envelope sender, so nothing
    // answers it in turn.
    send_generated(server, "", &sender, signed).await?;
    tracing::info!(user = %account.address, to = %sender, "vacation reply sent");
    Ok(())
}
