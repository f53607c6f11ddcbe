//! STATUS (RFC 9051 §6.3.11), with SIZE (RFC 8438), HIGHESTMODSEQ (RFC 7162 §3.1.6),
//! and the STATUS responses LIST-STATUS returns (RFC 5819).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;

use crate::names;
use crate::response::Out;
use crate::session::{Reply, Result, Session};

pub async fn status(s: &mut Session, mailbox: Mailbox<'_>, items: &[StatusDataItemName]) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    let account = s.account_id()?;
    let m = s.store.mailbox(account, &name).await?;
    let items: Vec<String> = items
        .iter()
        .map(|i| match i {
            StatusDataItemName::Messages => "MESSAGES".to_string(),
            StatusDataItemName::Recent => "RECENT".to_string(),
            StatusDataItemName::UidNext => "UIDNEXT".to_string(),
            StatusDataItemName::UidValidity => "UIDVALIDITY".to_string(),
            StatusDataItemName::Unseen => "UNSEEN".to_string(),
            StatusDataItemName::Deleted => "DELETED".to_string(),
            StatusDataItemName::Size => "SIZE".to_string(),
            StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ".to_string(),
            StatusDataItemName::DeletedStorage => "DELETED-STORAGE".to_string(),
        })
        .collect();
    check_items(&items)?;
    if items.iter().any(|i| i == "HIGHESTMODSEQ") {
        s.condstore = true;
    }
    // RFC 9208 §4.2.3 DELETED-STORAGE: what expunging would free, in 1024-octet units.
    let deleted_storage = if items.iter().any(|i| i == "DELETED-STORAGE") {
        let deleted: u64 = s
            .store
            .messages(m.id)
            .await?
            .iter()
            .filter(|x| x.flags.is_deleted())
            .map(|x| x.size)
            .sum();
        deleted.div_ceil(1024)
    } else {
        0
    };
    write_status(&mut s.out, &m, &items, s.utf8, deleted_storage);
    Ok(Reply::ok("STATUS completed"))
}

/// The STATUS items Tern answers.
const ITEMS: [&str; 9] = [
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "DELETED",
    "SIZE",
    "HIGHESTMODSEQ",
    "DELETED-STORAGE",
];

pub fn check_items(items: &[String]) -> Result<()> {
    match items.iter().find(|i| !ITEMS.contains(&i.as_str())) {
        Some(unknown) => Err(Reply::bad(format!("Unknown STATUS item {unknown}"))),
        None => Ok(()),
    }
}

/// `* STATUS name (ITEM n …)`.
pub fn write_status(out: &mut Out, m: &tern_store::Mailbox, items: &[String], utf8: bool, deleted_storage: u64) {
    out.raw(b"* STATUS ");
    out.string(names::to_wire(&m.name, utf8).as_bytes(), utf8);
    out.raw(b" (");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.raw(b" ");
        }
        out.text(item).raw(b" ");
        match item.as_str() {
            "MESSAGES" => out.num(m.messages),
            // \Recent is not kept; IMAP4rev2 dropped it (RFC 9051 Appendix E).
            "RECENT" => out.num(0u32),
            "UIDNEXT" => out.num(m.uidnext),
            "UIDVALIDITY" => out.num(m.uidvalidity),
            "UNSEEN" => out.num(m.unseen),
            "DELETED" => out.num(m.deleted),
            "SIZE" => out.num(m.size),
            "DELETED-STORAGE" => out.num(deleted_storage),
            _ => out.num(m.highest_modseq),
        };
    }
    out.raw(b")").crlf();
}
