//! Set-up shared by the embedded backend's own tests (the conformance suite has its own,
//! backend-neutral one).

use tempfile::TempDir;
use tern_store::{Account, EmbeddedStore, NewAccount, Store};

/// A fresh store in a temporary folder with domain example.test and one account.
/// The store lives in `DIR/store`.
pub async fn store_with_account(local: &str) -> (TempDir, EmbeddedStore, Account) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store")).unwrap();
    store.create_domain("example.test").await.unwrap();
    let account = store
        .create_account(NewAccount {
            address: format!("{local}@example.test"),
            ..Default::default()
        })
        .await
        .unwrap();
    (dir, store, account)
}
