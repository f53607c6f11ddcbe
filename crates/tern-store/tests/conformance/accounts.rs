//! Domains, accounts, aliases, recipient resolution.

use tern_store::{NewAccount, StoreError, password};

use super::Fixture;

pub async fn domains_lifecycle(f: Fixture) {
    let s = &f.store;
    let d = s.create_domain("Example.TEST").await.unwrap();
    assert_eq!(d.name, "example.test");
    assert!(matches!(
        s.create_domain("example.test").await,
        Err(StoreError::DomainExists(_))
    ));
    assert!(matches!(
        s.create_domain("not a domain").await,
        Err(StoreError::InvalidAddress(_))
    ));
    s.create_domain("other.test").await.unwrap();
    let names: Vec<_> = s.domains().await.unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["example.test", "other.test"]);
    s.create_account(NewAccount {
        address: "a@example.test".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(matches!(
        s.delete_domain("example.test").await,
        Err(StoreError::DomainNotEmpty(_, 1))
    ));
    s.delete_domain("other.test").await.unwrap();
    assert!(matches!(s.domain("other.test").await, Err(StoreError::NoSuchDomain(_))));
}

pub async fn accounts_lifecycle(f: Fixture) {
    let s = &f.store;
    s.create_domain("example.test").await.unwrap();
    assert!(matches!(
        s.create_account(NewAccount {
            address: "bob@nowhere.test".into(),
            ..Default::default()
        })
        .await,
        Err(StoreError::NoSuchDomain(_))
    ));
    let hash = password::hash("s3cret pass").unwrap();
    let a = s
        .create_account(NewAccount {
            address: "Bob@Example.test".into(),
            display_name: Some("Bob Builder".into()),
            password_hash: Some(hash),
            quota: Some(1_000_000),
        })
        .await
        .unwrap();
    assert_eq!(a.address, "Bob@example.test");
    assert!(a.enabled);
    // Local parts match case-insensitively.
    let again = s.account("bob@example.test").await.unwrap();
    assert_eq!(again.id, a.id);
    assert!(password::verify("s3cret pass", again.password_hash.as_deref().unwrap()));
    assert!(matches!(
        s.create_account(NewAccount {
            address: "BOB@example.test".into(),
            ..Default::default()
        })
        .await,
        Err(StoreError::AddressInUse(_))
    ));
    s.set_enabled("bob@example.test", false).await.unwrap();
    assert!(!s.account("bob@example.test").await.unwrap().enabled);
    s.set_password_hash("bob@example.test", &password::hash("new one").unwrap())
        .await
        .unwrap();
    assert!(password::verify(
        "new one",
        s.account("bob@example.test")
            .await
            .unwrap()
            .password_hash
            .as_deref()
            .unwrap()
    ));
    s.set_quota("bob@example.test", None).await.unwrap();
    assert_eq!(s.account("bob@example.test").await.unwrap().quota, None);
    s.create_account(NewAccount {
        address: "amy@example.test".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let list: Vec<_> = s
        .accounts(Some("example.test"))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(list, ["amy@example.test", "Bob@example.test"]);
    s.delete_account("bob@example.test").await.unwrap();
    assert!(matches!(
        s.account("bob@example.test").await,
        Err(StoreError::NoSuchAccount(_))
    ));
}

pub async fn recipients_resolve(f: Fixture) {
    let s = &f.store;
    let alice = super::with_alice(&f).await;
    let bob = s
        .create_account(NewAccount {
            address: "bob@example.test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    s.create_alias("sales@example.test", "bob@example.test").await.unwrap();
    assert_eq!(s.resolve_recipient("alice@example.test").await.unwrap(), Some(alice));
    assert_eq!(s.resolve_recipient("ALICE@EXAMPLE.TEST").await.unwrap(), Some(alice));
    assert_eq!(
        s.resolve_recipient("alice+news@example.test").await.unwrap(),
        Some(alice)
    );
    assert_eq!(s.resolve_recipient("sales@example.test").await.unwrap(), Some(bob));
    assert_eq!(s.resolve_recipient("sales+eu@example.test").await.unwrap(), Some(bob));
    assert_eq!(s.resolve_recipient("nobody@example.test").await.unwrap(), None);
    assert_eq!(s.resolve_recipient("alice@elsewhere.test").await.unwrap(), None);
    assert_eq!(s.resolve_recipient("garbage").await.unwrap(), None);
    s.set_catch_all("example.test", Some("alice@example.test"))
        .await
        .unwrap();
    assert_eq!(s.resolve_recipient("nobody@example.test").await.unwrap(), Some(alice));
    assert_eq!(
        s.domain("example.test").await.unwrap().catch_all.as_deref(),
        Some("alice@example.test")
    );
    s.set_catch_all("example.test", None).await.unwrap();
    assert_eq!(s.resolve_recipient("nobody@example.test").await.unwrap(), None);
}

pub async fn aliases_lifecycle(f: Fixture) {
    let s = &f.store;
    super::with_alice(&f).await;
    let a = s.create_alias("Info@example.test", "alice@example.test").await.unwrap();
    assert_eq!(
        (a.address.as_str(), a.target.as_str()),
        ("Info@example.test", "alice@example.test")
    );
    assert!(matches!(
        s.create_alias("info@example.test", "alice@example.test").await,
        Err(StoreError::AddressInUse(_))
    ));
    assert!(matches!(
        s.create_alias("alice@example.test", "alice@example.test").await,
        Err(StoreError::AddressInUse(_))
    ));
    assert!(matches!(
        s.create_alias("x@example.test", "ghost@example.test").await,
        Err(StoreError::NoSuchAccount(_))
    ));
    assert_eq!(s.aliases(None).await.unwrap().len(), 1);
    s.delete_alias("info@example.test").await.unwrap();
    assert!(matches!(
        s.delete_alias("info@example.test").await,
        Err(StoreError::NoSuchAlias(_))
    ));
    assert!(s.aliases(Some("example.test")).await.unwrap().is_empty());
}
