//! Go-live end to end: a real Dovecot as the old provider that keeps receiving mail, an
//! in-process DNS server whose MX record is flipped mid-test, the migration worker, and
//! the go-live watch ticking at chosen times (the clock is passed in, so nothing here
//! waits for the quiet period to pass).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use tern_dns::golive::{self, CutoverError, GoLiveConfig, Stage, Watch};
use tern_dns::resolve::Lookup;
use tern_migrate::secrets::SecretBox;
use tern_migrate::source::{Credential, Preset, Protocol, SourceSettings, TlsMode};
use tern_migrate::state::{Pass, Phase};
use tern_migrate::worker::{Worker, WorkerConfig, parse_progress, parse_request};
use tern_store::{EmbeddedStore, MigrationSource, NewAccount, NewMigration, Store};
use tern_testkit::dns::TestDns;
use tern_testkit::dovecot::Dovecot;
use tern_testkit::migration_corpus::{CorpusFolder, CorpusMessage, CorpusSpec};

const DOMAIN: &str = "example.test";
const HOST: &str = "mail.example.test";
const USERS: [(&str, &str); 2] = [("alice", "alice-old-secret"), ("bob", "bob-old-secret")];
/// This server's public address as the test DNS publishes it (TEST-NET-1, RFC 5737).
const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
/// The old MX record's TTL: the quiet period is twice this.
const OLD_TTL: u32 = 120;

struct Setup {
    dovecot: Dovecot,
    store: Arc<EmbeddedStore>,
    secrets: Arc<SecretBox>,
    dns: TestDns,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn worker(&self) -> Worker {
        Worker::new(
            self.store.clone(),
            WorkerConfig {
                secrets: self.secrets.clone(),
                max_message_size: 64 << 20,
            },
        )
    }

    fn watch(&self) -> Watch {
        Watch::new(
            self.store.clone(),
            Lookup::server(self.dns.addr()).expect("resolver"),
            HOST,
            vec![PUBLIC],
            GoLiveConfig {
                watch: true,
                consecutive_checks: 2,
                check_interval: Duration::from_secs(60),
                delta_interval: Duration::from_secs(60),
                // Zero, so the quiet period is twice the old TTL.
                min_quiet: Duration::ZERO,
            },
        )
    }

    /// A message arriving at the old provider (appended over IMAP as its MTA would).
    fn arrives_at_old_provider(&self, user: &str, subject: &str) {
        let password = USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p).unwrap();
        let raw = format!(
            "From: sender@remote.test\r\nTo: {user}@{DOMAIN}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nSent while the MX still named the old provider.\r\n"
        );
        let folder = CorpusFolder {
            name: "INBOX".into(),
            special_use: None,
            messages: vec![CorpusMessage {
                raw: raw.into_bytes(),
                flags: vec![],
                keywords: vec![],
                internal_date: tern_migrate::now(),
                tz_offset_minutes: 0,
            }],
        };
        let mut client = tern_testkit::imap::Client::connect(self.dovecot.imap_addr()).expect("connect");
        client.login(user, password).expect("login");
        client.fill(&[folder]).expect("append");
        client.logout();
    }

    /// The subjects in a Tern account's INBOX.
    async fn inbox_subjects(&self, user: &str) -> Vec<String> {
        let account = self.store.account(&format!("{user}@{DOMAIN}")).await.unwrap();
        let inbox = self.store.mailbox(account.id, tern_store::INBOX).await.unwrap();
        let uids: Vec<_> = self
            .store
            .messages(inbox.id)
            .await
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        self.store
            .envelopes(inbox.id, &uids)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(_, e)| e.subject)
            .collect()
    }
}

