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
        .append(inbox.id, vec![NewMessage::new(&b"Subject: delivered to Tern\r\n\r\nhi\r\n"[..])])
        .await
        .unwrap();

    // At the source, 500 messages get \Seen and a keyword, including messages 1 and 2.
    let mut client = tern_testkit::imap::Client::connect(bench.dovecot.imap_addr()).unwrap();
    client.login(REMOTE_USER, REMOTE_PASSWORD).unwrap();
    client.ok("SELECT INBOX").unwrap();
    client.ok("UID STORE 1:500 +FLAGS.SILENT (\\Seen $Done)").unwrap();
    client.logout();

    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(progress.pass_copied, 0, "a deleted message is not brought back: {progress:?}");
    // 500 changed at the source; message 1 was changed by the user (theirs wins) and
    // message 2 is gone in Tern.
    assert_eq!(progress.flag_updates, 498, "{progress:?}");
    let by_uid = |uid| {
        let store = bench.store.clone();
        async move { store.messages_by_uid(inbox.id, &[uid]).await.unwrap().pop() }
    };
    let first = by_uid(1).await.unwrap();
    assert!(first.flags.system.contains(SystemFlags::FLAGGED) && !first.flags.is_seen(), "{first:?}");
    assert!(by_uid(2).await.is_none());
    let third = by_uid(3).await.unwrap();
    assert!(third.flags.is_seen() && third.flags.keywords == vec!["$Done".to_string()], "{third:?}");
    assert_eq!(bench.store.mailbox(bench.account, "INBOX").await.unwrap().messages, 600);
}
