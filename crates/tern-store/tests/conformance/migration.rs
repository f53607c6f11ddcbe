//! Migration records: sources, migrations, folders and the source → Tern message map.

use tern_store::{
    Expunge, MigratedMessage, MigrationOrigin, MigrationSource, NewMessage, NewMigration, Store, StoreError,
};

use super::{Fixture, with_alice};

fn source(name: &str) -> MigrationSource {
    MigrationSource {
        name: name.into(),
        settings: r#"{"host":"imap.old.example"}"#.into(),
        secret: None,
    }
}

fn new_migration(account: tern_store::AccountId, remote_user: &str, request: &str) -> NewMigration {
    NewMigration {
        account,
        source: "old".into(),
        remote_user: remote_user.into(),
        secret: Some(vec![1, 2, 3]),
        request: request.into(),
    }
}

pub async fn sources_and_migrations_lifecycle(f: Fixture) {
    let alice = with_alice(&f).await;
    let missing = f.store.put_migration(new_migration(alice, "alice", "{}")).await;
    assert!(
        matches!(missing, Err(StoreError::NoSuchMigrationSource(_))),
        "{missing:?}"
    );
    f.store.put_migration_source(source("old")).await.unwrap();
    let m = f
        .store
        .put_migration(new_migration(alice, "alice", r#"{"pass":"full"}"#))
        .await
        .unwrap();
    assert_eq!(m.address, "alice@example.test");
    f.store.set_migration_progress(m.id, r#"{"copied":5}"#).await.unwrap();
    // Re-adding (a new password) keeps the progress.
    let again = f
        .store
        .put_migration(new_migration(alice, "alice2", "{}"))
        .await
        .unwrap();
    assert_eq!(again.id, m.id);
    assert_eq!(again.progress, r#"{"copied":5}"#);
    assert_eq!(again.remote_user, "alice2");
    assert!(matches!(
        f.store.delete_migration_source("old").await,
        Err(StoreError::MigrationSourceInUse(_, 1))
    ));
    let later = 4_000_000_000;
    assert!(f.store.claim_migration(m.id, "node-a", later, None).await.unwrap());
    assert!(!f.store.claim_migration(m.id, "node-b", later, None).await.unwrap());
    assert!(
        f.store.claim_migration(m.id, "node-a", later, None).await.unwrap(),
        "renewal"
    );
    let held = f.store.migration("alice@example.test").await.unwrap();
    assert_eq!(held.lease, Some(("node-a".to_string(), later)));
    f.store.release_migration(m.id, "node-a").await.unwrap();
    assert!(f.store.claim_migration(m.id, "node-b", 1, None).await.unwrap());
    assert!(
        f.store.claim_migration(m.id, "node-a", later, None).await.unwrap(),
        "an expired lease is taken over"
    );
    assert!(
        f.store
            .claim_migration(m.id, "node-c", later, Some("node-a"))
            .await
            .unwrap(),
        "a dead holder's"
    );
    f.store.set_migration_secret(m.id, None).await.unwrap();
    let wiped = f.store.migration("alice@example.test").await.unwrap();
    assert_eq!(wiped.secret, None);
    f.store.delete_migration(m.id).await.unwrap();
    assert!(f.store.migrations().await.unwrap().is_empty());
    f.store.delete_migration_source("old").await.unwrap();
    assert!(f.store.migration_sources().await.unwrap().is_empty());
}

pub async fn migrated_messages_are_mapped_atomically(f: Fixture) {
    let alice = with_alice(&f).await;
    f.store.put_migration_source(source("old")).await.unwrap();
    let m = f
        .store
        .put_migration(new_migration(alice, "alice", "{}"))
        .await
        .unwrap();
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let folder = f
        .store
        .put_migration_folder(m.id, "INBOX", inbox.id, r#"{"uidvalidity":7}"#)
        .await
        .unwrap();
    let mut a = NewMessage::new(&b"Subject: a\r\n\r\nA\r\n"[..]);
    a.migrated_from = Some(MigrationOrigin {
        folder: folder.id,
        source_key: "41".into(),
    });
    let appended = f.store.append(inbox.id, vec![a]).await.unwrap();
    let map = f.store.migrated_messages(folder.id).await.unwrap();
    assert_eq!(
        map,
        vec![MigratedMessage {
            source_key: "41".into(),
            uid: appended[0].uid,
            modseq: appended[0].modseq
        }]
    );
    // An expunge by the user leaves the entry: the message was brought over once.
    f.store
        .expunge(inbox.id, Expunge::Uids(vec![appended[0].uid]))
        .await
        .unwrap();
    assert_eq!(f.store.migrated_messages(folder.id).await.unwrap().len(), 1);
    f.store
        .record_migrated(
            folder.id,
            vec![MigratedMessage {
                source_key: "42".into(),
                uid: 99,
                modseq: 3,
            }],
        )
        .await
        .unwrap();
    f.store
        .forget_migrated(folder.id, Some(vec!["41".into()]))
        .await
        .unwrap();
    let keys: Vec<_> = f
        .store
        .migrated_messages(folder.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.source_key)
        .collect();
    assert_eq!(keys, vec!["42".to_string()]);
    let updated = f
        .store
        .put_migration_folder(m.id, "INBOX", inbox.id, r#"{"uidvalidity":8}"#)
        .await
        .unwrap();
    assert_eq!(updated.id, folder.id);
    assert_eq!(f.store.migration_folders(m.id).await.unwrap(), vec![updated]);
    f.store.forget_migrated(folder.id, None).await.unwrap();
    assert!(f.store.migrated_messages(folder.id).await.unwrap().is_empty());
}

pub async fn settings_round_trip(f: Fixture) {
    let store: &dyn Store = &*f.store;
    assert_eq!(store.setting("migration.schedule").await.unwrap(), None);
    store.set_setting("migration.schedule", Some("{}")).await.unwrap();
    assert_eq!(
        store.setting("migration.schedule").await.unwrap().as_deref(),
        Some("{}")
    );
    store.set_setting("migration.schedule", None).await.unwrap();
    assert_eq!(store.setting("migration.schedule").await.unwrap(), None);
}
