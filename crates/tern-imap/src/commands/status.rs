//! STATUS (RFC 9051 §6.3.11), with SIZE (RFC 8438) and HIGHESTMODSEQ (RFC 7162 §3.1.6).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;

use crate::names;
use crate::session::{Reply, Result, Session};

pub async fn status(s: &mut Session, mailbox: Mailbox<'_>, items: &[StatusDataItemName]) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    let account = s.account_id()?;
    let m = s.store.mailbox(account, &name).await?;
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        let part = match item {
            StatusDataItemName::Messages => format!("MESSAGES {}", m.messages),
            // \Recent is not kept; IMAP4rev2 dropped it (RFC 9051 Appendix E).
            StatusDataItemName::Recent => "RECENT 0".to_string(),
            StatusDataItemName::UidNext => format!("UIDNEXT {}", m.uidnext),
            StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", m.uidvalidity),
            StatusDataItemName::Unseen => format!("UNSEEN {}", m.unseen),
            StatusDataItemName::Deleted => format!("DELETED {}", m.deleted),
            StatusDataItemName::Size => format!("SIZE {}", m.size),
            StatusDataItemName::HighestModSeq => {
                s.condstore = true;
                format!("HIGHESTMODSEQ {}", m.highest_modseq)
            }
            other => return Err(Reply::bad(format!("STATUS item {other:?} is not supported"))),
        };
        parts.push(part);
    }
    s.out.raw(b"* STATUS ");
    s.out.string(names::to_wire(&m.name, s.utf8).as_bytes(), s.utf8);
    s.out.raw(b" (").text(&parts.join(" ")).raw(b")").crlf();
    Ok(Reply::ok("STATUS completed"))
}
