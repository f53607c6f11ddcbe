//! Embedded backend specifics: where bodies live. Small bodies are rows in the database;
//! large ones are content-addressed files, stored once per account however often they
//! are copied, and removed when the last message using them is expunged.

use tern_store::{EmbeddedStore, Expunge, NewAccount, NewMessage, Store};

fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_deduplicated_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store")).unwrap();
    store.create_domain("example.test").await.unwrap();
    let a = store.create_account(NewAccount { address: "a@example.test".into(), ..Default::default() }).await.unwrap();
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap();
    let archive = store.mailbox(a.id, "Archive").await.unwrap();
    let blobs = dir.path().join("store/blobs").join(a.id.0.to_string());

    let small = NewMessage::new("Subject: small\r\n\r\nhello\r\n");
    let big_raw = tern_testkit::corpus::messages(3, 1, 400_000).remove(0);
    let appended = store.append(inbox.id, vec![small, NewMessage::new(big_raw.clone())]).await.unwrap();
    let (small_uid, big_uid) = (appended[0].uid, appended[1].uid);
    assert_eq!(store.message_file(inbox.id, small_uid).await.unwrap(), None, "small bodies are rows");
    let path = store.message_file(inbox.id, big_uid).await.unwrap().expect("large bodies are files");
    assert_eq!(std::fs::read(&path).unwrap(), big_raw);
    assert_eq!(files_under(&blobs), 1);

    // Copies, moves and a second identical append share the one file.
    store.copy(inbox.id, &[big_uid], archive.id).await.unwrap();
    store.append(inbox.id, vec![NewMessage::new(big_raw.clone())]).await.unwrap();
    assert_eq!(files_under(&blobs), 1);

    // The file goes only with the last message using it.
    store.expunge(inbox.id, Expunge::Uids(vec![big_uid, big_uid + 1])).await.unwrap();
    assert!(path.exists());
    store.expunge(archive.id, Expunge::Uids(vec![1])).await.unwrap();
    assert!(!path.exists());
    assert_eq!(files_under(&blobs), 0);
    assert_eq!(store.read_message(inbox.id, small_uid).await.unwrap(), b"Subject: small\r\n\r\nhello\r\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_account_removes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store")).unwrap();
    store.create_domain("example.test").await.unwrap();
    let a = store.create_account(NewAccount { address: "a@example.test".into(), ..Default::default() }).await.unwrap();
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap();
    store.append(inbox.id, vec![NewMessage::new(tern_testkit::corpus::messages(4, 1, 300_000).remove(0))]).await.unwrap();
    let blobs = dir.path().join("store/blobs").join(a.id.0.to_string());
    assert_eq!(files_under(&blobs), 1);
    store.delete_account("a@example.test").await.unwrap();
    assert!(!blobs.exists());
    assert_eq!(store.integrity_check().await.unwrap(), ["ok"]);
}
