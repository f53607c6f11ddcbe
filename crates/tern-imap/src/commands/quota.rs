//! QUOTA (RFC 9208): each account has one quota root, "", holding its STORAGE limit
//! (set by the administrator with `tern user quota`, never by the client).

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::names;
use crate::session::{Reply, Result, Session};

/// RFC 9208 §4.3.2 GETQUOTAROOT.
pub async fn get_quota_root(s: &mut Session, mailbox: Mailbox<'_>) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    let account = s.account_id()?;
    // The mailbox must exist.
    let m = s.store.mailbox(account, &name).await?;
    let fresh = s.store.account_by_id(account).await?;
    s.out.raw(b"* QUOTAROOT ");
    s.out.string(names::to_wire(&m.name, s.utf8).as_bytes(), s.utf8);
    if let Some(limit) = fresh.quota {
        s.out.raw(b" \"\"").crlf();
        write_quota(s, fresh.used, limit);
    } else {
        // No limit: no quota root (RFC 9208 §4.3.2).
        s.out.crlf();
    }
    Ok(Reply::ok("GETQUOTAROOT completed"))
}

/// RFC 9208 §4.3.1 GETQUOTA.
pub async fn get_quota(s: &mut Session, root: AString<'_>) -> Result {
    let account = s.account_id()?;
    let fresh = s.store.account_by_id(account).await?;
    match fresh.quota {
        Some(limit) if root.as_ref().is_empty() => {
            write_quota(s, fresh.used, limit);
            Ok(Reply::ok("GETQUOTA completed"))
        }
        _ => Err(Reply::no("No such quota root").code("NONEXISTENT")),
    }
}

/// RFC 9208 §4.3.3: only the administrator changes quotas.
pub fn set_quota(_s: &mut Session) -> Result {
    Err(Reply::no("Quotas are set by the administrator").code("NOPERM"))
}

/// `* QUOTA "" (STORAGE used limit)`, in units of 1024 octets (RFC 9208 §5.1).
fn write_quota(s: &mut Session, used: u64, limit: u64) {
    s.out
        .raw(b"* QUOTA \"\" (STORAGE ")
        .num(used.div_ceil(1024))
        .raw(b" ")
        .num(limit / 1024)
        .raw(b")")
        .crlf();
}
