//! What the CLI, the console and the API share, against a real embedded store: domains
//! get signing keys, users get the role aliases, CSV imports report line by line,
//! migrations are steered through their stored request, tokens are kept only as hashes.

use tern_admin::migrations::{self, Control, Mailbox, PassRequest, Selector};
use tern_admin::users::{self, NewUser};
use tern_admin::{AdminError, admins, domains, tokens};
use tern_migrate::secrets::SecretBox;
use tern_migrate::source::{Credential, Protocol, SourceSettings};
use tern_migrate::state::Pass;
use tern_migrate::worker::parse_request;
use tern_store::{EmbeddedStore, MigrationSource, Store, password};

/// example.org with the accounts alice and bob.
async fn with_alice_and_bob(store: &EmbeddedStore) {
    domains::add(store, "example.org").await.unwrap();
    for a in ["alice@example.org", "bob@example.org"] {
        let user = NewUser {
            address: a.into(),
            ..NewUser::default()
        };
        users::add(store, user).await.unwrap();
    }
}

fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_domain_gets_both_signing_keys_and_rotation_retires_them() {
    let (_dir, store) = store();
    let d = domains::add(&store, " Example.ORG. ").await.unwrap();
    assert_eq!(d.name, "example.org");
    let keys = store.dkim_keys(Some("example.org")).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.active));
    assert!(matches!(
        domains::add(&store, "example.org").await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        domains::add(&store, "not a domain").await,
        Err(AdminError::Invalid(_))
    ));

    let old: Vec<String> = keys.iter().map(|k| k.selector.clone()).collect();
    let new = domains::rotate_dkim(&store, "example.org").await.unwrap();
    assert_eq!(new.len(), 2);
    let keys = store.dkim_keys(Some("example.org")).await.unwrap();
    assert_eq!(keys.len(), 4);
    for k in &keys {
        assert_eq!(k.active, !old.contains(&k.selector), "{}", k.selector);
    }
    // A key still signing cannot go; a retired one can.
    let signing = &new[0].selector;
    assert!(matches!(
        domains::delete_dkim_key(&store, "example.org", signing).await,
        Err(AdminError::Invalid(_))
    ));
    domains::delete_dkim_key(&store, "example.org", &old[0]).await.unwrap();
    assert_eq!(store.dkim_keys(Some("example.org")).await.unwrap().len(), 3);
    assert!(matches!(
        domains::rotate_dkim(&store, "nowhere.example").await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn users_get_generated_passwords_and_the_first_gets_the_role_addresses() {
    let (_dir, store) = store();
    domains::add(&store, "example.org").await.unwrap();
    let first = users::add(
        &store,
        NewUser {
            address: "alice@example.org".into(),
            display_name: Some("Alice".into()),
            quota: users::parse_quota("2GB").unwrap(),
            ..NewUser::default()
        },
    )
    .await
    .unwrap();
    let generated = first.password.clone().expect("a password is generated");
    let hash = store.account("alice@example.org").await.unwrap().password_hash.unwrap();
    assert!(password::verify(&generated, &hash));
    assert_eq!(first.account.quota, Some(2 << 30));
    assert_eq!(first.role_aliases, ["postmaster@example.org", "abuse@example.org"]);

    let second = users::add(
        &store,
        NewUser {
            address: "bob@example.org".into(),
            password: Some("bob-chosen-password".into()),
            ..NewUser::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(second.password, None, "a given password is not echoed");
    assert!(second.role_aliases.is_empty(), "the role addresses reach alice already");

    let again = users::add(
        &store,
        NewUser {
            address: "bob@example.org".into(),
            ..NewUser::default()
        },
    )
    .await;
    assert!(matches!(again, Err(AdminError::Invalid(_))), "{again:?}");

    let reset = users::reset_password(&store, "bob@example.org", None)
        .await
        .unwrap()
        .unwrap();
    let hash = store.account("bob@example.org").await.unwrap().password_hash.unwrap();
    assert!(password::verify(&reset, &hash));
    assert!(!password::verify("bob-chosen-password", &hash));
    assert!(matches!(
        users::reset_password(&store, "nobody@example.org", None).await,
        Err(AdminError::NotFound(_))
    ));
}

#[test]
fn quotas() {
    assert_eq!(users::parse_quota("500MB"), Ok(Some(500 << 20)));
    assert_eq!(users::parse_quota("2g"), Ok(Some(2 << 30)));
    assert_eq!(users::parse_quota("1.5GiB"), Ok(Some(3 << 29)));
    assert_eq!(users::parse_quota("4096"), Ok(Some(4096)));
    assert_eq!(users::parse_quota("unlimited"), Ok(None));
    assert!(users::parse_quota("lots").is_err());
    assert!(users::parse_quota("5 parsecs").is_err());
}

#[tokio::test]
async fn a_csv_import_makes_what_it_can_and_says_why_not_for_the_rest() {
    let (_dir, store) = store();
    domains::add(&store, "example.org").await.unwrap();
    let csv = "Address,Name,Password,Quota\n\
               carol@example.org,Carol C,carol-password-1,1GB\n\
               dave@example.org,\"Dave, Jr\",,\n\
               erin@elsewhere.example,Erin,,\n\
               ,No Address,,\n\
               frank@example.org,Frank,,many\n\
               carol@example.org,Carol again,,\n";
    let import = users::import_csv(&store, csv.as_bytes()).await.unwrap();
    let made: Vec<&str> = import.created.iter().map(|c| c.account.address.as_str()).collect();
    assert_eq!(made, ["carol@example.org", "dave@example.org"]);
    assert_eq!(import.created[0].password, None);
    assert!(import.created[1].password.is_some());
    assert_eq!(import.created[1].account.display_name.as_deref(), Some("Dave, Jr"));
    assert_eq!(import.created[0].account.quota, Some(1 << 30));
    let lines: Vec<usize> = import.skipped.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [4, 5, 6, 7], "{:#?}", import.skipped);
    assert!(
        import.skipped[0].1.contains("elsewhere.example"),
        "{}",
        import.skipped[0].1
    );
    assert!(import.skipped[2].1.contains("quota"), "{}", import.skipped[2].1);
    assert!(import.skipped[3].1.contains("in use"), "{}", import.skipped[3].1);
    let hash = store.account("carol@example.org").await.unwrap().password_hash.unwrap();
    assert!(password::verify("carol-password-1", &hash));

    let wrong = users::import_csv(&store, "who,what\nx,y\n".as_bytes()).await;
    assert!(matches!(wrong, Err(AdminError::Invalid(m)) if m.contains("address")));
}

#[tokio::test]
async fn administrators_are_granted_and_the_last_one_stays() {
    let (_dir, store) = store();
    with_alice_and_bob(&store).await;
    assert!(!admins::is_admin(&store, "alice@example.org").await.unwrap());
    admins::grant(&store, "Alice@Example.org").await.unwrap();
    admins::grant(&store, "alice@example.org").await.unwrap();
    admins::grant(&store, "bob@example.org").await.unwrap();
    assert_eq!(
        admins::list(&store).await.unwrap(),
        ["alice@example.org", "bob@example.org"]
    );
    assert!(admins::is_admin(&store, "ALICE@example.org").await.unwrap());
    assert!(matches!(
        admins::grant(&store, "nobody@example.org").await,
        Err(AdminError::NotFound(_))
    ));
    admins::revoke(&store, "bob@example.org").await.unwrap();
    assert!(matches!(
        admins::revoke(&store, "alice@example.org").await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        admins::revoke(&store, "bob@example.org").await,
        Err(AdminError::NotFound(_))
    ));
}

fn named(name: &str) -> tokens::NewToken {
    tokens::NewToken {
        name: name.into(),
        ..Default::default()
    }
}

/// The name of the token a check found live, if it did.
async fn live(store: &EmbeddedStore, secret: &str) -> Option<String> {
    match tokens::authenticate(store, secret).await.unwrap() {
        tokens::Checked::Valid(t) => Some(t.name),
        _ => None,
    }
}

#[tokio::test]
async fn tokens_are_shown_once_kept_as_hashes_and_revocable() {
    let (_dir, store) = store();
    let secret = tokens::create(&store, &named("backup-script"), "alice@example.org")
        .await
        .unwrap();
    assert!(secret.starts_with(tokens::PREFIX) && secret.len() == tokens::PREFIX.len() + 64);
    let stored = store.setting(tokens::SETTING).await.unwrap().unwrap();
    assert!(
        !stored.contains(&secret[tokens::PREFIX.len()..]),
        "the secret itself is not stored"
    );
    let listed = serde_json::to_string(&tokens::list(&store).await.unwrap()).unwrap();
    assert!(!listed.contains("sha256"), "the hash is not listed: {listed}");

    assert_eq!(live(&store, &secret).await.as_deref(), Some("backup-script"));
    let token = &tokens::list(&store).await.unwrap()[0];
    assert!(token.last_used.is_some());
    assert_eq!((token.access, token.expires), (tokens::Access::Full, None));
    let mut wrong = secret.clone();
    wrong.pop();
    wrong.push(if secret.ends_with('0') { '1' } else { '0' });
    assert_eq!(
        tokens::authenticate(&store, &wrong).await.unwrap(),
        tokens::Checked::Unknown
    );
    assert_eq!(
        tokens::authenticate(&store, "Bearer nonsense").await.unwrap(),
        tokens::Checked::Unknown
    );

    assert!(matches!(
        tokens::create(&store, &named("backup-script"), "x").await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        tokens::create(&store, &named("bad name!"), "x").await,
        Err(AdminError::Invalid(_))
    ));
    tokens::revoke(&store, "backup-script").await.unwrap();
    assert_eq!(live(&store, &secret).await, None);
    assert!(matches!(
        tokens::revoke(&store, "backup-script").await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn tokens_can_be_read_only_and_expire() {
    let (_dir, store) = store();
    let monitor = tokens::NewToken {
        name: "monitoring".into(),
        access: tokens::Access::parse("read-only").unwrap(),
        valid_days: Some(30),
    };
    let secret = tokens::create(&store, &monitor, "alice@example.org").await.unwrap();
    let token = match tokens::authenticate(&store, &secret).await.unwrap() {
        tokens::Checked::Valid(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(token.access, tokens::Access::ReadOnly);
    let expires = token.expires.expect("an expiry");
    assert_eq!(expires - token.created, 30 * 86_400);
    // Good up to the second before; from then on it is expired, not unknown, so the
    // script is told to get a new one.
    assert!(matches!(
        tokens::authenticate_at(&store, &secret, expires - 1).await.unwrap(),
        tokens::Checked::Valid(_)
    ));
    assert!(matches!(
        tokens::authenticate_at(&store, &secret, expires).await.unwrap(),
        tokens::Checked::Expired(t) if t.name == "monitoring"
    ));
    for days in [0, tokens::MAX_VALID_DAYS + 1] {
        let too = tokens::NewToken {
            valid_days: Some(days),
            ..named("too")
        };
        let refused = tokens::create(&store, &too, "x").await.unwrap_err().to_string();
        assert!(refused.contains("1 to 3650 days"), "{refused}");
    }
    assert!(
        tokens::Access::parse("admin")
            .unwrap_err()
            .to_string()
            .contains("full or read-only")
    );
    // Tokens stored before access and expiry existed keep full access, no expiry.
    store
        .set_setting(
            tokens::SETTING,
            Some(r#"[{"name":"old","created":1,"created_by":"x","last_used":null,"sha256":"00"}]"#),
        )
        .await
        .unwrap();
    let old = &tokens::list(&store).await.unwrap()[0];
    assert_eq!((old.access, old.expires), (tokens::Access::Full, None));
}

/// Each script's use is noted while tokens are made and revoked: a revoked token must
/// stay revoked and a new one stay made, whatever the order the writes land in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noting_a_use_never_undoes_a_revocation_or_a_new_token() {
    let (_dir, store) = store();
    let store = std::sync::Arc::new(store);
    let mut secrets = Vec::new();
    for n in 0..8 {
        secrets.push(
            tokens::create(store.as_ref(), &named(&format!("script-{n}")), "x")
                .await
                .unwrap(),
        );
    }
    let mut tasks = Vec::new();
    for (n, secret) in secrets.iter().enumerate() {
        let (store, secret) = (store.clone(), secret.clone());
        // Far enough apart that every check writes its last use.
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let at = 1_000_000 + round * 120 + n as i64;
                tokens::authenticate_at(store.as_ref(), &secret, at).await.unwrap();
            }
        }));
    }
    for n in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            tokens::revoke(store.as_ref(), &format!("script-{n}")).await.unwrap();
            tokens::create(store.as_ref(), &named(&format!("new-{n}")), "x")
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let names: Vec<String> = tokens::list(store.as_ref())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("new-")), "{names:?}");
    for secret in &secrets {
        assert_eq!(live(store.as_ref(), secret).await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_steered_through_their_request() {
    let (dir, store) = store();
    with_alice_and_bob(&store).await;
    let settings = SourceSettings {
        host: "old.example.net".into(),
        ..SourceSettings::preset(tern_migrate::source::Preset::Generic, Protocol::Imap)
    };
    store
        .put_migration_source(MigrationSource {
            name: "old".into(),
            settings: serde_json::to_string(&settings).unwrap(),
            secret: None,
        })
        .await
        .unwrap();
    let secrets = SecretBox::open_or_create(&dir.path().join("secrets.key")).unwrap();

    assert!(matches!(
        migrations::start(&store, &Selector::default(), PassRequest::new(Pass::Full)).await,
        Err(AdminError::NotFound(_))
    ));
    // Without an admin login at the source, every mailbox needs its password.
    let no_password = [Mailbox {
        address: "alice@example.org".into(),
        remote_user: "alice".into(),
        credential: None,
        user_root: None,
    }];
    assert!(matches!(
        migrations::add(&store, &secrets, "old", &no_password).await,
        Err(AdminError::Invalid(_))
    ));
    let csv = "EmailAddress,UserName,Password\nalice@example.org,alice,pw-a\nbob@example.org,bob,pw-b\n";
    let rows = migrations::parse_csv(csv.as_bytes()).unwrap();
    assert!(matches!(&rows[0].credential, Some(Credential::Password { password }) if password == "pw-a"));
    assert_eq!(migrations::add(&store, &secrets, "old", &rows).await.unwrap(), 2);
    let unknown = migrations::parse_csv("EmailAddress,UserName,Password\nzed@example.org,zed,pw\n".as_bytes()).unwrap();
    assert!(matches!(
        migrations::add(&store, &secrets, "old", &unknown).await,
        Err(AdminError::NotFound(_))
    ));

    let n = migrations::start(&store, &Selector::domain("example.org"), PassRequest::new(Pass::Full))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let alice = store.migration("alice@example.org").await.unwrap();
    let r = parse_request(&alice);
    assert_eq!((r.seq, r.pass), (1, Pass::Full));

    migrations::control(&store, &Selector::user("bob@example.org"), Control::Pause)
        .await
        .unwrap();
    assert!(parse_request(&store.migration("bob@example.org").await.unwrap()).paused);
    assert!(!parse_request(&store.migration("alice@example.org").await.unwrap()).paused);
    migrations::start(
        &store,
        &Selector::user("bob@example.org"),
        PassRequest::new(Pass::RetryErrors),
    )
    .await
    .unwrap();
    let bob = parse_request(&store.migration("bob@example.org").await.unwrap());
    assert_eq!((bob.seq, bob.pass, bob.paused), (2, Pass::RetryErrors, false));

    // Passes asked at the same moment (two administrators, the go-live watch) are all
    // asked: each adds one to the request's sequence number, none from a stale read.
    let before = parse_request(&store.migration("alice@example.org").await.unwrap()).seq;
    let mut askers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        askers.spawn(async move {
            migrations::start(
                &store,
                &Selector::user("alice@example.org"),
                PassRequest::new(Pass::Delta),
            )
            .await
            .unwrap()
        });
    }
    askers.join_all().await;
    assert_eq!(
        parse_request(&store.migration("alice@example.org").await.unwrap()).seq,
        before + 8
    );

    assert_eq!(migrations::finish(&store, &Selector::default()).await.unwrap(), 2);
    assert_eq!(
        parse_request(&store.migration("alice@example.org").await.unwrap()).pass,
        Pass::Finish
    );

    let overview = migrations::overview(&store, Some("example.org")).await.unwrap();
    assert_eq!(overview.len(), 2);
    assert_eq!(overview[0].0.percent, None, "nothing listed yet");
    assert!(
        migrations::overview(&store, Some("other.example"))
            .await
            .unwrap()
            .is_empty()
    );
    migrations::remove(&store, "bob@example.org").await.unwrap();
    assert_eq!(store.migrations().await.unwrap().len(), 1);
}
