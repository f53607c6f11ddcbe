//! EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1, RFC 9051 §6.4.9).

use imap_codec::imap_types::sequence::SequenceSet;
use tern_store::Expunge;

use super::resolve;
use crate::session::{Reply, Result, Session};

pub async fn expunge(s: &mut Session, uids: Option<SequenceSet>) -> Result {
    s.sync(true, false).await?;
    let (mailbox, which) = {
        let view = s.view()?;
        if view.read_only {
            return Err(Reply::no("The mailbox is open read-only (EXAMINE)").code("READ-ONLY"));
        }
        let which = match &uids {
            None => Expunge::AllDeleted,
            Some(set) => Expunge::DeletedAmong(resolve(view, set, true)),
        };
        (view.id(), which)
    };
    let gone = s.store.expunge(mailbox, which).await?;
    s.announce_expunged(&gone);
    Ok(Reply::ok("EXPUNGE completed"))
}