async fn setup(test: &str) -> Option<Setup> {
    if Dovecot::skip_if_missing(test) {
        return None;
    }
    let dovecot = Dovecot::builder().users(&USERS).start().expect("start Dovecot");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store")).unwrap());
    let secrets = Arc::new(SecretBox::open_or_create(&dir.path().join(SecretBox::FILE)).unwrap());
    store.create_domain(DOMAIN).await.unwrap();
    // Mail still goes to the old provider: Tern's MX defers the domain's mail.
    store.set_domain_receiving(DOMAIN, false).await.unwrap();
    store
        .create_account(NewAccount {
            address: format!("admin@{DOMAIN}"),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .create_alias(&format!("postmaster@{DOMAIN}"), &format!("admin@{DOMAIN}"))
        .await
        .unwrap();
    let mut settings = SourceSettings::preset(Preset::Generic, Protocol::Imap);
    settings.host = "127.0.0.1".into();
    settings.port = dovecot.imap_port();
    settings.tls = TlsMode::None;
    store
        .put_migration_source(MigrationSource {
            name: "old".into(),
            settings: serde_json::to_string(&settings).unwrap(),
            secret: None,
        })
        .await
        .unwrap();
    for (i, (user, password)) in USERS.iter().enumerate() {
        let corpus = tern_testkit::migration_corpus::mailbox(&CorpusSpec {
            seed: 11 + i as u64,
            messages: 12,
            large_messages: 0,
            ..CorpusSpec::small()
        });
        dovecot.fill(user, &corpus).expect("fill the old mailbox");
        let account = store
            .create_account(NewAccount {
                address: format!("{user}@{DOMAIN}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let secret = secrets.seal(
            &serde_json::to_string(&Credential::Password {
                password: password.to_string(),
            })
            .unwrap(),
        );
        store
            .put_migration(NewMigration {
                account: account.id,
                source: "old".into(),
                remote_user: user.to_string(),
                secret: Some(secret),
                request: "{}".into(),
            })
            .await
            .unwrap();
    }
    let dns = TestDns::start().expect("DNS");
    dns.set_ttl(OLD_TTL);
    dns.set_mx(DOMAIN, &[(10, "mx.old.test")]);
    dns.set_a("mx.old.test", &[Ipv4Addr::new(198, 51, 100, 7)]);
    dns.set_a(HOST, &[Ipv4Addr::new(192, 0, 2, 10)]);
    Some(Setup {
        dovecot,
        store,
        secrets,
        dns,
        _dir: dir,
    })
}

/// Asks for a pass over every migration, as `tern migrate start` does.
async fn ask_all(store: &EmbeddedStore, pass: Pass) {
    for m in store.migrations().await.unwrap() {
        let mut r = parse_request(&m);
        r.seq += 1;
        r.pass = pass;
        store
            .set_migration_request(m.id, &serde_json::to_string(&r).unwrap())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_mx_flip_is_noticed_and_late_mail_comes_over_before_the_final_pass() {
    let Some(s) = setup("go-live").await else { return };
    // The pre-stage copy, before go-live.
    ask_all(&s.store, Pass::Full).await;
    s.worker().run_until_idle().await.unwrap();
    let watch = s.watch();
    let t0 = tern_migrate::now();

    // The MX still names the old provider: watched, nothing happens.
    watch.tick(t0).await.unwrap();
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(state.stage, Stage::Watching);
    assert_eq!(state.consecutive, 0);
    assert_eq!(state.old_mx_ttl, OLD_TTL, "the old MX TTL is remembered");
    assert!(state.last_mx.contains("mx.old.test"), "{}", state.last_mx);
    assert!(
        state.summary().starts_with("watching the MX record: 10 mx.old.test"),
        "{}",
        state.summary()
    );

    // Mail keeps arriving at the old provider; then the admin flips the MX.
    s.arrives_at_old_provider("alice", "late-before-flip");
    s.dns.set_mx(DOMAIN, &[(10, HOST)]);
    watch.tick(t0 + 10).await.unwrap();
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(
        (state.stage, state.consecutive),
        (Stage::Watching, 1),
        "one check is not enough"
    );
    watch.tick(t0 + 20).await.unwrap();
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(state.stage, Stage::CutOver);
    assert_eq!(state.cutover, Some(t0 + 20));
    assert_eq!(state.declared_by.as_deref(), Some("the MX watch"));
    assert_eq!(state.quiet_seconds, 2 * u64::from(OLD_TTL));
    assert_eq!(
        s.store.domain_receiving(DOMAIN).await.unwrap(),
        Some(true),
        "Tern's MX accepts the domain now"
    );
    for m in s.store.migrations().await.unwrap() {
        let r = parse_request(&m);
        assert_eq!((r.pass, r.cutover), (Pass::Delta, Some(t0 + 20)), "{}", m.address);
    }

    // The first delta brings the late message over.
    s.worker().run_until_idle().await.unwrap();
    assert!(
        s.inbox_subjects("alice")
            .await
            .contains(&"late-before-flip".to_string())
    );

    // The old provider is still receiving (senders with the old MX cached).
    s.arrives_at_old_provider("bob", "late-after-flip");
    // Within the delta interval: nothing asked.
    watch.tick(t0 + 30).await.unwrap();
    assert!(
        s.store
            .migrations()
            .await
            .unwrap()
            .iter()
            .all(|m| parse_request(m).pass == Pass::Delta)
    );
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(state.deltas, 1);
    // After it: another delta, which finds bob's late message.
    watch.tick(t0 + 90).await.unwrap();
    assert_eq!(golive::load(s.store.as_ref(), DOMAIN).await.unwrap().deltas, 2);
    s.worker().run_until_idle().await.unwrap();
    assert!(s.inbox_subjects("bob").await.contains(&"late-after-flip".to_string()));
    watch.tick(t0 + 100).await.unwrap();
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(state.stage, Stage::CutOver, "not quiet long enough yet");
    assert!(state.summary().contains("2 delta pass(es)"), "{}", state.summary());
    let last_new_mail = state.last_new_mail.expect("late mail noticed");
    assert_eq!(
        last_new_mail,
        t0 + 100,
        "the delta that found mail restarted the quiet period"
    );
    assert!(
        state.events.iter().any(|e| e.text.contains("bob@example.test")),
        "{:?}",
        state.events
    );

    // A mail that arrives just before the final pass is still brought over by it.
    s.arrives_at_old_provider("alice", "last-minute");
    let quiet_over = last_new_mail + state.quiet_seconds as i64 + 1;
    watch.tick(quiet_over).await.unwrap();
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(state.stage, Stage::Finishing);
    for m in s.store.migrations().await.unwrap() {
        assert_eq!(parse_request(&m).pass, Pass::Finish, "{}", m.address);
    }
    s.worker().run_until_idle().await.unwrap();
    watch.tick(quiet_over + 10).await.unwrap();
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(state.stage, Stage::Done);
    assert!(s.inbox_subjects("alice").await.contains(&"last-minute".to_string()));

    // Every mailbox is complete, byte for byte, and the credentials are gone.
    for (user, password) in USERS {
        let m = s.store.migration(&format!("{user}@{DOMAIN}")).await.unwrap();
        assert_eq!(parse_progress(&m).phase, Phase::Done, "{user}");
        assert!(m.secret.is_none(), "{user}: source credentials wiped");
        let source = tern_testkit::imap::snapshot(s.dovecot.imap_addr(), user, password).unwrap();
        let account = s.store.account(&format!("{user}@{DOMAIN}")).await.unwrap();
        let tern = tern_testkit::imap::store_snapshot(s.store.as_ref(), account.id)
            .await
            .unwrap();
        let diff = tern_testkit::imap::diff(&source, &tern);
        assert!(diff.is_empty(), "{user}: {diff:#?}");
    }
    // The admin is told, in the postmaster mailbox and in the domain's history.
    let admin = s.inbox_subjects("admin").await;
    assert!(
        admin
            .iter()
            .any(|s| s == "example.test is live on Tern: migration complete"),
        "{admin:?}"
    );
    assert!(
        state
            .events
            .iter()
            .any(|e| e.text.contains("all 2 mailbox(es) migrated")),
        "{:?}",
        state.events
    );

    // Done stays done.
    watch.tick(quiet_over + 1000).await.unwrap();
    assert_eq!(golive::load(s.store.as_ref(), DOMAIN).await.unwrap(), state);
}

#[tokio::test]
async fn a_cutover_declared_by_hand_starts_the_deltas_and_cannot_be_declared_twice() {
    let Some(s) = setup("manual cutover").await else { return };
    let config = GoLiveConfig::default();
    let now = tern_migrate::now();
    let state = golive::declare_cutover(s.store.as_ref(), DOMAIN, "tern migrate cutover", &config, now)
        .await
        .unwrap();
    assert_eq!(state.stage, Stage::CutOver);
    assert_eq!(state.quiet_seconds, 72 * 3600, "at least the minimum quiet period");
    assert!(
        state.events[0].text.contains("delta passes for 2 mailbox(es)"),
        "{:?}",
        state.events
    );
    match golive::declare_cutover(s.store.as_ref(), DOMAIN, "tern migrate cutover", &config, now + 5).await {
        Err(CutoverError::Already { .. }) => {}
        other => panic!("expected Already, got {other:?}"),
    }
    s.store.create_domain("other.test").await.unwrap();
    match golive::declare_cutover(s.store.as_ref(), "other.test", "tern migrate cutover", &config, now).await {
        Err(CutoverError::NoMigrations(d)) => assert_eq!(d, "other.test"),
        other => panic!("expected NoMigrations, got {other:?}"),
    }
    // The watch does not look at the MX of a domain that went live.
    s.dns.set_mx(DOMAIN, &[(10, "mx.old.test")]);
    s.watch().tick(now + 1).await.unwrap();
    assert_eq!(
        golive::load(s.store.as_ref(), DOMAIN).await.unwrap().stage,
        Stage::CutOver
    );
}

/// A cutover declared by hand while the watch waits on a slow DNS answer stays declared:
/// the watch's check, which read the state before the cutover, must not write that
/// older state back over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_declared_during_a_slow_check_is_not_overwritten() {
    let Some(s) = setup("cutover during a check").await else {
        return;
    };
    // A DNS server that never answers: the check waits out the resolver's timeouts.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let watch = Watch::new(
        s.store.clone(),
        Lookup::server(silent.local_addr().unwrap()).unwrap(),
        HOST,
        vec![PUBLIC],
        GoLiveConfig::default(),
    );
    let now = tern_migrate::now();
    let check = tokio::spawn(async move { watch.tick(now).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!check.is_finished(), "the check is still waiting for DNS");
    golive::declare_cutover(
        s.store.as_ref(),
        DOMAIN,
        "tern migrate cutover",
        &GoLiveConfig::default(),
        now,
    )
    .await
    .unwrap();
    check.await.unwrap().unwrap();
    let state = golive::load(s.store.as_ref(), DOMAIN).await.unwrap();
    assert_eq!(state.stage, Stage::CutOver);
    assert_eq!(state.cutover, Some(now));
    assert_eq!(state.declared_by.as_deref(), Some("tern migrate cutover"));
    drop(silent);
}
