//! The admin console end to end: the `tern` binary (`tern quickstart`, whose first
//! account is an administrator) serving `/admin` on https, driven by headless Chromium
//! through Playwright (`tern_testkit::browser`), as an administrator would: the login
//! page on the way in, a user who is not an administrator turned away with how to become
//! one, every page of the navigation, a domain added and its keys rotated, its DNS
//! status, a user added (the password shown once logs in), a CSV file imported, a
//! password reset and a user disabled, a migration from a real Dovecot started (the
//! table refreshing by itself until the pass ends) and paused, queued mail retried and
//! deleted, an API token made, used and revoked. No page may log an error (beyond the
//! refusal it provokes), throw, or break its Content-Security-Policy.
//!
//! `screenshots` writes docs/screenshots/admin-*.png with `TERN_UPDATE_SCREENSHOTS=1`:
//!
//! ```text
//! TERN_UPDATE_SCREENSHOTS=1 cargo test -p tern --test console screenshots
//! ```

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Quickstart, Screenshots, add_migration, add_source, ok, tern};
use tern_store::{NewQueueEntry, Store};
use tern_testkit::browser::Output;
use tern_testkit::dovecot::Dovecot;
use tern_testkit::migration_corpus::{self, CorpusSpec};

const ADMIN: &str = "admin@example.test";
const BOB: &str = "bob@example.test";
const BOB_PASSWORD: &str = "bob-password-1234";
/// Bob's password at the old provider (Dovecot).
const BOB_OLD_PASSWORD: &str = "bob-old-secret";
const CAROL: &str = "carol@example.test";
/// A password the old provider refuses.
const CAROL_OLD_PASSWORD: &str = "carol-stale-secret";

/// The refusal of Bob, who is not an administrator: Chromium logs the 403 page as a
/// console error.
const FORBIDDEN: &str = "Failed to load resource: the server responded with a status of 403";

/// Whether a console error is one of the refusals a run provokes on purpose: the 403
/// page for Bob, and the logins meant to fail (an old password, a disabled account),
/// answered 401 by the login page.
fn provoked(error: &str) -> bool {
    error.contains(FORBIDDEN)
        || (error.contains("the server responded with a status of 401") && error.contains("/login:"))
}

/// A quickstart server with Bob (not an administrator) and Carol, their mailboxes to
/// migrate from a Dovecot holding a small corpus for Bob (Carol's password there is
/// wrong), and two messages waiting in the outbound queue.
struct Setup {
    server: Quickstart,
    _dovecot: Dovecot,
    scratch: tempfile::TempDir,
}

fn setup() -> Setup {
    let server = Quickstart::start();
    server.add_user(BOB, "Bob Baker", BOB_PASSWORD);
    server.add_user(CAROL, "Carol Chen", "carol-password-1234");
    let dovecot = Dovecot::builder()
        .users(&[("bob", BOB_OLD_PASSWORD)])
        .special_use(true)
        .start()
        .unwrap_or_else(|e| panic!("the console test migrates from Dovecot: {e}"));
    dovecot
        .fill("bob", &migration_corpus::mailbox(&CorpusSpec::small()))
        .unwrap();
    add_source(&server.data, dovecot.imap_port());
    add_migration(&server.data, BOB, "bob", BOB_OLD_PASSWORD);
    // Carol's old password is wrong: her passes fail at the login, as they do when a
    // user changed it at the old provider.
    add_migration(&server.data, CAROL, "carol", CAROL_OLD_PASSWORD);
    enqueue(&server.data.join("store"));
    Setup {
        server,
        _dovecot: dovecot,
        scratch: tempfile::tempdir().unwrap(),
    }
}

