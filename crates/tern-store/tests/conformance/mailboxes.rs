//! Mailboxes: special use, hierarchy, rename, delete, UIDVALIDITY, subscriptions.

use tern_store::{Expunge, NewMessage, SpecialUse, StoreError};

use super::{Fixture, with_alice};

pub async fn new_account_has_special_folders(f: Fixture) {
    let alice = with_alice(&f).await;
    let boxes = f.store.mailboxes(alice).await.unwrap();
    let mut got: Vec<_> = boxes
        .iter()
        .map(|m| (m.name.as_str(), m.special_use, m.subscribed))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("Archive", Some(SpecialUse::Archive), true),
            ("Drafts", Some(SpecialUse::Drafts), true),
            ("INBOX", None, true),
            ("Junk", Some(SpecialUse::Junk), true),
            ("Sent", Some(SpecialUse::Sent), true),
            ("Trash", Some(SpecialUse::Trash), true),
        ]
    );
    for m in &boxes {
        assert_eq!((m.uidnext, m.messages), (1, 0));
        assert!(m.uidvalidity > 0);
    }
    assert_eq!(f.store.mailbox(alice, "inbox").await.unwrap().name, "INBOX");
}

pub async fn create_makes_parents(f: Fixture) {
    let alice = with_alice(&f).await;
    let m = f
        .store
        .create_mailbox(alice, "Projects/2026/Größe", Some(SpecialUse::Flagged))
        .await
        .unwrap();
    assert_eq!(m.name, "Projects/2026/Größe");
    assert_eq!(m.special_use, Some(SpecialUse::Flagged));
    f.store.mailbox(alice, "Projects").await.unwrap();
    f.store.mailbox(alice, "Projects/2026").await.unwrap();
    assert!(matches!(
        f.store.create_mailbox(alice, "Projects", None).await,
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        f.store.create_mailbox(alice, "INBOX", None).await,
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        f.store.create_mailbox(alice, "a//b", None).await,
        Err(StoreError::InvalidMailboxName(_))
    ));
}

pub async fn rename_moves_children(f: Fixture) {
    let alice = with_alice(&f).await;
    let parent = f.store.create_mailbox(alice, "Work", None).await.unwrap();
    f.store.create_mailbox(alice, "Work/Reports", None).await.unwrap();
    f.store.create_mailbox(alice, "Workshop", None).await.unwrap();
    f.store
        .append(parent.id, vec![NewMessage::new("Subject: x\r\n\r\nbody\r\n")])
        .await
        .unwrap();
    f.store.rename_mailbox(alice, "Work", "Archive/Work").await.unwrap();
    let renamed = f.store.mailbox(alice, "Archive/Work").await.unwrap();
    assert_eq!(
        (renamed.id, renamed.uidvalidity, renamed.messages),
        (parent.id, parent.uidvalidity, 1)
    );
    f.store.mailbox(alice, "Archive/Work/Reports").await.unwrap();
    f.store.mailbox(alice, "Workshop").await.unwrap();
    assert!(matches!(
        f.store.mailbox(alice, "Work").await,
        Err(StoreError::NoSuchMailbox(_))
    ));
    assert!(matches!(
        f.store.rename_mailbox(alice, "Workshop", "Archive").await,
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        f.store.rename_mailbox(alice, "Archive", "Archive/Inner").await,
        Err(StoreError::InvalidMailboxName(_))
    ));
}

pub async fn rename_inbox_moves_messages(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let raw = b"Subject: old mail\r\n\r\nkeep me\r\n".to_vec();
    f.store
        .append(
            inbox.id,
            vec![NewMessage::new(raw.clone()), NewMessage::new(raw.clone())],
        )
        .await
        .unwrap();
    f.store.rename_mailbox(alice, "INBOX", "Old Inbox").await.unwrap();
    let inbox_after = f.store.mailbox(alice, "INBOX").await.unwrap();
    assert_eq!(inbox_after.messages, 0);
    assert!(inbox_after.uidnext >= 3, "UIDs are never reused");
    let old = f.store.mailbox(alice, "Old Inbox").await.unwrap();
    assert_eq!(old.messages, 2);
    let uids: Vec<_> = f.store.messages(old.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(f.store.read_message(old.id, uids[1]).await.unwrap(), raw);
    // The moved messages vanished from INBOX, and the blob they share stays readable
    // after one copy is expunged.
    let changes = f.store.changes_since(inbox.id, inbox.highest_modseq).await.unwrap();
    assert_eq!(changes.vanished, [1, 2]);
    f.store.expunge(old.id, Expunge::Uids(vec![uids[0]])).await.unwrap();
    assert_eq!(f.store.read_message(old.id, uids[1]).await.unwrap(), raw);
}

pub async fn delete_rules(f: Fixture) {
    let alice = with_alice(&f).await;
    assert!(matches!(
        f.store.delete_mailbox(alice, "INBOX").await,
        Err(StoreError::ProtectedMailbox(..))
    ));
    f.store.create_mailbox(alice, "A/B", None).await.unwrap();
    assert!(matches!(
        f.store.delete_mailbox(alice, "A").await,
        Err(StoreError::HasChildren(_))
    ));
    let b = f.store.mailbox(alice, "A/B").await.unwrap();
    f.store
        .append(b.id, vec![NewMessage::new("Subject: b\r\n\r\nb\r\n")])
        .await
        .unwrap();
    f.store.delete_mailbox(alice, "A/B").await.unwrap();
    f.store.delete_mailbox(alice, "A").await.unwrap();
    assert!(matches!(
        f.store.delete_mailbox(alice, "A").await,
        Err(StoreError::NoSuchMailbox(_))
    ));
    assert_eq!(f.store.account_by_id(alice).await.unwrap().used, 0);
}

pub async fn recreated_mailbox_has_new_uidvalidity(f: Fixture) {
    let alice = with_alice(&f).await;
    let first = f.store.create_mailbox(alice, "Temp", None).await.unwrap();
    f.store.delete_mailbox(alice, "Temp").await.unwrap();
    let second = f.store.create_mailbox(alice, "Temp", None).await.unwrap();
    assert!(second.uidvalidity > first.uidvalidity);
}

pub async fn subscriptions(f: Fixture) {
    let alice = with_alice(&f).await;
    f.store.create_mailbox(alice, "Lists", None).await.unwrap();
    assert!(!f.store.mailbox(alice, "Lists").await.unwrap().subscribed);
    f.store.set_subscribed(alice, "Lists", true).await.unwrap();
    assert!(f.store.mailbox(alice, "Lists").await.unwrap().subscribed);
    f.store.set_subscribed(alice, "Lists", false).await.unwrap();
    assert!(!f.store.mailbox(alice, "Lists").await.unwrap().subscribed);
}
