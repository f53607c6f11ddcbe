//! SMTP's records: delivery to many mailboxes, the outbound queue, DKIM keys, and
//! whether a domain receives yet.

use tern_store::{DkimAlgorithm, DkimKey, INBOX, NewAccount, NewMessage, NewQueueEntry, StoreError};

use super::{Fixture, with_alice};

async fn with_bob(f: &Fixture) -> tern_store::AccountId {
    f.store
        .create_account(NewAccount {
            address: "bob@example.test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

pub async fn deliver_to_many_stores_once_and_skips_a_full_mailbox(f: Fixture) {
    let alice = with_alice(&f).await;
    let bob = with_bob(&f).await;
    let carol = f
        .store
        .create_account(NewAccount {
            address: "carol@example.test".into(),
            quota: Some(10),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let mut inboxes = Vec::new();
    for a in [alice, bob, carol] {
        inboxes.push(f.store.mailbox(a, INBOX).await.unwrap().id);
    }
    let raw = b"From: x@remote.test\r\nSubject: hi all\r\n\r\nbody\r\n".to_vec();
    let results = f.store.deliver(&inboxes, NewMessage::new(raw.clone())).await.unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().uid, 1);
    assert_eq!(results[1].as_ref().unwrap().uid, 1);
    assert!(
        matches!(results[2], Err(StoreError::QuotaExceeded { .. })),
        "{:?}",
        results[2]
    );
    for mb in &inboxes[..2] {
        assert_eq!(f.store.read_message(*mb, 1).await.unwrap(), raw);
    }
    assert_eq!(f.store.messages(inboxes[2]).await.unwrap().len(), 0);
    // Kept as one file linked into both accounts: both paths are the same inode.
    let a = f.store.message_file(inboxes[0], 1).await.unwrap();
    let b = f.store.message_file(inboxes[1], 1).await.unwrap();
    if let (Some(a), Some(b)) = (a, b) {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(a).unwrap().ino(), std::fs::metadata(b).unwrap().ino());
    }
}

pub async fn queue_lifecycle_and_leases(f: Fixture) {
    let raw = b"From: alice@example.test\r\n\r\nout\r\n".to_vec();
    let id = f
        .store
        .enqueue(NewQueueEntry {
            sender: "alice@example.test".into(),
            raw: raw.clone(),
            envelope: r#"{"rcpt":["x@remote.test"]}"#.into(),
            next_attempt: 0,
        })
        .await
        .unwrap();
    let later = f
        .store
        .enqueue(NewQueueEntry {
            sender: String::new(),
            raw: raw.clone(),
            envelope: "{}".into(),
            next_attempt: i64::MAX / 2,
        })
        .await
        .unwrap();
    assert_eq!(f.store.queue_entries().await.unwrap().len(), 2);
    assert_eq!(f.store.queue_message(id).await.unwrap(), raw);
    let e = f.store.queue_entry(id).await.unwrap();
    assert_eq!((e.sender.as_str(), e.size), ("alice@example.test", raw.len() as u64));

    // Only the due entry is claimed, and only by one worker.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 60;
    let claimed = f.store.claim_queue("a:1", until, &[], 10).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);
    assert!(f.store.claim_queue("b:2", until, &[], 10).await.unwrap().is_empty());
    // A dead holder's lease is taken over at once.
    let taken = f
        .store
        .claim_queue("b:2", until, &["a:1".to_string()], 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    // The old holder may no longer write its outcome.
    assert!(f.store.update_queue_entry(id, "a:1", "{}", 0).await.is_err());
    f.store
        .update_queue_entry(id, "b:2", r#"{"tried":1}"#, i64::MAX / 2)
        .await
        .unwrap();
    let e = f.store.queue_entry(id).await.unwrap();
    assert_eq!((e.envelope.as_str(), e.lease), (r#"{"tried":1}"#, None));
    assert!(f.store.claim_queue("a:1", until, &[], 10).await.unwrap().is_empty());
    f.store.set_queue_next_attempt(id, 0).await.unwrap();
    assert_eq!(f.store.claim_queue("a:1", until, &[], 10).await.unwrap().len(), 1);

    // Two entries share one file; deleting one keeps the other's message.
    f.store.delete_queue_entry(id).await.unwrap();
    assert_eq!(f.store.queue_message(later).await.unwrap(), raw);
    assert!(matches!(
        f.store.queue_entry(id).await,
        Err(StoreError::NoSuchQueueEntry(_))
    ));
    assert!(matches!(
        f.store.delete_queue_entry(id).await,
        Err(StoreError::NoSuchQueueEntry(_))
    ));
    f.store.delete_queue_entry(later).await.unwrap();
    assert!(f.store.queue_entries().await.unwrap().is_empty());
}

pub async fn dkim_keys_and_receiving(f: Fixture) {
    with_alice(&f).await;
    let key = |selector: &str, algorithm| DkimKey {
        domain: "example.test".into(),
        selector: selector.into(),
        algorithm,
        private_key: vec![1, 2, 3],
        public_key: vec![4, 5],
        created: 100,
        active: true,
    };
    f.store.add_dkim_key(key("r1", DkimAlgorithm::RsaSha256)).await.unwrap();
    f.store
        .add_dkim_key(key("e1", DkimAlgorithm::Ed25519Sha256))
        .await
        .unwrap();
    assert!(f.store.add_dkim_key(key("r1", DkimAlgorithm::RsaSha256)).await.is_err());
    let mut orphan = key("x", DkimAlgorithm::RsaSha256);
    orphan.domain = "nowhere.test".into();
    assert!(matches!(
        f.store.add_dkim_key(orphan).await,
        Err(StoreError::NoSuchDomain(_))
    ));
    f.store.set_dkim_key_active("example.test", "r1", false).await.unwrap();
    let keys = f.store.dkim_keys(Some("example.test")).await.unwrap();
    assert_eq!(keys.len(), 2);
    let r1 = keys.iter().find(|k| k.selector == "r1").unwrap();
    assert!(!r1.active);
    assert_eq!(r1.private_key, vec![1, 2, 3]);
    assert_eq!(
        keys.iter().find(|k| k.selector == "e1").unwrap().algorithm,
        DkimAlgorithm::Ed25519Sha256
    );
    f.store.delete_dkim_key("example.test", "r1").await.unwrap();
    assert!(matches!(
        f.store.delete_dkim_key("example.test", "r1").await,
        Err(StoreError::NoSuchDkimKey(..))
    ));
    assert_eq!(f.store.dkim_keys(None).await.unwrap().len(), 1);

    assert!(f.store.domain("example.test").await.unwrap().receiving);
    assert_eq!(f.store.domain_receiving("Example.TEST").await.unwrap(), Some(true));
    assert_eq!(f.store.domain_receiving("elsewhere.test").await.unwrap(), None);
    f.store.create_domain("gone.test").await.unwrap();
    let mut gone = key("g1", DkimAlgorithm::RsaSha256);
    gone.domain = "gone.test".into();
    f.store.add_dkim_key(gone).await.unwrap();
    f.store.delete_domain("gone.test").await.unwrap();
    assert!(f.store.dkim_keys(Some("gone.test")).await.unwrap().is_empty());
    f.store.set_domain_receiving("example.test", false).await.unwrap();
    assert!(!f.store.domain("example.test").await.unwrap().receiving);
    assert_eq!(f.store.domain_receiving("example.test").await.unwrap(), Some(false));
}
