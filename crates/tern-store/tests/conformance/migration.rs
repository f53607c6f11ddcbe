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

pub async fn settings_are_replaced_only_if_unchanged(f: Fixture) {
    let store: &dyn Store = &*f.store;
    let key = "admin/tokens";
    // Absent is a state too: only a writer that saw it absent may create it.
    assert!(!store.replace_setting(key, Some("[]"), Some("[1]")).await.unwrap());
    assert_eq!(store.setting(key).await.unwrap(), None);
    assert!(store.replace_setting(key, None, Some("[1]")).await.unwrap());
    assert!(!store.replace_setting(key, None, Some("[2]")).await.unwrap());
    assert!(!store.replace_setting(key, Some("[2]"), Some("[3]")).await.unwrap());
    assert_eq!(store.setting(key).await.unwrap().as_deref(), Some("[1]"));
    assert!(store.replace_setting(key, Some("[1]"), None).await.unwrap());
    assert_eq!(store.setting(key).await.unwrap(), None);
}

pub async fn concurrent_setting_updates_lose_nothing(f: Fixture) {
    let key = "test/list";
    let writers: Vec<_> = (0..24u32)
        .map(|n| {
            let store = f.store.clone();
            tokio::spawn(async move {
                tern_store::setting::update(store.as_ref(), key, |current| {
                    let mut list: Vec<u32> = current.map_or_else(Vec::new, |j| serde_json::from_str(j).unwrap());
                    list.push(n);
                    Ok::<_, StoreError>((Some(serde_json::to_string(&list).unwrap()), list.len()))
                })
                .await
                .unwrap()
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut list: Vec<u32> = serde_json::from_str(&f.store.setting(key).await.unwrap().unwrap()).unwrap();
    list.sort();
    assert_eq!(list, (0..24).collect::<Vec<_>>(), "every writer's change kept");
    // A change to the value it already holds writes nothing and succeeds.
    let unchanged = tern_store::setting::update(f.store.as_ref(), key, |current| {
        Ok::<_, StoreError>((current.map(str::to_string), ()))
    })
    .await;
    assert!(unchanged.is_ok());
}

pub async fn a_request_is_replaced_only_if_unchanged(f: Fixture) {
    let alice = with_alice(&f).await;
    f.store.put_migration_source(source("old")).await.unwrap();
    let m = f
        .store
        .put_migration(new_migration(alice, "alice", r#"{"seq":1}"#))
        .await
        .unwrap();
    assert!(
        !f.store
            .replace_migration_request(m.id, r#"{"seq":0}"#, r#"{"seq":2}"#)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .replace_migration_request(m.id, r#"{"seq":1}"#, r#"{"seq":2}"#)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .replace_migration_request(m.id, r#"{"seq":1}"#, r#"{"seq":3}"#)
            .await
            .unwrap()
    );
    assert_eq!(f.store.migration(&m.address).await.unwrap().request, r#"{"seq":2}"#);
    f.store.delete_migration(m.id).await.unwrap();
    assert!(matches!(
        f.store
            .replace_migration_request(m.id, r#"{"seq":2}"#, r#"{"seq":3}"#)
            .await,
        Err(StoreError::NoSuchMigration(_))
    ));
}
