//! A migration test bench: a real Dovecot as the old provider, a fresh embedded Tern
//! store with one account, and helpers to run passes through the worker exactly as
//! `tern serve` does and to read back both sides independently.

#![allow(dead_code)]

use std::sync::Arc;

use tern_migrate::secrets::SecretBox;
use tern_migrate::source::{Credential, Preset, Protocol, SourceSettings, TlsMode};
use tern_migrate::state::{Pass, Progress, Request};
use tern_migrate::worker::{Worker, WorkerConfig, parse_progress, parse_request};
use tern_store::{AccountId, EmbeddedStore, MigrationSource, NewAccount, NewMigration, Store};
use tern_testkit::dovecot::{Dovecot, DovecotOptions};
use tern_testkit::imap::Snapshot;
use tern_testkit::migration_corpus::CorpusFolder;

pub const ADDRESS: &str = "alice@example.test";
pub const REMOTE_USER: &str = "alice";
pub const REMOTE_PASSWORD: &str = "old-secret";

pub struct Bench {
    pub dovecot: Dovecot,
    pub store: Arc<EmbeddedStore>,
    pub secrets: Arc<SecretBox>,
    pub account: AccountId,
    pub dir: tempfile::TempDir,
}

/// None (and a note on stderr) where Dovecot is not installed.
pub fn dovecot(options: DovecotOptions, test: &str) -> Option<Dovecot> {
    if Dovecot::skip_if_missing(test) {
        return None;
    }
    Some(options.start().expect("start Dovecot"))
}

/// The generated mailbox with `messages` messages and no large ones.
pub fn corpus_of(messages: usize) -> Vec<CorpusFolder> {
    tern_testkit::migration_corpus::mailbox(&tern_testkit::migration_corpus::CorpusSpec {
        messages,
        large_messages: 0,
        ..tern_testkit::migration_corpus::CorpusSpec::small()
    })
}

pub fn default_options() -> DovecotOptions {
    Dovecot::builder().users(&[(REMOTE_USER, REMOTE_PASSWORD)])
}

impl Bench {
    pub async fn new(dovecot: Dovecot) -> Bench {
        // RUST_LOG=tern_migrate=debug shows what the passes do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store")).unwrap();
        store.create_domain("example.test").await.unwrap();
        let account = store
            .create_account(NewAccount {
                address: ADDRESS.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .id;
        let secrets = SecretBox::open_or_create(&dir.path().join(SecretBox::FILE)).unwrap();
        Bench {
            dovecot,
            store: Arc::new(store),
            secrets: Arc::new(secrets),
            account,
            dir,
        }
    }

    /// Plain IMAP on loopback, each mailbox with its own password.
    pub fn imap_settings(&self) -> SourceSettings {
        let mut s = SourceSettings::preset(Preset::Generic, Protocol::Imap);
        s.host = "127.0.0.1".into();
        s.port = self.dovecot.imap_port();
        s.tls = TlsMode::None;
        s
    }

    pub async fn add_source(&self, settings: &SourceSettings, admin_password: Option<&str>) {
        self.store
            .put_migration_source(MigrationSource {
                name: "old".into(),
                settings: serde_json::to_string(settings).unwrap(),
                secret: admin_password.map(|p| self.secrets.seal(p)),
            })
            .await
            .unwrap();
    }

    pub async fn add_migration(&self, remote_user: &str, password: Option<&str>) {
        let secret = password.map(|p| {
            self.secrets.seal(
                &serde_json::to_string(&Credential::Password {
                    password: p.to_string(),
                })
                .unwrap(),
            )
        });
        self.store
            .put_migration(NewMigration {
                account: self.account,
                source: "old".into(),
                remote_user: remote_user.into(),
                secret,
                request: "{}".into(),
            })
            .await
            .unwrap();
    }

    /// The usual setup: plain IMAP source, alice with her own password.
    pub async fn with_imap_migration(self) -> Bench {
        let settings = self.imap_settings();
        self.add_source(&settings, None).await;
        self.add_migration(REMOTE_USER, Some(REMOTE_PASSWORD)).await;
        self
    }

    pub fn worker(&self) -> Worker {
        self.worker_with_limit(64 << 20)
    }

    /// A worker with this limits.max_message_size.
    pub fn worker_with_limit(&self, max_message_size: u64) -> Worker {
        Worker::new(
            self.store.clone(),
            WorkerConfig {
                secrets: self.secrets.clone(),
                max_message_size,
            },
        )
    }

    /// Asks for a pass (as `tern migrate start` does) and runs the worker until idle.
    pub async fn pass(&self, pass: Pass) -> Progress {
        self.request(|r| r.pass = pass).await;
        self.worker().run_until_idle().await.unwrap();
        self.progress().await
    }

    pub async fn request(&self, change: impl FnOnce(&mut Request)) {
        let m = self.store.migration(ADDRESS).await.unwrap();
        let mut r = parse_request(&m);
        r.seq += 1;
        change(&mut r);
        self.store
            .set_migration_request(m.id, &serde_json::to_string(&r).unwrap())
            .await
            .unwrap();
    }

    pub async fn progress(&self) -> Progress {
        parse_progress(&self.store.migration(ADDRESS).await.unwrap())
    }

    pub fn fill(&self, folders: &[CorpusFolder]) {
        self.dovecot.fill(REMOTE_USER, folders).expect("fill Dovecot");
    }

    pub fn source_snapshot(&self) -> Snapshot {
        self.dovecot.snapshot(REMOTE_USER).expect("snapshot Dovecot")
    }

    /// What Tern holds, read straight from the store (not from the migration's
    /// records), in the snapshot shape; empty folders are left out.
    pub async fn tern_snapshot(&self) -> Snapshot {
        tern_snapshot(&*self.store, self.account).await
    }
}

pub async fn tern_snapshot(store: &dyn Store, account: AccountId) -> Snapshot {
    tern_testkit::imap::store_snapshot(store, account)
        .await
        .expect("read Tern's store")
}

/// Source folders with no messages are left out, as Tern's snapshot does.
pub fn without_empty(mut s: Snapshot) -> Snapshot {
    s.folders.retain(|_, m| !m.is_empty());
    s
}

pub fn assert_same(expected: &Snapshot, actual: &Snapshot) {
    let diff = tern_testkit::imap::diff(&without_empty(expected.clone()), &without_empty(actual.clone()));
    assert!(diff.is_empty(), "Tern differs from the source:\n{}", diff.join("\n"));
}
