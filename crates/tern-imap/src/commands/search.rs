//! SEARCH and UID SEARCH (RFC 9051 §6.4.4), with ESEARCH results (RFC 4731; always for
//! IMAP4rev2 sessions, RFC 9051 §7.3.4) and MODSEQ (RFC 7162 §3.1.5).
//!
//! Flags, dates, sizes and UIDs are checked against the message summaries; address and
//! subject keys against the envelope derived at ingest (decoded, case-insensitive
//! substring); BODY and TEXT go to the store's full-text index, which matches words and
//! word prefixes; HEADER reads the header block of each candidate.

use std::collections::HashMap;

use chrono::NaiveDate;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::search::SearchKey;
use tern_store::metadata::AddressItem;
use tern_store::{MessageMetadata, MessageSummary, SystemFlags, TextField, Uid};

use super::resolve;
use crate::extensions::Extra;
use crate::session::{Reply, Result, Session};

/// What a key needs to be evaluated.
#[derive(Default)]
struct Needs {
    metadata: bool,
    headers: bool,
    text: Vec<(TextField, String)>,
}

/// Everything known about the candidate messages.
struct Facts {
    summaries: HashMap<Uid, MessageSummary>,
    metadata: HashMap<Uid, MessageMetadata>,
    headers: HashMap<Uid, Vec<u8>>,
    text: HashMap<(TextField, String), Vec<Uid>>,
}

