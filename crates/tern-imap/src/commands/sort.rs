//! SORT and THREAD (RFC 5256), with DISPLAYFROM/DISPLAYTO (RFC 5957): a SEARCH whose
//! results come back ordered, or grouped into conversations.

use std::cmp::Ordering;
use std::collections::HashMap;

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::search::SearchKey;
use tern_store::metadata::AddressItem;
use tern_store::{MessageMetadata, MessageSummary, Uid};

use super::search::evaluate;
use crate::session::{Reply, Result, Session};

/// What sorting and threading look at for one message.
struct Entry {
    seq: u32,
    uid: Uid,
    summary: MessageSummary,
    meta: MessageMetadata,
}

impl Entry {
    /// The sent date, or the arrival date when there is no usable Date header
    /// (RFC 5256 §2.2).
    fn date(&self) -> i64 {
        self.meta.sent_date.unwrap_or(self.summary.internal_date)
    }

    fn number(&self, uid: bool) -> u32 {
        if uid { self.uid } else { self.seq }
    }
}

async fn entries(s: &mut Session, criteria: &[SearchKey<'_>], uid: bool) -> Result<Vec<Entry>> {
    let (matched, mut summaries) = evaluate(s, criteria, uid).await?;
    let mailbox = s.view()?.id();
    let uids: Vec<Uid> = matched.iter().map(|&(_, u)| u).collect();
    let mut metadata: HashMap<Uid, MessageMetadata> = s.store.metadata(mailbox, &uids).await?.into_iter().collect();
    Ok(matched
        .into_iter()
        .filter_map(|(seq, uid)| {
            Some(Entry {
                seq,
                uid,
                summary: summaries.remove(&uid)?,
                meta: metadata.remove(&uid).unwrap_or_default(),
            })
        })
        .collect())
}

pub async fn sort(s: &mut Session, criteria: Vec1<SortCriterion>, search: Vec1<SearchKey<'_>>, uid: bool) -> Result {
    let mut list = entries(s, search.as_ref(), uid).await?;
    let criteria = criteria.into_inner();
    list.sort_by(|a, b| {
        for c in &criteria {
            let order = compare(&c.key, a, b);
            let order = if c.reverse { order.reverse() } else { order };
            if order != Ordering::Equal {
                return order;
            }
        }
        // RFC 5256 §3: the sequence number breaks ties.
        a.seq.cmp(&b.seq)
    });
    s.out.raw(b"* SORT");
    for e in &list {
        s.out.raw(b" ").num(e.number(uid));
    }
    s.out.crlf();
    Ok(Reply::ok("SORT completed"))
}

fn compare(key: &SortKey, a: &Entry, b: &Entry) -> Ordering {
    match key {
        SortKey::Arrival => a.summary.internal_date.cmp(&b.summary.internal_date),
        SortKey::Date => a.date().cmp(&b.date()),
        SortKey::Size => a.summary.size.cmp(&b.summary.size),
        SortKey::Subject => a
            .meta
            .base_subject
            .to_lowercase()
            .cmp(&b.meta.base_subject.to_lowercase()),
        SortKey::From => mailbox_of(&a.meta.envelope.from).cmp(&mailbox_of(&b.meta.envelope.from)),
        SortKey::To => mailbox_of(&a.meta.envelope.to).cmp(&mailbox_of(&b.meta.envelope.to)),
        SortKey::Cc => mailbox_of(&a.meta.envelope.cc).cmp(&mailbox_of(&b.meta.envelope.cc)),
        SortKey::DisplayFrom => display_of(&a.meta.envelope.from).cmp(&display_of(&b.meta.envelope.from)),
        SortKey::DisplayTo => display_of(&a.meta.envelope.to).cmp(&display_of(&b.meta.envelope.to)),
    }
}

/// RFC 5256 §3: FROM, TO and CC sort on the local part of the first address.
fn mailbox_of(list: &[AddressItem]) -> String {
    first(list)
        .and_then(|(_, a)| a)
        .map(|a| a.split('@').next().unwrap_or(a).to_lowercase())
        .unwrap_or_default()
}

/// RFC 5957 §3: the display name, or the address when there is none.
fn display_of(list: &[AddressItem]) -> String {
    match first(list) {
        Some((Some(name), _)) if !name.is_empty() => name.to_lowercase(),
        Some((_, Some(addr))) => addr.to_lowercase(),
        _ => String::new(),
    }
}

fn first(list: &[AddressItem]) -> Option<(Option<&str>, Option<&str>)> {
    list.iter().find_map(|item| match item {
        AddressItem::Mailbox { name, address } => Some((name.as_deref(), address.as_deref())),
        AddressItem::Group { members, .. } => members.first().map(|(n, a)| (n.as_deref(), a.as_deref())),
    })
}

pub async fn thread(
    s: &mut Session,
    algorithm: ThreadingAlgorithm<'_>,
    search: Vec1<SearchKey<'_>>,
    uid: bool,
) -> Result {
    let list = entries(s, search.as_ref(), uid).await?;
    let threads = match algorithm {
        ThreadingAlgorithm::OrderedSubject => ordered_subject(&list),
        ThreadingAlgorithm::References => references(&list),
        other => return Err(Reply::no(format!("Threading algorithm {other:?} is not supported")).code("CANNOT")),
    };
    s.out.raw(b"* THREAD ");
    for t in &threads {
        write_thread(&mut s.out, t, &list, uid);
    }
    s.out.crlf();
    Ok(Reply::ok("THREAD completed"))
}

/// A thread node: a message (an index into the entries) or a placeholder for a message
/// that is referred to but not present, with its replies.
#[derive(Debug, Clone)]
struct Node {
    entry: Option<usize>,
    children: Vec<Node>,
}

/// RFC 5256 §4 `thread-list`: `(a b (c)(d))` — a chain of single replies is written
/// flat, siblings each in parentheses. A placeholder root is written as `(` its
/// children `)`.
fn write_thread(out: &mut crate::response::Out, node: &Node, list: &[Entry], uid: bool) {
    out.raw(b"(");
    write_members(out, node, list, uid, true);
    out.raw(b")");
}

fn write_members(out: &mut crate::response::Out, node: &Node, list: &[Entry], uid: bool, first: bool) {
    if let Some(i) = node.entry {
        if !first {
            out.raw(b" ");
        }
        out.num(list[i].number(uid));
    }
    match node.children.len() {
        0 => {}
        1 => write_members(out, &node.children[0], list, uid, node.entry.is_none() && first),
        _ => {
            if node.entry.is_some() {
                out.raw(b" ");
            }
            for child in &node.children {
                write_thread(out, child, list, uid);
            }
        }
    }
}

/// RFC 5256 §2.1 ORDEREDSUBJECT: messages grouped by base subject; in each group the
/// first by date is the parent of all others; threads ordered by their first date.
fn ordered_subject(list: &[Entry]) -> Vec<Node> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by(|&a, &b| {
        let (ea, eb) = (&list[a], &list[b]);
        ea.meta
            .base_subject
            .to_lowercase()
            .cmp(&eb.meta.base_subject.to_lowercase())
            .then(ea.date().cmp(&eb.date()))
            .then(ea.seq.cmp(&eb.seq))
    });
    let mut threads: Vec<Node> = Vec::new();
    let mut current: Option<String> = None;
    for i in order {
        let subject = list[i].meta.base_subject.to_lowercase();
        match threads.last_mut() {
            Some(root) if current.as_deref() == Some(subject.as_str()) => root.children.push(Node {
                entry: Some(i),
                children: Vec::new(),
            }),
            _ => {
                threads.push(Node {
                    entry: Some(i),
                    children: Vec::new(),
                });
                current = Some(subject);
            }
        }
    }
    threads.sort_by_key(|t| t.entry.map(|i| (list[i].date(), list[i].seq)));
    threads
}

