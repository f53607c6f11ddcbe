//! Embedded backend specifics: where bodies live (small ones as rows, large ones as
//! content-addressed files stored once per account and removed with their last
//! message), and the full-text index in its own file, repaired on open.

mod common;

use tern_store::{EmbeddedStore, Expunge, NewMessage, Store};

fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_deduplicated_files() {
    let (dir, store, a) = common::store_with_account("a").await;
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap();
    let archive = store.mailbox(a.id, "Archive").await.unwrap();
    let blobs = dir.path().join("store/blobs").join(a.id.0.to_string());

    let small = NewMessage::new("Subject: small\r\n\r\nhello\r\n");
    let big_raw = tern_testkit::corpus::messages(3, 1, 400_000).remove(0);
    let appended = store
        .append(inbox.id, vec![small, NewMessage::new(big_raw.clone())])
        .await
        .unwrap();
    let (small_uid, big_uid) = (appended[0].uid, appended[1].uid);
    assert_eq!(
        store.message_file(inbox.id, small_uid).await.unwrap(),
        None,
        "small bodies are rows"
    );
    let path = store
        .message_file(inbox.id, big_uid)
        .await
        .unwrap()
        .expect("large bodies are files");
    assert_eq!(std::fs::read(&path).unwrap(), big_raw);
    assert_eq!(files_under(&blobs), 1);

    // Copies, moves and a second identical append share the one file.
    store.copy(inbox.id, &[big_uid], archive.id).await.unwrap();
    store
        .append(inbox.id, vec![NewMessage::new(big_raw.clone())])
        .await
        .unwrap();
    assert_eq!(files_under(&blobs), 1);

    // The file goes only with the last message using it.
    store
        .expunge(inbox.id, Expunge::Uids(vec![big_uid, big_uid + 1]))
        .await
        .unwrap();
    assert!(path.exists());
    store.expunge(archive.id, Expunge::Uids(vec![1])).await.unwrap();
    assert!(!path.exists());
    assert_eq!(files_under(&blobs), 0);
    assert_eq!(
        store.read_message(inbox.id, small_uid).await.unwrap(),
        b"Subject: small\r\n\r\nhello\r\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_account_removes_its_files() {
    let (dir, store, a) = common::store_with_account("a").await;
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap();
    store
        .append(
            inbox.id,
            vec![NewMessage::new(tern_testkit::corpus::messages(4, 1, 300_000).remove(0))],
        )
        .await
        .unwrap();
    let blobs = dir.path().join("store/blobs").join(a.id.0.to_string());
    assert_eq!(files_under(&blobs), 1);
    store.delete_account("a@example.test").await.unwrap();
    assert!(!blobs.exists());
    assert_eq!(store.integrity_check().await.unwrap(), ["ok"]);
}

/// The full-text index is derived data in its own file: if it loses entries (a crash
/// before its unsynced commits reached the disk) or goes missing, opening the store
/// indexes what it lacks.
#[tokio::test(flavor = "multi_thread")]
async fn full_text_index_is_repaired_on_open() {
    let (dir, store, a) = common::store_with_account("a").await;
    let path = dir.path().join("store");
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap();
    let big = format!("Subject: big\r\n\r\nzeppelin {}\r\n", "filler ".repeat(50_000));
    store
        .append(
            inbox.id,
            vec![
                NewMessage::new("Subject: walrus\r\n\r\nThe walrus said hello.\r\n"),
                NewMessage::new(big),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .search_text(inbox.id, tern_store::TextField::Text, "walrus")
            .await
            .unwrap(),
        [1]
    );
    store.close().await.unwrap();
    drop(store);

    std::fs::remove_file(path.join("index.db")).unwrap();
    let _ = std::fs::remove_file(path.join("index.db-wal"));
    let _ = std::fs::remove_file(path.join("index.db-shm"));
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(
        store
            .search_text(inbox.id, tern_store::TextField::Text, "walrus")
            .await
            .unwrap(),
        [1]
    );
    assert_eq!(
        store
            .search_text(inbox.id, tern_store::TextField::Body, "zeppelin")
            .await
            .unwrap(),
        [2],
        "large bodies are re-read from their files"
    );
    store.close().await.unwrap();
}
