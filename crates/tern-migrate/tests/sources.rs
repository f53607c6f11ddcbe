//! Ways into the old provider: TLS (implicit and STARTTLS), admin logins in both
//! forms, wrong passwords, POP3 with its UIDLs; and steering a pass: rate caps, pause,
//! resume, schedule windows.

mod common;

use common::*;
use tern_migrate::schedule::{self, Schedule};
use tern_migrate::source::{AuthMethod, Protocol, TlsMode};
use tern_migrate::state::{Pass, Phase};
use tern_store::Store;
use tern_testkit::migration_corpus::{self, CorpusSpec};

fn corpus() -> Vec<tern_testkit::migration_corpus::CorpusFolder> {
    corpus_of(40)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn implicit_tls_and_starttls_with_a_private_ca() {
    let Some(dovecot) = dovecot(default_options().tls(true), "tls") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    bench.fill(&corpus());
    let ca = bench.dir.path().join("ca.pem");
    std::fs::write(&ca, bench.dovecot.cert_pem().unwrap()).unwrap();
    for (tls, port) in [
        (TlsMode::Implicit, bench.dovecot.imaps_port().unwrap()),
        (TlsMode::Starttls, bench.dovecot.imap_port()),
    ] {
        let mut s = bench.imap_settings();
        s.host = "localhost".into();
        s.tls = tls;
        s.port = port;
        s.ca_file = Some(ca.display().to_string());
        bench.add_source(&s, None).await;
        bench.add_migration(REMOTE_USER, Some(REMOTE_PASSWORD)).await;
        let progress = bench.pass(Pass::Full).await;
        assert_eq!(progress.phase, Phase::Passed, "{tls:?}: {progress:?}");
    }
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);

    // Without the CA the certificate is refused, and the error says what to do.
    let mut s = bench.imap_settings();
    s.host = "localhost".into();
    s.tls = TlsMode::Implicit;
    s.port = bench.dovecot.imaps_port().unwrap();
    bench.add_source(&s, None).await;
    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(progress.phase, Phase::Failed);
    let error = progress.last_error.unwrap();
    assert!(error.contains("TLS") && error.contains("--ca-file"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_logins_dovecot_master_form_and_plain_authorization_identity() {
    let options = default_options().master_user("admin", "admin-secret");
    let Some(dovecot) = dovecot(options, "admin_login") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    bench.fill(&corpus());
    for auth in [AuthMethod::Login, AuthMethod::Plain] {
        let mut s = bench.imap_settings();
        s.auth = auth;
        s.admin_user = Some("admin".into());
        bench.add_source(&s, Some("admin-secret")).await;
        // No password of alice's own: the admin opens her mailbox.
        bench.add_migration(REMOTE_USER, None).await;
        let progress = bench.pass(Pass::Full).await;
        assert_eq!(progress.phase, Phase::Passed, "{auth:?}: {progress:?}");
    }
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_fails_the_pass_with_a_clear_error_and_copies_nothing() {
    let Some(dovecot) = dovecot(default_options(), "wrong_password") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    bench.add_source(&bench.imap_settings(), None).await;
    bench.add_migration(REMOTE_USER, Some("not-the-password")).await;
    let progress = bench.pass(Pass::Full).await;
    assert_eq!(progress.phase, Phase::Failed);
    let error = progress.last_error.unwrap();
    assert!(
        error.contains("refused the login") && !error.contains("not-the-password"),
        "{error}"
    );
}

/// The UIDLs Dovecot's POP3 gives, read over a raw socket.
fn pop3_uidls(port: u16) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    let mut send = |cmd: &str, reader: &mut BufReader<std::net::TcpStream>| {
        writer.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        assert!(l.starts_with("+OK"), "{cmd}: {l}");
    };
    reader.read_line(&mut line).unwrap();
    send(&format!("USER {REMOTE_USER}"), &mut reader);
    send(&format!("PASS {REMOTE_PASSWORD}"), &mut reader);
    send("UIDL", &mut reader);
    let mut out = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim_end() == "." {
            break;
        }
        out.push(line.split_whitespace().nth(1).unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pop3_source_fills_inbox_and_keeps_every_uidl() {
    if !tern_testkit::dovecot::Dovecot::pop3_installed() {
        eprintln!("skipped: dovecot-pop3d is not installed");
        return;
    }
    let Some(dovecot) = dovecot(default_options(), "pop3") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    let inbox_only: Vec<_> = corpus().into_iter().filter(|f| f.name == "INBOX").collect();
    bench.fill(&inbox_only);
    let mut s = bench.imap_settings();
    s.protocol = Protocol::Pop3;
    s.port = bench.dovecot.pop3_port().unwrap();
    bench.add_source(&s, None).await;
    bench.add_migration(REMOTE_USER, Some(REMOTE_PASSWORD)).await;
    let progress = bench.pass(Pass::Full).await;
    let count = inbox_only[0].messages.len() as u64;
    assert_eq!(
        (progress.phase, progress.pass_copied),
        (Phase::Passed, count),
        "{progress:?}"
    );

    // Same bytes as the source serves (flags aside: POP3 has none).
    let source = bench.source_snapshot();
    let tern = bench.tern_snapshot().await;
    let mut a: Vec<_> = source.folders["INBOX"].iter().map(|m| m.raw.clone()).collect();
    let mut b: Vec<_> = tern.folders["INBOX"].iter().map(|m| m.raw.clone()).collect();
    a.sort();
    b.sort();
    assert!(a == b, "the maildrop's bytes");
    // Every message keeps its UIDL, so POP3 clients see nothing new after the switch.
    let inbox = bench.store.mailbox(bench.account, "INBOX").await.unwrap();
    let mut kept: Vec<String> = bench
        .store
        .pop3_uidls(inbox.id)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, u)| u)
        .collect();
    let mut expected = pop3_uidls(bench.dovecot.pop3_port().unwrap());
    kept.sort();
    expected.sort();
    assert_eq!(kept, expected);
    // A second pass copies nothing.
    assert_eq!(bench.pass(Pass::Delta).await.pass_copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_capped_pass_pauses_resumes_and_ends_exact() {
    let Some(dovecot) = dovecot(default_options(), "pause_resume") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    // About 500 KB: some 12 s at the cap below.
    let folders = corpus_of(80);
    bench.fill(&folders);
    let total: u64 = folders.iter().map(|f| f.messages.len() as u64).sum();
    // A per-mailbox cap slow enough to pause it halfway.
    let slow = Schedule {
        mailbox_max_rate: Some(40_000),
        ..Schedule::default()
    };
    bench
        .store
        .set_setting(schedule::SETTING, Some(&serde_json::to_string(&slow).unwrap()))
        .await
        .unwrap();
    bench.request(|r| r.pass = Pass::Full).await;
    let worker = tokio::spawn(bench.worker().run_until_idle());
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let m = bench.store.migration(ADDRESS).await.unwrap();
    let mut r = tern_migrate::worker::parse_request(&m);
    r.paused = true;
    bench
        .store
        .set_migration_request(m.id, &serde_json::to_string(&r).unwrap())
        .await
        .unwrap();
    worker.await.unwrap().unwrap();
    let paused = bench.progress().await;
    assert_eq!(paused.phase, Phase::Paused, "{paused:?}");
    assert!(paused.pass_copied > 0 && paused.pass_copied < total, "{paused:?}");

    bench.store.set_setting(schedule::SETTING, None).await.unwrap();
    r.paused = false;
    bench
        .store
        .set_migration_request(m.id, &serde_json::to_string(&r).unwrap())
        .await
        .unwrap();
    bench.worker().run_until_idle().await.unwrap();
    let done = bench.progress().await;
    assert_eq!(done.phase, Phase::Passed, "{done:?}");
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prestage_waits_for_the_schedule_window_but_delta_does_not() {
    let Some(dovecot) = dovecot(default_options(), "windows") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    bench.fill(&corpus());
    // A window that is closed now: the hour that ended an hour ago, every day.
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::hours(2)).format("%H:00").to_string();
    let end = (now - chrono::Duration::hours(1)).format("%H:00").to_string();
    let closed = Schedule {
        windows: vec![format!("Daily {start}-{end}")],
        ..Schedule::default()
    };
    assert!(!closed.is_open(now));
    bench
        .store
        .set_setting(schedule::SETTING, Some(&serde_json::to_string(&closed).unwrap()))
        .await
        .unwrap();
    let waiting = bench.pass(Pass::Prestage).await;
    assert_eq!(
        (waiting.phase, waiting.pass_copied),
        (Phase::WaitingWindow, 0),
        "{waiting:?}"
    );
    let delta = bench.pass(Pass::Delta).await;
    assert_eq!(delta.phase, Phase::Passed, "{delta:?}");
    assert!(delta.pass_copied > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_download_cap_stops_the_pass_until_tomorrow() {
    let Some(dovecot) = dovecot(default_options(), "daily_cap") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    bench.fill(&corpus());
    let mut s = bench.imap_settings();
    // Gmail's preset sets 2.4 GB; a small cap shows the behaviour.
    s.daily_bytes = Some(50_000);
    s.connections = 1;
    bench.add_source(&s, None).await;
    bench.add_migration(REMOTE_USER, Some(REMOTE_PASSWORD)).await;
    let progress = bench.pass(Pass::Full).await;
    assert_eq!(progress.phase, Phase::WaitingCap, "{progress:?}");
    assert!(progress.pass_copied > 0 && progress.pass_copied < 40, "{progress:?}");
    // Another run today does not start it again.
    bench.worker().run_until_idle().await.unwrap();
    assert_eq!(bench.progress().await.phase, Phase::WaitingCap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_mailboxes_migrate_in_parallel_each_to_its_own_account() {
    let users = [("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")];
    let Some(dovecot) = dovecot(tern_testkit::dovecot::Dovecot::builder().users(&users), "parallel") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    bench.add_source(&bench.imap_settings(), None).await;
    let mut accounts = Vec::new();
    for (i, (user, password)) in users.iter().enumerate() {
        let folders = migration_corpus::mailbox(&CorpusSpec {
            seed: 40 + i as u64,
            messages: 30,
            large_messages: 0,
            ..CorpusSpec::small()
        });
        bench.dovecot.fill(user, &folders).unwrap();
        let address = format!("{user}@example.test");
        let account = match bench.store.account(&address).await {
            Ok(a) => a.id,
            Err(_) => {
                bench
                    .store
                    .create_account(tern_store::NewAccount {
                        address: address.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .id
            }
        };
        let sealed = bench.secrets.seal(
            &serde_json::to_string(&tern_migrate::source::Credential::Password {
                password: password.to_string(),
            })
            .unwrap(),
        );
        bench
            .store
            .put_migration(tern_store::NewMigration {
                account,
                source: "old".into(),
                remote_user: user.to_string(),
                secret: Some(sealed),
                request: serde_json::to_string(&tern_migrate::state::Request {
                    seq: 1,
                    pass: Pass::Full,
                    ..Default::default()
                })
                .unwrap(),
            })
            .await
            .unwrap();
        accounts.push((user, account));
    }
    bench.worker().run_until_idle().await.unwrap();
    for (user, account) in accounts {
        let source = bench.dovecot.snapshot(user).unwrap();
        assert_same(&source, &tern_snapshot(&*bench.store, account).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pop3_over_implicit_tls_and_stls() {
    if !tern_testkit::dovecot::Dovecot::pop3_installed() {
        eprintln!("skipped: dovecot-pop3d is not installed");
        return;
    }
    let Some(dovecot) = dovecot(default_options().tls(true), "pop3_tls") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    let inbox_only: Vec<_> = corpus().into_iter().filter(|f| f.name == "INBOX").collect();
    bench.fill(&inbox_only);
    let ca = bench.dir.path().join("ca.pem");
    std::fs::write(&ca, bench.dovecot.cert_pem().unwrap()).unwrap();
    for (tls, port) in [
        (TlsMode::Implicit, bench.dovecot.pop3s_port().unwrap()),
        (TlsMode::Starttls, bench.dovecot.pop3_port().unwrap()),
    ] {
        let mut s = bench.imap_settings();
        s.protocol = Protocol::Pop3;
        s.host = "localhost".into();
        s.tls = tls;
        s.port = port;
        s.ca_file = Some(ca.display().to_string());
        bench.add_source(&s, None).await;
        bench.add_migration(REMOTE_USER, Some(REMOTE_PASSWORD)).await;
        let progress = bench.pass(Pass::Full).await;
        assert_eq!(progress.phase, Phase::Passed, "{tls:?}: {progress:?}");
    }
    let inbox = bench.store.mailbox(bench.account, "INBOX").await.unwrap();
    assert_eq!(inbox.messages as usize, inbox_only[0].messages.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_source_fails_fast_and_is_retried_by_itself() {
    let Some(dovecot) = dovecot(default_options(), "unreachable") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    bench.fill(&corpus());
    // Nothing listens on this port (a socket bound and closed at once).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = bench.imap_settings();
    s.port = closed;
    bench.add_source(&s, None).await;
    bench.add_migration(REMOTE_USER, Some(REMOTE_PASSWORD)).await;
    let started = std::time::Instant::now();
    let failed = bench.pass(Pass::Full).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "no long backoff"
    );
    assert_eq!(failed.phase, Phase::Failed, "{failed:?}");
    assert!(
        failed.last_error.as_deref().unwrap_or("").contains("cannot connect"),
        "{failed:?}"
    );
    let retry_at = failed.retry_at.expect("a retry is planned");
    assert!(retry_at > tern_migrate::now() + 60);
    // Not due yet: a worker leaves it alone.
    bench.worker().run_until_idle().await.unwrap();
    assert_eq!(bench.progress().await.retry_at, Some(retry_at));

    // The source is back (the admin fixed the port) and the retry falls due: the same
    // pass runs without anyone asking again.
    bench.add_source(&bench.imap_settings(), None).await;
    let m = bench.store.migration(ADDRESS).await.unwrap();
    let mut due = failed.clone();
    due.retry_at = Some(tern_migrate::now() - 1);
    bench
        .store
        .set_migration_progress(m.id, &serde_json::to_string(&due).unwrap())
        .await
        .unwrap();
    bench.worker().run_until_idle().await.unwrap();
    let progress = bench.progress().await;
    assert_eq!(
        (progress.phase, progress.retry_at),
        (Phase::Passed, None),
        "{progress:?}"
    );
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);
}
