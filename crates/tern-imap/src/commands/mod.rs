//! One module per command family, as RFC 9051 §6 groups them, plus the extensions that
//! add commands of their own.

pub mod any;
pub mod append;
pub mod auth;
pub mod compress;
pub mod copy;
pub mod expunge;
pub mod fetch;
pub mod idle;
pub mod list;
pub mod mailbox;
pub mod quota;
pub mod search;
pub mod select;
pub mod sort;
pub mod status;
pub mod store;

use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use tern_store::{Flags, SystemFlags, Uid};

use crate::session::Reply;
use crate::view::View;

/// The UIDs (ascending, without duplicates) a sequence set names in the view: message
/// sequence numbers, or UIDs with `uid` (RFC 9051 §6.4.9, where UIDs that do not exist
/// are ignored). `*` is the last message; a range may be given high:low.
pub fn resolve(view: &View, set: &SequenceSet, uid: bool) -> Vec<Uid> {
    let uids = view.uids();
    let Some(&last_uid) = uids.last() else {
        return Vec::new();
    };
    let largest = if uid { last_uid } else { uids.len() as u32 };
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    };
    let mut picked: Vec<Uid> = Vec::new();
    for seq in set.0.as_ref() {
        let (a, b) = match seq {
            Sequence::Single(s) => (value(s), value(s)),
            Sequence::Range(x, y) => (value(x).min(value(y)), value(x).max(value(y))),
        };
        if uid {
            let start = uids.partition_point(|&u| u < a);
            let end = uids.partition_point(|&u| u <= b);
            picked.extend_from_slice(&uids[start..end]);
        } else {
            let a = (a as usize).max(1);
            let b = (b as usize).min(uids.len());
            if a <= b {
                picked.extend_from_slice(&uids[a - 1..b]);
            }
        }
    }
    if set.0.as_ref().len() > 1 {
        picked.sort_unstable();
        picked.dedup();
    }
    picked
}

/// Whether a literal sequence set (no view involved; `*` as the largest number)
/// contains `n`.
pub fn set_contains(set: &SequenceSet, n: u32) -> bool {
    let v = |x: &SeqOrUid| match x {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => u32::MAX,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(a) => v(a) == n,
        Sequence::Range(a, b) => (v(a).min(v(b))..=v(a).max(v(b))).contains(&n),
    })
}

/// Whether a message sequence set refers past the end of the mailbox, which RFC 9051
/// §6.4.5 calls an error ("BAD ... invalid sequence number") for non-UID commands.
pub fn check_seq_range(view: &View, set: &SequenceSet) -> Result<(), Reply> {
    let exists = view.exists();
    for seq in set.0.as_ref() {
        let values: &[&SeqOrUid] = match seq {
            Sequence::Single(s) => &[s],
            Sequence::Range(x, y) => &[x, y],
        };
        for v in values {
            if let SeqOrUid::Value(n) = v
                && n.get() > exists
            {
                return Err(Reply::bad(format!(
                    "Message sequence number {n} is out of range; the mailbox has {exists} messages"
                )));
            }
        }
    }
    Ok(())
}

/// Flags from a STORE or APPEND, validated: `\Recent` and unknown system flags cannot
/// be set (RFC 9051 §2.3.2).
pub fn flags_from(list: &[Flag<'_>]) -> Result<Flags, Reply> {
    let mut system = SystemFlags::empty();
    let mut keywords = Vec::new();
    for flag in list {
        match flag {
            Flag::Seen => system = system.union(SystemFlags::SEEN),
            Flag::Answered => system = system.union(SystemFlags::ANSWERED),
            Flag::Flagged => system = system.union(SystemFlags::FLAGGED),
            Flag::Deleted => system = system.union(SystemFlags::DELETED),
            Flag::Draft => system = system.union(SystemFlags::DRAFT),
            Flag::Keyword(atom) => keywords.push(atom.inner().to_string()),
            Flag::Extension(_) => return Err(Reply::bad(format!("Flag {flag} cannot be set"))),
        }
    }
    Ok(Flags::new(system, keywords))
}
