//! Property tests over random sequences of mailbox operations: UIDs strictly increase
//! and are never reused within a UIDVALIDITY, HIGHESTMODSEQ strictly increases with
//! every change, and the mailbox counters always match the messages present.

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;

use tern_store::{Expunge, FlagOp, Flags, Mailbox, MessageSummary, NewMessage, Store, SystemFlags};

#[derive(Debug, Clone)]
enum Op {
    Append { count: usize, seen: bool, size: usize },
    Flags { pick: Vec<usize>, op: u8, flag: u8 },
    Expunge { pick: Vec<usize>, only_deleted: bool },
    CopyOut { pick: Vec<usize> },
    MoveIn { count: usize },
    MoveOut { pick: Vec<usize> },
}

fn op() -> impl Strategy<Value = Op> {
    let pick = || prop::collection::vec(0usize..64, 0..6);
    prop_oneof![
        3 => (1usize..4, any::<bool>(), 10usize..400).prop_map(|(count, seen, size)| Op::Append { count, seen, size }),
        2 => (pick(), 0u8..3, 0u8..6).prop_map(|(pick, op, flag)| Op::Flags { pick, op, flag }),
        1 => (pick(), any::<bool>()).prop_map(|(pick, only_deleted)| Op::Expunge { pick, only_deleted }),
        1 => pick().prop_map(|pick| Op::CopyOut { pick }),
        1 => (1usize..3).prop_map(|count| Op::MoveIn { count }),
        1 => pick().prop_map(|pick| Op::MoveOut { pick }),
    ]
}

fn choose(list: &[MessageSummary], pick: &[usize]) -> Vec<u32> {
    if list.is_empty() {
        return Vec::new();
    }
    pick.iter().map(|i| list[i % list.len()].uid).collect()
}

fn check_counts(m: &Mailbox, list: &[MessageSummary]) {
    assert_eq!(m.messages as usize, list.len(), "message count");
    assert_eq!(
        m.unseen as usize,
        list.iter().filter(|s| !s.flags.is_seen()).count(),
        "unseen count"
    );
    assert_eq!(
        m.deleted as usize,
        list.iter().filter(|s| s.flags.is_deleted()).count(),
        "deleted count"
    );
    assert_eq!(m.size, list.iter().map(|s| s.size).sum::<u64>(), "size");
    assert!(list.iter().all(|s| s.uid < m.uidnext), "every UID is below UIDNEXT");
    assert!(
        list.iter().all(|s| s.modseq <= m.highest_modseq),
        "no message modseq above HIGHESTMODSEQ"
    );
}

async fn run(ops: Vec<Op>) {
    let (_dir, store, acct) = common::store_with_account("p").await;
    let inbox = store.mailbox(acct.id, "INBOX").await.unwrap();
    let other = store.mailbox(acct.id, "Archive").await.unwrap();
    let mut ever_assigned = BTreeSet::new();
    let mut last = store.mailbox_by_id(inbox.id).await.unwrap();
    let mut n = 0u32;
    for op in ops {
        let before = store.messages(inbox.id).await.unwrap();
        match op {
            Op::Append { count, seen, size } => {
                let msgs = (0..count)
                    .map(|_| {
                        n += 1;
                        let mut m = NewMessage::new(format!("Subject: {n}\r\n\r\n{}\r\n", "x".repeat(size)));
                        if seen {
                            m.flags = Flags::system(SystemFlags::SEEN);
                        }
                        m
                    })
                    .collect();
                let appended = store.append(inbox.id, msgs).await.unwrap();
                for a in &appended {
                    assert!(
                        a.uid > ever_assigned.last().copied().unwrap_or(0),
                        "UIDs strictly increase"
                    );
                    assert!(ever_assigned.insert(a.uid), "UID {} reused", a.uid);
                }
            }
            Op::Flags { pick, op, flag } => {
                let flags = match flag {
                    0 => Flags::from_names(["\\Seen"]),
                    1 => Flags::from_names(["\\Deleted"]),
                    2 => Flags::from_names(["\\Flagged", "Work"]),
                    3 => Flags::from_names(["\\Seen", "\\Deleted"]),
                    4 => Flags::from_names(["$Label1"]),
                    _ => Flags::default(),
                };
                let op = [FlagOp::Add, FlagOp::Remove, FlagOp::Replace][op as usize];
                store
                    .store_flags(inbox.id, &choose(&before, &pick), op, &flags, None)
                    .await
                    .unwrap();
            }
            Op::Expunge { pick, only_deleted } => {
                let uids = choose(&before, &pick);
                let which = if only_deleted {
                    Expunge::DeletedAmong(uids)
                } else {
                    Expunge::Uids(uids)
                };
                store.expunge(inbox.id, which).await.unwrap();
            }
            Op::CopyOut { pick } => {
                store.copy(inbox.id, &choose(&before, &pick), other.id).await.unwrap();
            }
            Op::MoveOut { pick } => {
                store
                    .move_messages(inbox.id, &choose(&before, &pick), other.id)
                    .await
                    .unwrap();
            }
            Op::MoveIn { count } => {
                let theirs = store.messages(other.id).await.unwrap();
                let uids: Vec<_> = theirs.iter().take(count).map(|s| s.uid).collect();
                let moved = store.move_messages(other.id, &uids, inbox.id).await.unwrap();
                for (_, uid) in &moved.mapping {
                    assert!(
                        *uid > ever_assigned.last().copied().unwrap_or(0),
                        "moved-in UIDs are new"
                    );
                    assert!(ever_assigned.insert(*uid));
                }
            }
        }
        let now = store.mailbox_by_id(inbox.id).await.unwrap();
        let after = store.messages(inbox.id).await.unwrap();
        assert_eq!(now.uidvalidity, last.uidvalidity);
        if after != before {
            assert!(
                now.highest_modseq > last.highest_modseq,
                "a change raises HIGHESTMODSEQ"
            );
        } else {
            assert_eq!(now.highest_modseq, last.highest_modseq, "no change, no new modseq");
        }
        // Every message that changed carries a modseq above the previous highest.
        for s in &after {
            if !before.contains(s) {
                assert!(s.modseq > last.highest_modseq);
            }
        }
        check_counts(&now, &after);
        check_counts(
            &store.mailbox_by_id(other.id).await.unwrap(),
            &store.messages(other.id).await.unwrap(),
        );
        last = now;
    }
    store.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mailbox_invariants(ops in prop::collection::vec(op(), 1..24)) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(run(ops));
    }
}