/// The messages matching every key, as (sequence number, UID) in mailbox order, with
/// their summaries. Shared by SEARCH, SORT and THREAD.
pub async fn evaluate(
    s: &mut Session,
    criteria: &[SearchKey<'_>],
    uid: bool,
) -> Result<(Vec<(u32, Uid)>, HashMap<Uid, MessageSummary>)> {
    s.sync(uid, false).await?;
    let mut needs = Needs::default();
    for key in criteria {
        needs_of(key, &mut needs);
    }
    // Flags, dates and sizes come from the view, which sync has just brought up to date.
    let (mailbox, view_uids, summaries) = {
        let view = s.view()?;
        let summaries: HashMap<Uid, MessageSummary> = view
            .uids()
            .iter()
            .filter_map(|u| view.summary(*u).map(|m| (*u, m.clone())))
            .collect();
        (view.id(), view.uids().to_vec(), summaries)
    };
    let candidates: Vec<Uid> = view_uids
        .iter()
        .copied()
        .filter(|u| summaries.contains_key(u))
        .collect();
    let metadata = if needs.metadata {
        s.store.metadata(mailbox, &candidates).await?.into_iter().collect()
    } else {
        HashMap::new()
    };
    let mut headers = HashMap::new();
    if needs.headers {
        for &u in &candidates {
            if let Ok(raw) = s.store.read_message(mailbox, u).await {
                let end = header_end(&raw);
                headers.insert(u, raw[..end].to_vec());
            }
        }
    }
    let mut text = HashMap::new();
    for (field, query) in needs.text {
        let found = s.store.search_text(mailbox, field, &query).await?;
        text.insert((field, query), found);
    }
    let facts = Facts {
        summaries,
        metadata,
        headers,
        text,
    };
    let view = s.view()?;
    let mut matched: Vec<(u32, Uid)> = Vec::new();
    for (i, &u) in view_uids.iter().enumerate() {
        if !facts.summaries.contains_key(&u) {
            continue;
        }
        if criteria.iter().all(|k| eval(k, u, &facts, view)) {
            matched.push((i as u32 + 1, u));
        }
    }
    Ok((matched, facts.summaries))
}

pub async fn search(s: &mut Session, criteria: Vec1<SearchKey<'_>>, uid: bool, extra: Extra) -> Result {
    let (matched, summaries) = evaluate(s, criteria.as_ref(), uid).await?;
    let numbers: Vec<u32> = matched.iter().map(|&(seq, u)| if uid { u } else { seq }).collect();
    let uses_modseq = criteria.as_ref().iter().any(uses_modseq);
    if uses_modseq {
        s.condstore = true;
    }
    let highest = matched
        .iter()
        .filter_map(|(_, u)| summaries.get(u).map(|m| m.modseq))
        .max();
    let tag = s.current_tag.clone();
    let mut options = extra.search_return.or_else(|| s.rev2.then(Vec::new));
    if let Some(opts) = options.as_mut()
        && let Some(at) = opts.iter().position(|o| o == "SAVE")
    {
        opts.remove(at);
        // RFC 5182 §2.4: with MIN or MAX, only those are saved.
        let uids: Vec<Uid> = matched.iter().map(|&(_, u)| u).collect();
        let (min, max) = (opts.iter().any(|o| o == "MIN"), opts.iter().any(|o| o == "MAX"));
        s.saved = if min || max {
            let mut picked = Vec::new();
            if min {
                picked.extend(uids.first());
            }
            if max {
                picked.extend(uids.last());
            }
            picked.dedup();
            picked
        } else {
            uids
        };
        if opts.is_empty() {
            // SAVE alone: nothing is returned, only remembered.
            return Ok(Reply::ok("SEARCH completed; result saved"));
        }
    }
    let out = &mut s.out;
    match options {
        None => {
            out.raw(b"* SEARCH");
            for n in &numbers {
                out.raw(b" ").num(*n);
            }
            if uses_modseq && let Some(m) = highest {
                out.raw(b" (MODSEQ ").num(m).raw(b")");
            }
            out.crlf();
        }
        Some(options) => {
            // RFC 4731 §3.1: no options means ALL.
            let options = if options.is_empty() {
                vec!["ALL".to_string()]
            } else {
                options
            };
            out.raw(b"* ESEARCH (TAG ").string(tag.as_bytes(), false).raw(b")");
            if uid {
                out.raw(b" UID");
            }
            for option in &options {
                match option.as_str() {
                    "MIN" if !numbers.is_empty() => {
                        out.raw(b" MIN ").num(numbers[0]);
                    }
                    "MAX" if !numbers.is_empty() => {
                        out.raw(b" MAX ").num(numbers[numbers.len() - 1]);
                    }
                    "ALL" if !numbers.is_empty() => {
                        out.raw(b" ALL ").text(&crate::response::sequence_set(&numbers));
                    }
                    "COUNT" => {
                        out.raw(b" COUNT ").num(numbers.len());
                    }
                    "MIN" | "MAX" | "ALL" => {}
                    other => return Err(Reply::bad(format!("Unknown RETURN option {other}"))),
                }
            }
            if uses_modseq && let Some(m) = highest {
                out.raw(b" MODSEQ ").num(m);
            }
            out.crlf();
        }
    }
    Ok(Reply::ok("SEARCH completed"))
}

fn header_end(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(raw.len())
}

fn text_of(s: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

fn needs_of(key: &SearchKey<'_>, needs: &mut Needs) {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.as_ref().iter().for_each(|k| needs_of(k, needs)),
        K::Not(k) => needs_of(k, needs),
        K::Or(a, b) => {
            needs_of(a, needs);
            needs_of(b, needs);
        }
        K::Bcc(_) | K::Cc(_) | K::From(_) | K::To(_) | K::Subject(_) => needs.metadata = true,
        K::SentBefore(_) | K::SentOn(_) | K::SentSince(_) => needs.metadata = true,
        K::Header(name, _) if saved_key(name).is_some() => {}
        K::Header(..) => needs.headers = true,
        K::Body(q) => needs.text.push((TextField::Body, text_of(q))),
        K::Text(q) => needs.text.push((TextField::Text, text_of(q))),
        _ => {}
    }
}

/// Which SAVEDATE key a rewritten HEADER key stands for.
fn saved_key(name: &impl AsRef<[u8]>) -> Option<&'static str> {
    let name = name.as_ref();
    crate::extensions::SAVED_KEY_PREFIXES
        .into_iter()
        .find(|p| p.as_bytes().eq_ignore_ascii_case(name))
}

fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        _ => false,
    }
}

