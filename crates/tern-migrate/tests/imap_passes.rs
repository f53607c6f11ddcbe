//! IMAP migration passes against a real Dovecot: full pass, deltas, flag changes,
//! UIDVALIDITY reset, and a user working in Tern meanwhile.

mod common;

use common::*;
use tern_migrate::state::{Pass, Phase};
use tern_migrate::worker::login_for;
use tern_store::{Expunge, FlagOp, Flags, NewMessage, Store, SystemFlags};
use tern_testkit::migration_corpus::{self, CorpusSpec};

async fn verify(bench: &Bench) -> tern_migrate::verify::Verdict {
    let m = bench.store.migration(ADDRESS).await.unwrap();
    let source = bench.store.migration_sources().await.unwrap().remove(0);
    let settings = serde_json::from_str(&source.settings).unwrap();
    let login = login_for(&bench.secrets, &m, &source, &settings).unwrap();
    tern_migrate::verify::verify(&*bench.store, bench.account, &settings, &login, None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_pass_copies_everything_exactly_then_deltas_copy_only_what_is_new() {
    let Some(dovecot) = dovecot(default_options().special_use(true), "full_pass") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    let corpus = migration_corpus::mailbox(&CorpusSpec::small());
    bench.fill(&corpus);
    let source = bench.source_snapshot();

    let progress = bench.pass(Pass::Full).await;
    assert_eq!(progress.phase, Phase::Passed, "{progress:?}");
    assert_eq!(progress.errors, 0, "{:?}", progress.recent_errors);
    let total = source.message_count() as u64;
    assert_eq!(progress.pass_copied, total);
    assert_same(&source, &bench.tern_snapshot().await);
    let verdict = verify(&bench).await;
    assert!(verdict.identical(), "{}", verdict.text());

    // Nothing new: nothing copied, nothing changed.
    let progress = bench.pass(Pass::Delta).await;
    assert_eq!((progress.pass_copied, progress.flag_updates), (0, 0), "{progress:?}");

    // 100 new messages at the source, in two folders: exactly those come over.
    let mut more = migration_corpus::mailbox(&CorpusSpec {
        seed: 99,
        messages: 100,
        folders: 2,
        large_messages: 0,
        ..CorpusSpec::small()
    });
    more.retain(|f| !f.messages.is_empty());
    bench.fill(&more);
    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(progress.pass_copied, 100, "{progress:?}");
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flag_changes_at_the_source_reach_messages_the_user_left_alone() {
    let Some(dovecot) = dovecot(default_options(), "flag_changes") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    let folders = vec![tern_testkit::migration_corpus::CorpusFolder {
        name: "INBOX".into(),
        special_use: None,
        messages: tern_testkit::corpus::messages(5, 600, 2000)
            .into_iter()
            .enumerate()
            .map(|(i, raw)| tern_testkit::migration_corpus::CorpusMessage {
                raw,
                flags: Vec::new(),
                keywords: Vec::new(),
                internal_date: 1_600_000_000 + i as i64 * 3600,
                tz_offset_minutes: 60,
            })
            .collect(),
    }];
    bench.fill(&folders);
    let progress = bench.pass(Pass::Full).await;
    assert_eq!(progress.pass_copied, 600);

    // The user flags message 1 in Tern, and deletes message 2.
    let inbox = bench.store.mailbox(bench.account, "INBOX").await.unwrap();
    bench
        .store
        .store_flags(inbox.id, &[1], FlagOp::Add, &Flags::system(SystemFlags::FLAGGED), None)
        .await
        .unwrap();
    bench.store.expunge(inbox.id, Expunge::Uids(vec![2])).await.unwrap();
    // New mail arrives in Tern meanwhile.
    bench
        .store
        .append(
            inbox.id,
            vec![NewMessage::new(&b"Subject: delivered to Tern\r\n\r\nhi\r\n"[..])],
        )
        .await
        .unwrap();

    // At the source, 500 messages get \Seen and a keyword, including messages 1 and 2.
    let mut client = tern_testkit::imap::Client::connect(bench.dovecot.imap_addr()).unwrap();
    client.login(REMOTE_USER, REMOTE_PASSWORD).unwrap();
    client.ok("SELECT INBOX").unwrap();
    client.ok("UID STORE 1:500 +FLAGS.SILENT (\\Seen $Done)").unwrap();
    client.logout();

    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(
        progress.pass_copied, 0,
        "a deleted message is not brought back: {progress:?}"
    );
    // 500 changed at the source; message 1 was changed by the user (theirs wins) and
    // message 2 is gone in Tern.
    assert_eq!(progress.flag_updates, 498, "{progress:?}");
    let by_uid = |uid| {
        let store = bench.store.clone();
        async move { store.messages_by_uid(inbox.id, &[uid]).await.unwrap().pop() }
    };
    let first = by_uid(1).await.unwrap();
    assert!(
        first.flags.system.contains(SystemFlags::FLAGGED) && !first.flags.is_seen(),
        "{first:?}"
    );
    assert!(by_uid(2).await.is_none());
    let third = by_uid(3).await.unwrap();
    assert!(
        third.flags.is_seen() && third.flags.keywords == vec!["$Done".to_string()],
        "{third:?}"
    );
    assert_eq!(bench.store.mailbox(bench.account, "INBOX").await.unwrap().messages, 600);
}

/// One folder of `n` small messages dated an hour apart.
fn plain_folder(name: &str, seed: u64, n: usize) -> tern_testkit::migration_corpus::CorpusFolder {
    tern_testkit::migration_corpus::CorpusFolder {
        name: name.into(),
        special_use: None,
        messages: tern_testkit::corpus::messages(seed, n, 1500)
            .into_iter()
            .enumerate()
            .map(|(i, raw)| tern_testkit::migration_corpus::CorpusMessage {
                raw,
                flags: if i % 2 == 0 { vec!["\\Seen".into()] } else { Vec::new() },
                keywords: Vec::new(),
                internal_date: 1_500_000_000 + i as i64 * 3600,
                tz_offset_minutes: 0,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_uidvalidity_reset_at_the_source_is_rematched_not_copied_again() {
    let Some(dovecot) = dovecot(default_options(), "uidvalidity_reset") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    let work = plain_folder("Work", 11, 40);
    bench.fill(std::slice::from_ref(&work));
    assert_eq!(bench.pass(Pass::Full).await.pass_copied, 40);

    // The provider restores the folder from backup: same messages, new UIDVALIDITY,
    // plus two that arrived since.
    let mut client = tern_testkit::imap::Client::connect(bench.dovecot.imap_addr()).unwrap();
    client.login(REMOTE_USER, REMOTE_PASSWORD).unwrap();
    client.ok("DELETE Work").unwrap();
    client.logout();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // UIDVALIDITY is a time
    let mut restored = work.clone();
    restored.messages.extend(plain_folder("Work", 12, 2).messages);
    bench.fill(std::slice::from_ref(&restored));

    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(progress.pass_copied, 2, "only the two new ones: {progress:?}");
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);
    // And the next delta knows the new UIDVALIDITY.
    assert_eq!(bench.pass(Pass::Delta).await.pass_copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_working_in_tern_during_a_pass_keeps_everything_they_did() {
    let Some(dovecot) = dovecot(default_options(), "user_during_pass") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    let corpus = corpus_of(400);
    bench.fill(&corpus);
    bench.request(|r| r.pass = Pass::Full).await;
    let worker = tokio::spawn(bench.worker().run_until_idle());
    // Meanwhile: mail keeps arriving in Tern, and the user files and flags.
    let inbox = bench.store.mailbox(bench.account, "INBOX").await.unwrap();
    let personal = bench
        .store
        .create_mailbox(bench.account, "Personal", None)
        .await
        .unwrap();
    let mut delivered = 0;
    for i in 0..30 {
        bench
            .store
            .append(
                inbox.id,
                vec![NewMessage::new(format!(
                    "Subject: new mail {i}\r\nMessage-ID: <n{i}@tern>\r\n\r\nbody {i}\r\n"
                ))],
            )
            .await
            .unwrap();
        delivered += 1;
        let uids: Vec<u32> = bench
            .store
            .messages(inbox.id)
            .await
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .take(3)
            .collect();
        if i % 10 == 5 && !uids.is_empty() {
            bench
                .store
                .move_messages(inbox.id, &uids[..1], personal.id)
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker.await.unwrap().unwrap();
    let progress = bench.progress().await;
    assert_eq!(progress.errors, 0, "{:?}", progress.recent_errors);

    // Every source message is in Tern exactly once (in INBOX or where the user moved it),
    // and every message delivered to Tern is still there.
    let tern = bench.tern_snapshot().await;
    let source = bench.source_snapshot();
    let mut source_bodies: Vec<&Vec<u8>> = source.folders.values().flatten().map(|m| &m.raw).collect();
    let mut tern_bodies: Vec<&Vec<u8>> = tern
        .folders
        .values()
        .flatten()
        .map(|m| &m.raw)
        .filter(|raw| !raw.starts_with(b"Subject: new mail"))
        .collect();
    source_bodies.sort();
    tern_bodies.sort();
    assert_eq!(source_bodies.len(), tern_bodies.len(), "no loss, no duplicate");
    assert!(source_bodies == tern_bodies);
    let kept = tern
        .folders
        .values()
        .flatten()
        .filter(|m| m.raw.starts_with(b"Subject: new mail"))
        .count();
    assert_eq!(kept, delivered);
    // A delta afterwards brings nothing back that the user moved away.
    assert_eq!(bench.pass(Pass::Delta).await.pass_copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_prefix_and_localized_folder_names_map_to_terns_folders() {
    // A Courier-style server: INBOX. prefix, '.' separator, no SPECIAL-USE.
    let Some(dovecot) = dovecot(default_options().namespace("INBOX.", '.'), "namespace_prefix") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    let folders = vec![
        plain_folder("INBOX", 1, 3),
        plain_folder("Sent Items", 2, 2),
        plain_folder("Gelöschte Elemente", 3, 2),
        plain_folder("Käse & Brot/Ünïcode", 4, 2),
        plain_folder("Folder With Space", 5, 1),
    ];
    bench.fill(&folders);
    let progress = bench.pass(Pass::Full).await;
    assert_eq!(progress.pass_copied, 10, "{progress:?}");
    let tern = bench.tern_snapshot().await;
    let counts: Vec<(String, usize)> = tern.folders.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    assert_eq!(
        counts,
        vec![
            ("Folder With Space".to_string(), 1),
            ("INBOX".to_string(), 3),
            ("Käse & Brot/Ünïcode".to_string(), 2),
            ("Sent".to_string(), 2),
            ("Trash".to_string(), 2),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn date_limits_and_the_size_limit_skip_with_a_reason() {
    let Some(dovecot) = dovecot(default_options(), "skips") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    let mut folder = plain_folder("INBOX", 8, 10); // 1_500_000_000 + i hours
    folder.messages[9].raw = {
        let mut big = b"Subject: big\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b"0123456789abcdef\r\n".as_slice(), 5000).flatten());
        big
    };
    bench.fill(std::slice::from_ref(&folder));
    // Newer than the 5th message only, and nothing over 64 KB.
    let since = 1_500_000_000 + 4 * 3600;
    bench
        .request(|r| {
            r.pass = Pass::Prestage;
            r.since = Some(since);
        })
        .await;
    bench.worker_with_limit(64 * 1024).run_until_idle().await.unwrap();
    let progress = bench.progress().await;
    assert_eq!((progress.pass_copied, progress.skipped), (5, 5), "{progress:?}");
    let m = bench.store.migration(ADDRESS).await.unwrap();
    let report = tern_migrate::report::Report::load(&*bench.store, &m).await.unwrap();
    let text = report.text();
    assert!(text.contains("skipped 4: older than --since"), "{text}");
    assert!(
        text.contains("skipped 1: larger than limits.max_message_size (65536 bytes)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletions_at_the_source_are_propagated_only_when_asked_and_never_after_cutover() {
    let Some(dovecot) = dovecot(default_options(), "deletions") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    bench.fill(&[plain_folder("INBOX", 21, 10)]);
    assert_eq!(bench.pass(Pass::Full).await.pass_copied, 10);
    let mut client = tern_testkit::imap::Client::connect(bench.dovecot.imap_addr()).unwrap();
    client.login(REMOTE_USER, REMOTE_PASSWORD).unwrap();
    client.ok("SELECT INBOX").unwrap();
    client.ok("UID STORE 1:3 +FLAGS.SILENT (\\Deleted)").unwrap();
    client.ok("EXPUNGE").unwrap();
    client.logout();
    let inbox = bench.store.mailbox(bench.account, "INBOX").await.unwrap();

    // A plain delta leaves them.
    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(progress.deleted, 0);
    assert_eq!(bench.store.mailbox_by_id(inbox.id).await.unwrap().messages, 10);
    // After cutover, even when asked, nothing is deleted.
    bench
        .request(|r| {
            r.pass = Pass::Delta;
            r.propagate_deletions = true;
            r.cutover = Some(1);
        })
        .await;
    bench.worker().run_until_idle().await.unwrap();
    assert_eq!(bench.store.mailbox_by_id(inbox.id).await.unwrap().messages, 10);
    // Before cutover, when asked: the three go.
    bench
        .request(|r| {
            r.pass = Pass::Delta;
            r.propagate_deletions = true;
            r.cutover = None;
        })
        .await;
    bench.worker().run_until_idle().await.unwrap();
    assert_eq!(bench.progress().await.deleted, 3);
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_under_several_labels_takes_its_bytes_once() {
    let Some(dovecot) = dovecot(default_options(), "labels_once") else {
        return;
    };
    let bench = Bench::new(dovecot).await.with_imap_migration().await;
    // Gmail shows one message under each of its labels: the same bytes in two folders.
    let mut big = b"Subject: quarterly report\r\nMessage-ID: <q3@example.test>\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b"The numbers, line after line.\r\n".as_slice(), 40_000).flatten());
    let labelled = |name: &str| {
        let mut f = plain_folder(name, 31, 1);
        f.messages[0].raw = big.clone();
        f
    };
    bench.fill(&[labelled("Finance"), labelled("Reports")]);
    assert_eq!(bench.pass(Pass::Full).await.pass_copied, 2);
    let blob_files = walk_files(&bench.dir.path().join("store/blobs"))
        .into_iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.len() as usize == big.len())
                .unwrap_or(false)
        })
        .count();
    assert_eq!(blob_files, 1, "one copy of the 1.2 MB body on disk");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