/// RFC 5256 §2.2 REFERENCES ("threading by references", after J. Zawinski).
fn references(list: &[Entry]) -> Vec<Node> {
    // Step 1: one container per Message-ID; messages without one get a unique key.
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut entry_of: Vec<Option<usize>> = Vec::new();
    let mut parent: Vec<Option<usize>> = Vec::new();
    fn container(
        key: String,
        ids: &mut HashMap<String, usize>,
        entry_of: &mut Vec<Option<usize>>,
        parent: &mut Vec<Option<usize>>,
    ) -> usize {
        *ids.entry(key).or_insert_with(|| {
            entry_of.push(None);
            parent.push(None);
            entry_of.len() - 1
        })
    }
    let is_ancestor = |parent: &[Option<usize>], ancestor: usize, mut node: usize| {
        let mut steps = 0;
        while let Some(p) = parent[node] {
            if p == ancestor {
                return true;
            }
            node = p;
            steps += 1;
            if steps > parent.len() {
                return true;
            }
        }
        false
    };
    for (i, e) in list.iter().enumerate() {
        let id = match e.meta.message_id.as_deref().filter(|m| !m.is_empty()) {
            // A duplicate Message-ID gets its own container (RFC 5256 §2.2 step 1A).
            Some(m) if ids.get(m).is_none_or(|&c| entry_of[c].is_none()) => m.to_string(),
            _ => format!("\u{0}unique-{i}"),
        };
        let me = container(id, &mut ids, &mut entry_of, &mut parent);
        entry_of[me] = Some(i);
        // Step 1B: link the References chain, without creating loops.
        let mut refs: Vec<String> = e.meta.references.clone();
        if refs.is_empty() {
            refs = e.meta.in_reply_to.iter().take(1).cloned().collect();
        }
        let mut previous: Option<usize> = None;
        for r in &refs {
            let c = container(r.clone(), &mut ids, &mut entry_of, &mut parent);
            if let Some(p) = previous
                && parent[c].is_none()
                && p != c
                && !is_ancestor(&parent, c, p)
            {
                parent[c] = Some(p);
            }
            previous = Some(c);
        }
        // Step 1C: the last reference is this message's parent.
        parent[me] = None;
        if let Some(p) = previous
            && p != me
            && !is_ancestor(&parent, me, p)
        {
            parent[me] = Some(p);
        }
    }
    // Step 2-3: build the trees from the parent links.
    let n = entry_of.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (c, p) in parent.iter().enumerate().take(n) {
        match *p {
            Some(p) => children[p].push(c),
            None => roots.push(c),
        }
    }
    fn build(c: usize, entry_of: &[Option<usize>], children: &[Vec<usize>]) -> Option<Node> {
        let kids: Vec<Node> = children[c]
            .iter()
            .filter_map(|&k| build(k, entry_of, children))
            .collect();
        match (entry_of[c], kids.len()) {
            // Step 4: empty containers without children go; those with children are
            // replaced by them, except at the root where more than one would be
            // promoted (then the placeholder stays).
            (None, 0) => None,
            (None, 1) => kids.into_iter().next(),
            (entry, _) => Some(Node { entry, children: kids }),
        }
    }
    let mut top: Vec<Node> = Vec::new();
    for r in roots {
        if let Some(node) = build(r, &entry_of, &children) {
            if node.entry.is_none() && node.children.is_empty() {
                continue;
            }
            top.push(node);
        }
    }
    // Step 5: gather threads whose roots share a base subject.
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    let mut gathered: Vec<Node> = Vec::new();
    for node in top {
        let subject = first_entry(&node)
            .map(|i| list[i].meta.base_subject.to_lowercase())
            .unwrap_or_default();
        if subject.is_empty() {
            gathered.push(node);
            continue;
        }
        match by_subject.get(&subject) {
            Some(&at) => {
                let existing = &mut gathered[at];
                let is_reply = |n: &Node| n.entry.is_some_and(|i| is_reply_subject(&list[i]));
                // RFC 5256 §2.2 step 5: a placeholder collects; a reply joins the
                // original; otherwise both go under a new placeholder.
                if existing.entry.is_none() || (is_reply(&node) && !is_reply(existing)) {
                    existing.children.push(node);
                } else {
                    let old = std::mem::replace(
                        existing,
                        Node {
                            entry: None,
                            children: Vec::new(),
                        },
                    );
                    existing.children = vec![old, node];
                }
            }
            None => {
                by_subject.insert(subject, gathered.len());
                gathered.push(node);
            }
        }
    }
    // Step 6: siblings by date (a placeholder by its earliest child), then threads.
    fn sort(nodes: &mut [Node], list: &[Entry]) {
        for n in nodes.iter_mut() {
            sort(&mut n.children, list);
        }
        nodes.sort_by_key(|n| first_entry(n).map(|i| (list[i].date(), list[i].seq)));
    }
    sort(&mut gathered, list);
    gathered
}

fn first_entry(node: &Node) -> Option<usize> {
    node.entry.or_else(|| node.children.first().and_then(first_entry))
}

/// Whether a subject had "Re:"-like prefixes removed (RFC 5256 §2.1's "reply or
/// forward" test, approximated by the subject differing from its base subject).
fn is_reply_subject(e: &Entry) -> bool {
    let subject = e.meta.subject.as_deref().unwrap_or("").trim();
    !subject.eq_ignore_ascii_case(e.meta.base_subject.trim())
}
