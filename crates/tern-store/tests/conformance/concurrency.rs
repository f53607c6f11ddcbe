//! Several writers and readers on one mailbox at once, and the change bus.

use std::time::{Duration, Instant};

use tern_store::{ChangeKind, FlagOp, Flags, NewMessage};

use super::{Fixture, with_alice};

/// The next change event, which must come within 100 ms.
async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<tern_store::ChangeEvent>) -> tern_store::ChangeEvent {
    tokio::time::timeout(Duration::from_millis(100), rx.recv())
        .await
        .expect("event within 100 ms")
        .expect("the bus is open")
}

pub async fn change_bus_announces_within_100ms(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let mut rx = f.store.subscribe();
    let started = Instant::now();
    let a = f
        .store
        .append(inbox.id, vec![NewMessage::new("Subject: hi\r\n\r\nhi\r\n")])
        .await
        .unwrap();
    let e = next_event(&mut rx).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((e.account, e.mailbox, e.modseq), (alice, inbox.id, a[0].modseq));
    assert_eq!(e.kind, ChangeKind::Appended(vec![a[0].uid]));
    f.store
        .store_flags(inbox.id, &[a[0].uid], FlagOp::Add, &Flags::from_names(["\\Seen"]), None)
        .await
        .unwrap();
    let e = next_event(&mut rx).await;
    assert_eq!(e.kind, ChangeKind::FlagsChanged(vec![a[0].uid]));
    f.store
        .expunge(inbox.id, tern_store::Expunge::Uids(vec![a[0].uid]))
        .await
        .unwrap();
    let e = next_event(&mut rx).await;
    assert_eq!(e.kind, ChangeKind::Expunged(vec![a[0].uid]));
    f.store.create_mailbox(alice, "New", None).await.unwrap();
    let e = next_event(&mut rx).await;
    assert_eq!(e.kind, ChangeKind::MailboxCreated { name: "New".into() });
    f.store.rename_mailbox(alice, "New", "Newer").await.unwrap();
    let e = next_event(&mut rx).await;
    assert_eq!(
        e.kind,
        ChangeKind::MailboxRenamed {
            from: "New".into(),
            to: "Newer".into()
        }
    );
    f.store.delete_mailbox(alice, "Newer").await.unwrap();
    let e = next_event(&mut rx).await;
    assert_eq!(e.kind, ChangeKind::MailboxDeleted { name: "Newer".into() });
}

/// Two writers append and flag on one mailbox while a reader keeps listing it: every
/// listing is consistent (counts match the rows, UIDs ascend), nothing is lost, and
/// the change bus saw every append.
pub async fn two_writers_and_a_reader(f: Fixture) {
    const PER_WRITER: usize = 60;
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let mut rx = f.store.subscribe();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let s = f.store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..PER_WRITER {
                    let raw = format!("Subject: writer {w} message {i}\r\n\r\nbody {w}/{i}\r\n");
                    let a = s.append(inbox.id, vec![NewMessage::new(raw.clone())]).await.unwrap()[0];
                    if i % 3 == 0 {
                        s.store_flags(inbox.id, &[a.uid], FlagOp::Add, &Flags::from_names(["\\Seen"]), None)
                            .await
                            .unwrap();
                    }
                    mine.push((a.uid, raw));
                }
                mine
            })
        })
        .collect();
    let reader = {
        let s = f.store.clone();
        tokio::spawn(async move {
            let mut listings = 0;
            loop {
                let m = s.mailbox_by_id(inbox.id).await.unwrap();
                let list = s.messages(inbox.id).await.unwrap();
                assert!(list.windows(2).all(|w| w[0].uid < w[1].uid));
                assert!(
                    list.len() >= m.messages as usize,
                    "a later listing never has fewer messages"
                );
                listings += 1;
                if list.len() == 2 * PER_WRITER {
                    return listings;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    assert!(reader.await.unwrap() > 0);
    let m = f.store.mailbox_by_id(inbox.id).await.unwrap();
    assert_eq!(m.messages as usize, 2 * PER_WRITER);
    assert_eq!(m.unseen as usize, 2 * PER_WRITER - 2 * PER_WRITER.div_ceil(3));
    assert_eq!(m.uidnext as usize, 2 * PER_WRITER + 1);
    for (uid, raw) in all {
        assert_eq!(f.store.read_message(inbox.id, uid).await.unwrap(), raw.as_bytes());
    }
    let mut appended = 0;
    while let Ok(e) = rx.try_recv() {
        if let ChangeKind::Appended(uids) = e.kind {
            appended += uids.len();
        }
    }
    assert_eq!(appended, 2 * PER_WRITER);
}