fn day(unix: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .date_naive()
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn addresses_contain(list: &[AddressItem], needle: &str) -> bool {
    list.iter().any(|item| match item {
        AddressItem::Mailbox { name, address } => [name, address].into_iter().flatten().any(|s| contains_ci(s, needle)),
        AddressItem::Group { name, members } => {
            name.as_deref().is_some_and(|n| contains_ci(n, needle))
                || members
                    .iter()
                    .any(|(n, a)| [n, a].into_iter().flatten().any(|s| contains_ci(s, needle)))
        }
    })
}

/// Whether message `uid` (sequence number `seq`) matches `key` (RFC 9051 §6.4.4).
fn eval(key: &SearchKey<'_>, uid: Uid, f: &Facts, view: &crate::view::View) -> bool {
    use SearchKey as K;
    let Some(m) = f.summaries.get(&uid) else { return false };
    let meta = f.metadata.get(&uid);
    let has = |flag: SystemFlags| m.flags.system.contains(flag);
    let envelope_has = |pick: fn(&MessageMetadata) -> &[AddressItem], q: &dyn AsRef<[u8]>| {
        meta.is_some_and(|md| addresses_contain(pick(md), &text_of(&q.as_ref())))
    };
    match key {
        K::And(keys) => keys.as_ref().iter().all(|k| eval(k, uid, f, view)),
        K::Not(k) => !eval(k, uid, f, view),
        K::Or(a, b) => eval(a, uid, f, view) || eval(b, uid, f, view),
        K::All => true,
        K::SequenceSet(set) => resolve(view, set, false).binary_search(&uid).is_ok(),
        K::Uid(set) => resolve(view, set, true).binary_search(&uid).is_ok(),
        K::Answered => has(SystemFlags::ANSWERED),
        K::Unanswered => !has(SystemFlags::ANSWERED),
        K::Deleted => has(SystemFlags::DELETED),
        K::Undeleted => !has(SystemFlags::DELETED),
        K::Draft => has(SystemFlags::DRAFT),
        K::Undraft => !has(SystemFlags::DRAFT),
        K::Flagged => has(SystemFlags::FLAGGED),
        K::Unflagged => !has(SystemFlags::FLAGGED),
        K::Seen => has(SystemFlags::SEEN),
        K::Unseen => !has(SystemFlags::SEEN),
        // \Recent is not kept: no message is recent, every message is old.
        K::Recent | K::New => false,
        K::Old => true,
        K::Keyword(k) => m.flags.keywords.iter().any(|x| x.eq_ignore_ascii_case(k.inner())),
        K::Unkeyword(k) => !m.flags.keywords.iter().any(|x| x.eq_ignore_ascii_case(k.inner())),
        K::Larger(n) => m.size > u64::from(*n),
        K::Smaller(n) => m.size < u64::from(*n),
        K::Before(d) => day(m.internal_date) < *d.as_ref(),
        K::On(d) => day(m.internal_date) == *d.as_ref(),
        K::Since(d) => day(m.internal_date) >= *d.as_ref(),
        K::SentBefore(d) => meta.and_then(|md| md.sent_date).is_some_and(|t| day(t) < *d.as_ref()),
        K::SentOn(d) => meta.and_then(|md| md.sent_date).is_some_and(|t| day(t) == *d.as_ref()),
        K::SentSince(d) => meta.and_then(|md| md.sent_date).is_some_and(|t| day(t) >= *d.as_ref()),
        K::From(q) => envelope_has(|md| &md.envelope.from, q),
        K::To(q) => envelope_has(|md| &md.envelope.to, q),
        K::Cc(q) => envelope_has(|md| &md.envelope.cc, q),
        K::Bcc(q) => envelope_has(|md| &md.envelope.bcc, q),
        K::Subject(q) => meta.is_some_and(|md| {
            let subject = md.subject.as_deref().or(md.envelope.subject.as_deref()).unwrap_or("");
            contains_ci(subject, &text_of(q))
        }),
        K::Header(name, value) if saved_key(name).is_some() => {
            // SAVEDATE keys (RFC 8514 §4.2), rewritten by extensions.rs.
            let date = chrono::NaiveDate::parse_from_str(text_of(value).trim(), "%d-%b-%Y").ok();
            let saved = day(m.save_date);
            match (saved_key(name), date) {
                (Some("SAVEDATESUPPORTED "), _) => true,
                (Some("SAVEDBEFORE "), Some(d)) => saved < d,
                (Some("SAVEDON "), Some(d)) => saved == d,
                (Some("SAVEDSINCE "), Some(d)) => saved >= d,
                _ => false,
            }
        }
        K::Header(name, value) => f.headers.get(&uid).is_some_and(|h| {
            let name = text_of(name);
            let value = text_of(value);
            header_values(h, &name).iter().any(|v| contains_ci(v, &value))
        }),
        K::Body(q) => f
            .text
            .get(&(TextField::Body, text_of(q)))
            .is_some_and(|found| found.binary_search(&uid).is_ok()),
        K::Text(q) => f
            .text
            .get(&(TextField::Text, text_of(q)))
            .is_some_and(|found| found.binary_search(&uid).is_ok()),
        K::ModSequence { modseq, .. } => m.modseq >= *modseq,
    }
}

/// The (unfolded) values of every header field called `name`.
fn header_values(header: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(header);
    let mut values = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(v) = current.as_mut() {
                v.push_str(line);
            }
            continue;
        }
        if let Some(v) = current.take() {
            values.push(v);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_string());
        }
    }
    values.extend(current);
    values
}
