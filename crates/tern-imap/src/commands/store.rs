//! STORE and UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use tern_store::{FlagOp, MessageSummary};

use super::{check_seq_range, flags_from, resolve};
use crate::session::{Reply, Result, Session};

pub async fn store(
    s: &mut Session,
    set: SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: Vec<Flag<'_>>,
    uid: bool,
    modifiers: Vec<StoreModifier>,
) -> Result {
    let flags = flags_from(&flags)?;
    let unchanged_since = modifiers.iter().map(|StoreModifier::UnchangedSince(v)| *v).next();
    if unchanged_since.is_some() {
        s.condstore = true;
    }
    s.sync(uid, false).await?;
    let (mailbox, uids) = {
        let view = s.view()?;
        if view.read_only {
            return Err(Reply::no("The mailbox is open read-only (EXAMINE)").code("READ-ONLY"));
        }
        if !uid {
            check_seq_range(view, &set)?;
        }
        (view.id(), resolve(view, &set, uid))
    };
    let op = match kind {
        StoreType::Replace => FlagOp::Replace,
        StoreType::Add => FlagOp::Add,
        StoreType::Remove => FlagOp::Remove,
    };
    let update = s.store.store_flags(mailbox, &uids, op, &flags, unchanged_since).await?;
    let silent = matches!(response, StoreResponse::Silent);
    let condstore = s.condstore;
    let mut reported = Vec::with_capacity(update.updated.len());
    for (u, flags, modseq) in &update.updated {
        let view = s.view()?;
        view.saw(*u, flags, *modseq);
        let Some(seq) = view.seq_of(*u) else { continue };
        reported.push(*u);
        // RFC 7162 §3.1.3: with UNCHANGEDSINCE even .SILENT reports the new MODSEQ.
        if silent && unchanged_since.is_none() {
            continue;
        }
        s.out.raw(b"* ").num(seq).raw(b" FETCH (");
        if uid {
            s.out.raw(b"UID ").num(*u).raw(b" ");
        }
        if !silent {
            s.out.raw(b"FLAGS ").flags(flags, false);
            if condstore {
                s.out.raw(b" ");
            }
        }
        if condstore {
            s.out.raw(b"MODSEQ (").num(*modseq).raw(b")");
        }
        s.out.raw(b")").crlf();
    }
    if !silent {
        // Messages the STORE did not change still get their flags (RFC 9051 §6.4.6).
        let rest: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| !reported.contains(u) && !update.modified.contains(u))
            .collect();
        let unchanged: Vec<MessageSummary> = {
            let view = s.view()?;
            rest.iter().filter_map(|u| view.summary(*u).cloned()).collect()
        };
        for m in unchanged {
            let Some(seq) = s.view()?.seq_of(m.uid) else { continue };
            s.out.raw(b"* ").num(seq).raw(b" FETCH (");
            if uid {
                s.out.raw(b"UID ").num(m.uid).raw(b" ");
            }
            s.out.raw(b"FLAGS ").flags(&m.flags, false);
            if condstore {
                s.out.raw(b" MODSEQ (").num(m.modseq).raw(b")");
            }
            s.out.raw(b")").crlf();
        }
    }
    if !update.modified.is_empty() {
        // RFC 7162 §3.1.3: MODIFIED lists what was left alone, as UIDs for UID STORE
        // and sequence numbers otherwise.
        let mut numbers: Vec<u32> = if uid {
            update.modified.clone()
        } else {
            let view = s.view()?;
            update.modified.iter().filter_map(|u| view.seq_of(*u)).collect()
        };
        numbers.sort_unstable();
        let set = crate::response::sequence_set(&numbers);
        return Ok(Reply::ok("Some messages were modified since").code(format!("MODIFIED {set}")));
    }
    Ok(Reply::ok("STORE completed"))
}