/// Two messages to a partner whose server keeps deferring them: due in an hour, so the
/// running server's delivery worker leaves them alone until the console says otherwise.
fn enqueue(store_dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = tern_store::EmbeddedStore::open(store_dir).unwrap();
        let now = chrono::Utc::now().timestamp();
        for (i, to) in ["anna@partner.test", "ben@partner.test"].iter().enumerate() {
            let envelope = serde_json::json!({
                "recipients": [{
                    "address": to,
                    "status": "pending",
                    "attempts": 3 + i,
                    "last_reply": "451 4.7.1 Greylisted, please try again later",
                    "remote_host": "mx.partner.test"
                }],
                "attempts": 3 + i,
                "submitted_by": ADMIN
            });
            let raw = format!(
                "From: admin@example.test\r\nTo: {to}\r\nSubject: Quarterly figures\r\n\r\nAttached below.\r\n"
            );
            store
                .enqueue(NewQueueEntry {
                    sender: ADMIN.into(),
                    raw: raw.into_bytes(),
                    envelope: envelope.to_string(),
                    next_attempt: now + 3600,
                })
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    });
}

/// Runs `tests/console/<script>`; panics with everything the run saw if it fails, or if
/// a page said more than the one refusal.
fn browse(setup: &Setup, script: &str, screenshots: Option<&Path>) -> Output {
    let server = &setup.server;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console").join(script);
    let base = format!("https://127.0.0.1:{}", server.port(8443));
    let csv = setup.scratch.path().join("users.csv");
    std::fs::write(
        &csv,
        "address,name,quota\ndan@example.test,Dan Dale,500MB\nerin@nowhere.test,Erin Eck,\n",
    )
    .unwrap();
    let env = [
        ("BASE", base.as_str()),
        ("ADMIN", ADMIN),
        ("ADMIN_PASSWORD", server.admin_password.as_str()),
        ("BOB", BOB),
        ("BOB_PASSWORD", BOB_PASSWORD),
        ("CSV", csv.to_str().unwrap()),
    ];
    server.browse(&path, &env, Duration::from_secs(300), screenshots, provoked)
}

/// Every page and action of the console, as an administrator uses them.
#[test]
fn an_administrator_runs_the_installation_from_the_console() {
    let setup = setup();
    let output = browse(&setup, "console.mjs", None);
    // The 403 page was met (and only it was refused).
    assert!(
        output.console.iter().any(|c| c.contains(FORBIDDEN)),
        "Bob was not refused: {:#?}",
        output.console_all
    );
    // What the console did is in the store, as the CLI sees it.
    let users = ok(&tern(&setup.server.data, &["user", "list"]));
    assert!(
        users.contains("carol@example.test") && users.contains("dan@example.test"),
        "{users}"
    );
    assert!(!users.contains("erin@nowhere.test"), "{users}");
    let domains = ok(&tern(&setup.server.data, &["domain", "list"]));
    assert!(domains.contains("branch.example.test"), "{domains}");
    // Passwords and tokens shown once never reached the log.
    let log = std::fs::read_to_string(setup.server.data.parent().unwrap().join("tern.log")).unwrap_or_default();
    assert!(
        log.contains("console: account created"),
        "the console's actions are logged"
    );
    let shown: Vec<&str> = output
        .steps
        .iter()
        .filter_map(|s| s.strip_prefix("shown once: "))
        .collect();
    assert!(
        shown.len() >= 4,
        "the passwords and the token the pages showed: {shown:?}"
    );
    for secret in shown
        .into_iter()
        .chain([BOB_PASSWORD, BOB_OLD_PASSWORD, CAROL_OLD_PASSWORD])
    {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

/// docs/screenshots/admin-*.png (see the top of this file).
#[test]
fn screenshots() {
    let setup = setup();
    let shots = Screenshots::new();
    let output = browse(&setup, "screenshots.mjs", Some(&shots.dir));
    assert_eq!(
        Screenshots::taken(&output),
        [
            "admin-dashboard.png",
            "admin-domains.png",
            "admin-domain.png",
            "admin-dns.png",
            "admin-users.png",
            "admin-migrations.png",
            "admin-queue.png",
            "admin-health.png",
            "admin-tokens.png",
        ]
    );
}
