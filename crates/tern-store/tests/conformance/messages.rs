//! Messages: append, flags, copy, move, expunge, CONDSTORE/QRESYNC, metadata, search.

use tern_store::metadata::PartChildren;
use tern_store::{Expunge, FlagOp, Flags, NewAccount, NewMessage, StoreError, SystemFlags, TextField};
use tern_testkit::corpus;

use super::{Fixture, with_alice};

fn msg(subject: &str, body: &str) -> NewMessage {
    NewMessage::new(format!(
        "From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    ))
}

pub async fn pop3_uidls_from_a_migration_are_kept_until_expunge(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let mut old = msg("old", "from the old server");
    old.pop3_uidl = Some("UID123-1163719583".into());
    let new = msg("new", "delivered here");
    let appended = f.store.append(inbox.id, vec![old, new]).await.unwrap();
    assert_eq!(
        f.store.pop3_uidls(inbox.id).await.unwrap(),
        vec![(appended[0].uid, "UID123-1163719583".to_string())]
    );
    f.store
        .expunge(inbox.id, Expunge::Uids(vec![appended[0].uid]))
        .await
        .unwrap();
    assert!(f.store.pop3_uidls(inbox.id).await.unwrap().is_empty());
}

pub async fn append_is_byte_exact(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    // Bare LF, NUL, 8-bit, no trailing newline, and a generated corpus.
    let mut samples: Vec<Vec<u8>> = vec![
        b"Subject: lf only\n\nline\nline\n".to_vec(),
        b"Subject: nul\r\n\r\na\x00b\xff\xfe\r\n".to_vec(),
        "Subject: Grüße\r\n\r\nÄpfel und Öl".as_bytes().to_vec(),
    ];
    samples.extend(corpus::messages(7, 20, 4096));
    // Large bodies take another path in some backends (files instead of rows).
    samples.extend(corpus::messages(8, 2, 700_000));
    let appended = f
        .store
        .append(inbox.id, samples.iter().cloned().map(NewMessage::new).collect())
        .await
        .unwrap();
    // The batch read gives the same bytes, in UID order, and skips UIDs that do not exist.
    let mut uids: Vec<u32> = appended.iter().map(|a| a.uid).collect();
    uids.push(999_999);
    let batch = f.store.read_messages(inbox.id, &uids).await.unwrap();
    assert_eq!(batch.len(), samples.len());
    for ((uid, bytes), (a, raw)) in batch.iter().zip(appended.iter().zip(&samples)) {
        assert_eq!((uid, bytes), (&a.uid, raw));
    }
    let envelopes = f.store.envelopes(inbox.id, &uids).await.unwrap();
    let metadata = f.store.metadata(inbox.id, &uids).await.unwrap();
    assert_eq!(envelopes.len(), metadata.len());
    for ((u1, e), (u2, m)) in envelopes.iter().zip(&metadata) {
        assert_eq!((u1, e), (u2, &m.envelope));
    }
    for (a, raw) in appended.iter().zip(&samples) {
        assert_eq!(&f.store.read_message(inbox.id, a.uid).await.unwrap(), raw);
        let path = f.store.message_file(inbox.id, a.uid).await.unwrap();
        if let Some(path) = path {
            assert_eq!(&std::fs::read(path).unwrap(), raw);
        }
    }
    let m = f.store.mailbox_by_id(inbox.id).await.unwrap();
    assert_eq!(m.messages as usize, samples.len());
    assert_eq!(m.size, samples.iter().map(|s| s.len() as u64).sum::<u64>());
    assert!(matches!(
        f.store.append(inbox.id, vec![NewMessage::new(Vec::new())]).await,
        Err(StoreError::EmptyMessage)
    ));
}

pub async fn append_keeps_flags_and_dates(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let mut m = msg("flags", "x");
    m.flags = Flags::from_names(["\\Seen", "\\Flagged", "$Forwarded", "Work", "work"]);
    m.internal_date = Some(1_000_000_000);
    let a = f.store.append(inbox.id, vec![m]).await.unwrap();
    let s = &f.store.messages(inbox.id).await.unwrap()[0];
    assert_eq!(s.uid, a[0].uid);
    assert_eq!(s.internal_date, 1_000_000_000);
    assert_eq!(s.flags.names(), ["\\Seen", "\\Flagged", "$Forwarded", "Work"]);
    assert!(s.save_date > 1_700_000_000);
    let status = f.store.mailbox_by_id(inbox.id).await.unwrap();
    assert_eq!((status.messages, status.unseen), (1, 0));
}

pub async fn multiappend_is_atomic(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let r = f
        .store
        .append(inbox.id, vec![msg("a", "a"), NewMessage::new(Vec::new())])
        .await;
    assert!(r.is_err());
    let m = f.store.mailbox_by_id(inbox.id).await.unwrap();
    assert_eq!((m.messages, m.uidnext), (0, 1), "a failed multiappend leaves no trace");
}

pub async fn uids_and_modseqs_increase(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let mut last_uid = 0;
    let mut last_modseq = inbox.highest_modseq;
    for i in 0..5 {
        let a = f
            .store
            .append(inbox.id, vec![msg(&format!("m{i}"), "x")])
            .await
            .unwrap()[0];
        assert!(a.uid > last_uid && a.modseq > last_modseq);
        assert_eq!(a.uidvalidity, inbox.uidvalidity);
        (last_uid, last_modseq) = (a.uid, a.modseq);
    }
    f.store
        .store_flags(
            inbox.id,
            &[last_uid],
            FlagOp::Add,
            &Flags::from_names(["\\Deleted"]),
            None,
        )
        .await
        .unwrap();
    f.store.expunge(inbox.id, Expunge::AllDeleted).await.unwrap();
    let a = f.store.append(inbox.id, vec![msg("after", "x")]).await.unwrap()[0];
    assert_eq!(a.uid, last_uid + 1, "an expunged UID is never reused");
    assert!(a.modseq > last_modseq + 1);
}

pub async fn flags_operations(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let a = f
        .store
        .append(inbox.id, vec![msg("1", "x"), msg("2", "x"), msg("3", "x")])
        .await
        .unwrap();
    let uids: Vec<_> = a.iter().map(|a| a.uid).collect();
    let u = f
        .store
        .store_flags(
            inbox.id,
            &uids[..2],
            FlagOp::Add,
            &Flags::from_names(["\\Seen", "Todo"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(u.updated.len(), 2);
    assert!(u.updated.iter().all(|(_, fl, _)| fl.names() == ["\\Seen", "Todo"]));
    assert_eq!(f.store.mailbox_by_id(inbox.id).await.unwrap().unseen, 1);
    f.store
        .store_flags(inbox.id, &uids[..1], FlagOp::Remove, &Flags::from_names(["todo"]), None)
        .await
        .unwrap();
    f.store
        .store_flags(
            inbox.id,
            &uids[2..],
            FlagOp::Replace,
            &Flags::from_names(["\\Deleted", "\\Draft"]),
            None,
        )
        .await
        .unwrap();
    let all = f.store.messages(inbox.id).await.unwrap();
    assert_eq!(all[0].flags.names(), ["\\Seen"]);
    assert_eq!(all[1].flags.names(), ["\\Seen", "Todo"]);
    assert_eq!(all[2].flags.system, SystemFlags::DELETED.union(SystemFlags::DRAFT));
    let m = f.store.mailbox_by_id(inbox.id).await.unwrap();
    assert_eq!((m.unseen, m.deleted), (1, 1));
    // A no-op store changes no modseq.
    let before = m.highest_modseq;
    f.store
        .store_flags(inbox.id, &uids[..1], FlagOp::Add, &Flags::from_names(["\\Seen"]), None)
        .await
        .unwrap();
    assert_eq!(f.store.mailbox_by_id(inbox.id).await.unwrap().highest_modseq, before);
    // Unknown UIDs are ignored.
    let u = f
        .store
        .store_flags(inbox.id, &[999], FlagOp::Add, &Flags::from_names(["\\Seen"]), None)
        .await
        .unwrap();
    assert!(u.updated.is_empty());
}

pub async fn unchangedsince_reports_modified(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let a = f
        .store
        .append(inbox.id, vec![msg("1", "x"), msg("2", "x")])
        .await
        .unwrap();
    let base = a[1].modseq;
    f.store
        .store_flags(
            inbox.id,
            &[a[0].uid],
            FlagOp::Add,
            &Flags::from_names(["\\Flagged"]),
            None,
        )
        .await
        .unwrap();
    let u = f
        .store
        .store_flags(
            inbox.id,
            &[a[0].uid, a[1].uid],
            FlagOp::Add,
            &Flags::from_names(["\\Seen"]),
            Some(base),
        )
        .await
        .unwrap();
    assert_eq!(u.modified, [a[0].uid]);
    assert_eq!(u.updated.len(), 1);
    assert_eq!(u.updated[0].0, a[1].uid);
}

pub async fn copy_and_move(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let archive = f.store.mailbox(alice, "Archive").await.unwrap();
    let trash = f.store.mailbox(alice, "Trash").await.unwrap();
    let mut m = msg("copy me", "x");
    m.flags = Flags::from_names(["\\Seen", "Keep"]);
    m.internal_date = Some(1_500_000_000);
    let a = f.store.append(inbox.id, vec![m, msg("move me", "y")]).await.unwrap();
    let c = f.store.copy(inbox.id, &[a[0].uid], archive.id).await.unwrap();
    assert_eq!(c.uidvalidity, archive.uidvalidity);
    assert_eq!(c.mapping, [(a[0].uid, 1)]);
    let copied = &f.store.messages(archive.id).await.unwrap()[0];
    assert_eq!(copied.flags.names(), ["\\Seen", "Keep"]);
    assert_eq!(copied.internal_date, 1_500_000_000);
    assert_eq!(
        f.store.read_message(archive.id, 1).await.unwrap(),
        f.store.read_message(inbox.id, a[0].uid).await.unwrap()
    );
    let mv = f
        .store
        .move_messages(inbox.id, &[a[1].uid, 12345], trash.id)
        .await
        .unwrap();
    assert_eq!(mv.mapping, [(a[1].uid, 1)]);
    assert_eq!(f.store.mailbox_by_id(inbox.id).await.unwrap().messages, 1);
    assert_eq!(f.store.mailbox_by_id(trash.id).await.unwrap().messages, 1);
    // Quota counts every copy, as IMAP QUOTA's STORAGE does.
    let used = f.store.account_by_id(alice).await.unwrap().used;
    let sizes: u64 = f.store.mailboxes(alice).await.unwrap().iter().map(|m| m.size).sum();
    let one = f.store.read_message(archive.id, 1).await.unwrap().len() as u64;
    assert_eq!(used, sizes);
    assert!(used >= 3 * one - 10, "three stored copies are counted");
}

pub async fn failed_move_changes_nothing(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    f.store.append(inbox.id, vec![msg("stay", "x")]).await.unwrap();
    let bob = f
        .store
        .create_account(NewAccount {
            address: "bob@example.test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let bobs_inbox = f.store.mailbox(bob.id, "INBOX").await.unwrap();
    assert!(
        f.store.move_messages(inbox.id, &[1], bobs_inbox.id).await.is_err(),
        "no moves across accounts"
    );
    assert!(
        f.store
            .move_messages(inbox.id, &[1], tern_store::MailboxId(987654))
            .await
            .is_err()
    );
    assert_eq!(f.store.mailbox_by_id(inbox.id).await.unwrap().messages, 1);
    assert_eq!(f.store.messages(inbox.id).await.unwrap().len(), 1);
}

pub async fn expunge_variants(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let a = f
        .store
        .append(inbox.id, (0..6).map(|i| msg(&format!("e{i}"), "x")).collect())
        .await
        .unwrap();
    let uids: Vec<_> = a.iter().map(|a| a.uid).collect();
    f.store
        .store_flags(
            inbox.id,
            &[uids[0], uids[1], uids[2]],
            FlagOp::Add,
            &Flags::from_names(["\\Deleted"]),
            None,
        )
        .await
        .unwrap();
    // UID EXPUNGE removes only deleted messages among the given ones.
    assert_eq!(
        f.store
            .expunge(inbox.id, Expunge::DeletedAmong(vec![uids[1], uids[3]]))
            .await
            .unwrap(),
        [uids[1]]
    );
    assert_eq!(
        f.store.expunge(inbox.id, Expunge::AllDeleted).await.unwrap(),
        [uids[0], uids[2]]
    );
    assert_eq!(
        f.store.expunge(inbox.id, Expunge::Uids(vec![uids[5]])).await.unwrap(),
        [uids[5]]
    );
    assert!(f.store.expunge(inbox.id, Expunge::AllDeleted).await.unwrap().is_empty());
    let m = f.store.mailbox_by_id(inbox.id).await.unwrap();
    assert_eq!((m.messages, m.deleted, m.unseen), (2, 0, 2));
    let left: Vec<_> = f
        .store
        .messages(inbox.id)
        .await
        .unwrap()
        .iter()
        .map(|s| s.uid)
        .collect();
    assert_eq!(left, [uids[3], uids[4]]);
}

pub async fn changes_since_reports_vanished(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let a = f
        .store
        .append(inbox.id, (0..4).map(|i| msg(&format!("c{i}"), "x")).collect())
        .await
        .unwrap();
    let since = f.store.mailbox_by_id(inbox.id).await.unwrap().highest_modseq;
    f.store
        .store_flags(inbox.id, &[a[1].uid], FlagOp::Add, &Flags::from_names(["\\Seen"]), None)
        .await
        .unwrap();
    f.store.expunge(inbox.id, Expunge::Uids(vec![a[2].uid])).await.unwrap();
    f.store.append(inbox.id, vec![msg("new", "x")]).await.unwrap();
    let c = f.store.changes_since(inbox.id, since).await.unwrap();
    assert_eq!(
        c.changed.iter().map(|s| s.uid).collect::<Vec<_>>(),
        [a[1].uid, a[3].uid + 1]
    );
    assert_eq!(c.vanished, [a[2].uid]);
    let none = f
        .store
        .changes_since(inbox.id, f.store.mailbox_by_id(inbox.id).await.unwrap().highest_modseq)
        .await
        .unwrap();
    assert!(none.changed.is_empty() && none.vanished.is_empty());
}

pub async fn metadata_is_stored(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let raw = "From: \"Bob B.\" <bob@example.org>\r\nTo: alice@example.test\r\nSubject: Fwd: Quarterly report\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <q3@example.org>\r\nIn-Reply-To: <q2@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"sep\"\r\n\r\n--sep\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nNumbers attached.\r\n--sep\r\nContent-Type: application/octet-stream; name=\"q3.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--sep--\r\n";
    let a = f.store.append(inbox.id, vec![NewMessage::new(raw)]).await.unwrap();
    let (uid, m) = f.store.metadata(inbox.id, &[a[0].uid]).await.unwrap().remove(0);
    assert_eq!(uid, a[0].uid);
    assert_eq!(m.base_subject, "Quarterly report");
    assert_eq!(m.message_id.as_deref(), Some("q3@example.org"));
    assert_eq!(m.in_reply_to, ["q2@example.org"]);
    assert_eq!(m.sent_date, Some(1_795_420_800));
    assert_eq!(m.envelope.date.as_deref(), Some("Mon, 23 Nov 2026 08:00:00 +0000"));
    assert!(m.has_attachments);
    let PartChildren::Multipart(parts) = &m.body.children else {
        panic!("multipart expected")
    };
    assert_eq!(parts[1].params, [("name".to_string(), "q3.bin".to_string())]);
    assert_eq!(
        &raw.as_bytes()[parts[1].body_offset as usize..parts[1].end_offset as usize],
        b"AAEC"
    );
}

pub async fn broken_mime_is_stored(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let broken: Vec<&[u8]> = vec![
        b"Content-Type: multipart/mixed; boundary=never\r\nSubject: unterminated\r\n\r\n--never\r\nContent-Type: text/plain\r\n\r\ncut off here",
        b"\xff\xfe\x00garbage without any header",
        b"Subject: =?x-unknown?B?!!!?=\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not base64@@@\r\n",
    ];
    let a = f
        .store
        .append(inbox.id, broken.iter().map(|b| NewMessage::new(*b)).collect())
        .await
        .unwrap();
    for (a, raw) in a.iter().zip(&broken) {
        assert_eq!(&f.store.read_message(inbox.id, a.uid).await.unwrap()[..], *raw);
        assert_eq!(f.store.metadata(inbox.id, &[a.uid]).await.unwrap().len(), 1);
    }
}

pub async fn full_text_search(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let html = NewMessage::new(
        "Subject: newsletter\r\nContent-Type: text/html\r\n\r\n<p>Big <b>Überraschung</b> inside</p>\r\n",
    );
    let a = f
        .store
        .append(
            inbox.id,
            vec![
                msg("Budget meeting", "Please bring the spreadsheet."),
                msg("Lunch", "Pizza at noon?"),
                html,
            ],
        )
        .await
        .unwrap();
    let search = |field, q: &'static str| {
        let s = f.store.clone();
        async move { s.search_text(inbox.id, field, q).await.unwrap() }
    };
    assert_eq!(search(TextField::Text, "spreadsheet").await, [a[0].uid]);
    assert_eq!(
        search(TextField::Text, "SPREAD").await,
        [a[0].uid],
        "prefixes and case-insensitive"
    );
    assert_eq!(search(TextField::Headers, "budget").await, [a[0].uid]);
    assert!(search(TextField::Body, "budget").await.is_empty());
    assert_eq!(search(TextField::Body, "pizza noon").await, [a[1].uid]);
    assert!(
        search(TextField::Body, "pizza spreadsheet").await.is_empty(),
        "every word must match"
    );
    assert_eq!(
        search(TextField::Body, "uberraschung").await,
        [a[2].uid],
        "HTML text and diacritics"
    );
    assert_eq!(
        search(TextField::Text, "\"quoted\" AND OR NEAR(").await.len(),
        0,
        "FTS syntax is literal"
    );
    f.store.expunge(inbox.id, Expunge::Uids(vec![a[0].uid])).await.unwrap();
    assert!(search(TextField::Text, "spreadsheet").await.is_empty());
}

pub async fn quota_is_enforced(f: Fixture) {
    f.store.create_domain("example.test").await.unwrap();
    let acct = f
        .store
        .create_account(NewAccount {
            address: "small@example.test".into(),
            quota: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let inbox = f.store.mailbox(acct.id, "INBOX").await.unwrap();
    f.store
        .append(inbox.id, vec![NewMessage::new(vec![b'a'; 600])])
        .await
        .unwrap();
    let err = f
        .store
        .append(inbox.id, vec![NewMessage::new(vec![b'b'; 600])])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::QuotaExceeded { used: 600, limit: 1000 }),
        "{err}"
    );
    let sent = f.store.mailbox(acct.id, "Sent").await.unwrap();
    assert!(f.store.copy(inbox.id, &[1], sent.id).await.is_err());
    assert_eq!(f.store.account_by_id(acct.id).await.unwrap().used, 600);
}

pub async fn delete_account_removes_mail(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    f.store.append(inbox.id, vec![msg("bye", "x")]).await.unwrap();
    f.store
        .create_alias("al@example.test", "alice@example.test")
        .await
        .unwrap();
    f.store.delete_account("alice@example.test").await.unwrap();
    assert!(f.store.mailbox_by_id(inbox.id).await.is_err());
    assert!(f.store.aliases(None).await.unwrap().is_empty());
    // The address is free again and starts empty.
    let again = f
        .store
        .create_account(NewAccount {
            address: "alice@example.test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(f.store.mailbox(again.id, "INBOX").await.unwrap().messages, 0);
}

pub async fn content_hashes_identify_messages(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap();
    let raws: Vec<Vec<u8>> = vec![
        b"Subject: a\r\n\r\na\r\n".to_vec(),
        b"Subject: b\r\n\r\nb\r\n".to_vec(),
        b"Subject: a\r\n\r\na\r\n".to_vec(),
    ];
    let a = f
        .store
        .append(inbox.id, raws.iter().cloned().map(NewMessage::new).collect())
        .await
        .unwrap();
    let hashes = f.store.content_hashes(inbox.id).await.unwrap();
    let expected: Vec<_> = a
        .iter()
        .zip(&raws)
        .map(|(a, r)| (a.uid, tern_store::content_hash(r)))
        .collect();
    assert_eq!(hashes, expected);
    assert_eq!(hashes[0].1, hashes[2].1, "identical bytes, identical hash");
}
