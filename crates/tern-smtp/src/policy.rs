//! Who may send what to whom.
//!
//! - The MX accepts mail only for hosted domains: for an account, an alias, a
//!   plus-address or a catch-all. Anything else is relaying, refused at RCPT (RFC 5321
//!   §3.6.2: a server is not an open relay unless asked to be).
//! - Submission needs a login; the envelope sender and every From address must be the
//!   account's own address or one of its aliases, so one user cannot send as another.

use tern_store::{Account, AccountId, EmailAddress, Store, StoreError};

use crate::reply::{Reply, local_error};

/// Where an accepted recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local(AccountId),
    /// Another host, through the outbound queue.
    Remote,
}

fn store_failure(e: StoreError) -> Reply {
    tracing::error!(error = %e, "store failure while checking a recipient");
    local_error("temporary failure looking up the recipient; try again later")
}

/// Whether `address` is in a hosted domain, and who it reaches there.
///
/// `Ok(None)` means the domain is not hosted here.
pub async fn local_recipient(store: &dyn Store, address: &str, inbound: bool) -> Result<Option<AccountId>, Reply> {
    let parsed = EmailAddress::parse(address)
        .map_err(|_| Reply::new(501, "5.1.3", format!("<{address}> is not a valid address")))?;
    let receiving = match store.domain_receiving(&parsed.domain).await {
        Ok(Some(receiving)) => receiving,
        Ok(None) => return Ok(None),
        Err(e) => return Err(store_failure(e)),
    };
    // During a migration the old provider keeps the domain's mail until cutover; a
    // sender that reached Tern early (a stale MX cache) is asked to come back, and by
    // then the MX points here or the mail goes where it did before.
    if inbound && !receiving {
        return Err(Reply::new(
            451,
            "4.3.2",
            format!("{} does not take mail here yet; please try again later", parsed.domain),
        ));
    }
    let Some(id) = store.resolve_recipient(address).await.map_err(store_failure)? else {
        return Err(Reply::new(550, "5.1.1", format!("<{address}>: no such mailbox here")));
    };
    let account = store.account_by_id(id).await.map_err(store_failure)?;
    if !account.enabled {
        return Err(Reply::new(550, "5.2.1", format!("<{address}>: mailbox disabled")));
    }
    // RFC 5321 §4.5.3.1.10: a full mailbox is a temporary failure (the user may make
    // room); refusing at RCPT keeps the sender holding the message.
    if let Some(quota) = account.quota
        && account.used >= quota
    {
        return Err(Reply::new(452, "4.2.2", format!("<{address}>: mailbox full")));
    }
    Ok(Some(id))
}

/// A recipient on the MX.
pub async fn inbound_recipient(store: &dyn Store, address: &str) -> Result<AccountId, Reply> {
    local_recipient(store, address, true).await?.ok_or_else(|| {
        Reply::new(
            550,
            "5.7.1",
            format!("relaying denied: <{address}> is not in a domain this server hosts"),
        )
    })
}

/// A recipient of a submitted message: local, or anywhere through the queue.
pub async fn submission_recipient(store: &dyn Store, address: &str) -> Result<Route, Reply> {
    Ok(match local_recipient(store, address, false).await? {
        Some(id) => Route::Local(id),
        None => Route::Remote,
    })
}

/// Whether `account` may use `address` as sender: its own address (with or without a
/// +tag) or an alias that delivers to it. A catch-all does not count: owning every
/// unknown address's mail is not owning the right to send as each of them.
pub async fn may_send_as(store: &dyn Store, account: &Account, address: &str) -> Result<bool, StoreError> {
    let Ok(parsed) = EmailAddress::parse(address) else {
        return Ok(false);
    };
    let base = parsed.without_tag().unwrap_or_else(|| parsed.clone()).to_string();
    if base.eq_ignore_ascii_case(&account.address) || address.eq_ignore_ascii_case(&account.address) {
        return Ok(true);
    }
    let aliases = match store.aliases(Some(&parsed.domain)).await {
        Ok(a) => a,
        Err(StoreError::NoSuchDomain(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(aliases.iter().any(|a| {
        (a.address.eq_ignore_ascii_case(&base) || a.address.eq_ignore_ascii_case(address))
            && a.target.eq_ignore_ascii_case(&account.address)
    }))
}

/// The addresses in a message's From field(s) (RFC 5322 §3.6.2).
pub fn from_addresses(raw: &[u8]) -> Vec<String> {
    let Some(message) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for header in message.headers() {
        if let mail_parser::HeaderName::From = header.name
            && let Some(address) = header.value.as_address()
        {
            out.extend(address.iter().filter_map(|a| a.address.as_deref().map(str::to_string)));
        }
    }
    out
}

/// The domain part of an address.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}
