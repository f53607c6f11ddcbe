//! Opening and closing a mailbox: SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3) with
//! CONDSTORE and QRESYNC parameters (RFC 7162 §3.1.8, §3.2.5), CLOSE (§6.4.2) and
//! UNSELECT (RFC 3691).

use std::collections::BTreeSet;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;
use tern_store::Expunge;

use super::set_contains;
use crate::names;
use crate::session::{Reply, Result, Session, State};
use crate::view::View;

pub async fn select(
    s: &mut Session,
    mailbox: Mailbox<'_>,
    parameters: Vec<SelectParameter>,
    read_only: bool,
) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    let account = s.account_id()?;
    // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2); a successful one
    // first closes the previous one, which QRESYNC and IMAP4rev2 clients are told with
    // the CLOSED response code (RFC 7162 §3.2.11, RFC 9051 §7.1).
    let previous = std::mem::replace(&mut s.state, State::Logout);
    let account_record = match previous {
        State::Selected(a, _) => {
            s.out.untagged("OK [CLOSED] Previous mailbox closed");
            a
        }
        State::Authenticated(a) => a,
        other => {
            s.state = other;
            return Err(Reply::bad("Log in first"));
        }
    };
    s.state = State::Authenticated(account_record.clone());
    // RFC 5182 §2.1: the saved search result does not survive a mailbox change.
    s.saved.clear();
    let mut qresync = None;
    for p in &parameters {
        match p {
            SelectParameter::CondStore => s.condstore = true,
            SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                ..
            } => {
                if !s.qresync {
                    return Err(Reply::bad("ENABLE QRESYNC first (RFC 7162 §3.2.5)"));
                }
                qresync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids.clone()));
            }
        }
    }
    let info = s.store.mailbox(account, &name).await?;
    let messages = s.store.messages(info.id).await?;
    let first_unseen = messages.iter().position(|m| !m.flags.is_seen()).map(|i| i + 1);
    let mut keywords: BTreeSet<&str> = BTreeSet::new();
    for m in &messages {
        keywords.extend(m.flags.keywords.iter().map(String::as_str));
    }
    let keywords: String = keywords.iter().map(|k| format!(" {k}")).collect();
    let mut view = View::new(info.clone(), read_only, messages);
    let exists = view.exists();
    let uidnext = info.uidnext.max(view.max_uid().map_or(1, |u| u.saturating_add(1)));
    let out = &mut s.out;
    out.raw(b"* ").num(exists).raw(b" EXISTS").crlf();
    if !s.rev2 {
        // \Recent is not kept (IMAP4rev2 dropped it); rev1 clients are told none is.
        out.untagged("0 RECENT");
    }
    out.untagged(&format!(
        "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keywords})"
    ));
    if read_only {
        out.untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
    } else {
        out.untagged(&format!(
            "OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keywords} \\*)] Flags permitted"
        ));
    }
    out.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", info.uidvalidity));
    out.untagged(&format!("OK [UIDNEXT {uidnext}] Predicted next UID"));
    out.untagged(&format!("OK [HIGHESTMODSEQ {}] Highest", view.highest_modseq()));
    if !s.rev2
        && let Some(seq) = first_unseen
    {
        out.untagged(&format!("OK [UNSEEN {seq}] First unseen"));
    }
    if s.rev2 {
        // RFC 9051 §6.3.2: the mailbox's LIST response, with its name as the server spells it.
        out.raw(b"* LIST () \"/\" ")
            .string(names::to_wire(&info.name, true).as_bytes(), true)
            .crlf();
    }
    if let Some((uidvalidity, since, known)) = qresync
        && uidvalidity == info.uidvalidity
    {
        // RFC 7162 §3.2.5.2: what changed since the client's last session.
        let changes = s.store.changes_since(info.id, since).await?;
        // Only UIDs the client says it knows (RFC 7162 §3.2.5.1 known-uids).
        let mut vanished = changes.vanished;
        if let Some(known) = &known {
            vanished.retain(|&u| set_contains(known, u));
        }
        if !vanished.is_empty() {
            s.out
                .raw(b"* VANISHED (EARLIER) ")
                .text(&crate::response::sequence_set(&vanished))
                .crlf();
        }
        for m in &changes.changed {
            if let Some(seq) = view.seq_of(m.uid) {
                s.out
                    .raw(b"* ")
                    .num(seq)
                    .raw(b" FETCH (UID ")
                    .num(m.uid)
                    .raw(b" FLAGS ");
                s.out
                    .flags(&m.flags, false)
                    .raw(b" MODSEQ (")
                    .num(m.modseq)
                    .raw(b"))")
                    .crlf();
            }
        }
    }
    view.mark_dirty();
    s.state = State::Selected(account_record, view);
    Ok(if read_only {
        Reply::ok("EXAMINE completed").code("READ-ONLY")
    } else {
        Reply::ok("SELECT completed").code("READ-WRITE")
    })
}

/// CLOSE expunges \Deleted messages silently (RFC 9051 §6.4.2); UNSELECT does not.
pub async fn close(s: &mut Session, expunge: bool) -> Result {
    let State::Selected(account, view) = std::mem::replace(&mut s.state, State::Logout) else {
        return Err(Reply::bad("No mailbox is selected"));
    };
    let (id, read_only) = (view.id(), view.read_only);
    s.saved.clear();
    s.state = State::Authenticated(account);
    if expunge && !read_only {
        s.store.expunge(id, Expunge::AllDeleted).await?;
    }
    Ok(Reply::ok(if expunge {
        "CLOSE completed"
    } else {
        "UNSELECT completed"
    }))
}
