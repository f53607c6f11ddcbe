//! A fresh embedded store with one account, as the protocol servers' tests start from.

use std::path::Path;

use tern_store::{EmbeddedStore, NewAccount, Store};

/// Opens a store in `dir` and creates `address`'s domain and account with `password`.
pub async fn store_with_account(dir: &Path, address: &str, password: &str) -> EmbeddedStore {
    let store = EmbeddedStore::open(dir).expect("open store");
    let domain = address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .expect("an address with a domain");
    store.create_domain(domain).await.expect("domain");
    store
        .create_account(NewAccount {
            address: address.into(),
            password_hash: Some(tern_store::password::hash(password).expect("hash")),
            ..Default::default()
        })
        .await
        .expect("account");
    store
}
