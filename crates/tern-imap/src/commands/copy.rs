//! COPY (RFC 9051 §6.4.7) and MOVE (RFC 6851, RFC 9051 §6.4.8), with COPYUID
//! (RFC 4315 §3).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use tern_store::StoreError;

use super::{check_seq_range, resolve};
use crate::response::sequence_set;
use crate::session::{Reply, Result, Session};

pub async fn copy(s: &mut Session, set: SequenceSet, target: Mailbox<'_>, uid: bool, moving: bool) -> Result {
    let name = s.mailbox_name(&target)?;
    let account = s.account_id()?;
    s.sync(uid || moving, false).await?;
    let (source, read_only, uids) = {
        let view = s.view()?;
        if !uid {
            check_seq_range(view, &set)?;
        }
        (view.id(), view.read_only, resolve(view, &set, uid))
    };
    if moving && read_only {
        return Err(Reply::no("The mailbox is open read-only (EXAMINE)").code("READ-ONLY"));
    }
    let target = match s.store.mailbox(account, &name).await {
        Ok(m) => m,
        // RFC 9051 §6.4.7: TRYCREATE tells the client that CREATE would help.
        Err(StoreError::NoSuchMailbox(_)) => {
            return Err(Reply::no(format!("No mailbox named {name}")).code("TRYCREATE"));
        }
        Err(e) => return Err(e.into()),
    };
    let verb = if moving { "MOVE" } else { "COPY" };
    if uids.is_empty() {
        return Ok(Reply::ok(format!("{verb} completed; no messages matched")));
    }
    let result = if moving {
        s.store.move_messages(source, &uids, target.id).await?
    } else {
        s.store.copy(source, &uids, target.id).await?
    };
    let (from, to): (Vec<u32>, Vec<u32>) = result.mapping.iter().copied().unzip();
    let code = format!("COPYUID {} {} {}", result.uidvalidity, uid_list(&from), uid_list(&to));
    if moving {
        // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
        s.out.untagged(&format!("OK [{code}] Moved"));
        s.announce_expunged(&from);
        return Ok(Reply::ok("MOVE completed"));
    }
    Ok(Reply::ok("COPY completed").code(code))
}

/// RFC 4315 §3 `uid-set`, keeping the pairing order: the source UIDs are ascending, so
/// are the new ones.
fn uid_list(uids: &[u32]) -> String {
    sequence_set(uids)
}
