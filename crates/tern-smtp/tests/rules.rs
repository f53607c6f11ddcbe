//! Delivery rules set in webmail: the vacation reply (RFC 3834) and forwarding, applied
//! by local delivery on the MX. Peer: python's smtplib.

mod common;

use common::*;
use tern_smtp::rules::{self, DeliveryRules, Forwarding, Vacation};

async fn set_rules(h: &Harness, address: &str, rules: DeliveryRules) {
    let account = h.store.account(address).await.unwrap();
    rules::save(h.store.as_ref(), account.id, &rules).await.unwrap();
}

/// Queued messages as (envelope sender, recipients, bytes).
async fn queued(h: &Harness) -> Vec<(String, Vec<String>, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in h.store.queue_entries().await.unwrap() {
        let envelope = tern_smtp::queue::Envelope::parse(&entry);
        let raw = h.store.queue_message(entry.id).await.unwrap();
        out.push((
            entry.sender.clone(),
            envelope.recipients.iter().map(|r| r.address.clone()).collect(),
            raw,
        ));
    }
    out
}

fn away() -> DeliveryRules {
    DeliveryRules {
        vacation: Vacation {
            enabled: true,
            subject: "Away until Monday".into(),
            body: "I am away and read mail on Monday.".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vacation_replies_once_per_sender_and_never_to_lists_or_machines() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    set_rules(&h, ALICE, away()).await;

    let r = send(
        &h,
        "carol@remote.test",
        &[ALICE],
        &message("carol@remote.test", ALICE, "Question"),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    h.wait_for(ALICE, "INBOX", 1).await;
    let replies = queued(&h).await;
    assert_eq!(replies.len(), 1, "one reply");
    let (sender, to, raw) = &replies[0];
    assert_eq!(sender, "", "RFC 3834 §3.3: the reply has an empty envelope sender");
    assert_eq!(to, &vec!["carol@remote.test".to_string()]);
    assert_eq!(header(raw, "Auto-Submitted").as_deref(), Some("auto-replied"));
    assert_eq!(header(raw, "Subject").as_deref(), Some("Away until Monday"));
    assert!(header(raw, "In-Reply-To").is_some_and(|v| v.contains("@test>")));
    assert!(
        header(raw, "DKIM-Signature").is_some(),
        "signed like any mail Tern sends"
    );
    assert!(String::from_utf8_lossy(raw).contains("read mail on Monday"));

    // The same sender again: no second reply within the period.
    send(
        &h,
        "carol@remote.test",
        &[ALICE],
        &message("carol@remote.test", ALICE, "Again"),
    )
    .await;
    h.wait_for(ALICE, "INBOX", 2).await;
    // A mailing list, an automatic message, a machine sender, and a Bcc: none answered.
    let list =
        message("dave@remote.test", ALICE, "News").replace("Subject:", "List-Id: <news.remote.test>\r\nSubject:");
    send(&h, "dave@remote.test", &[ALICE], &list).await;
    let auto =
        message("erin@remote.test", ALICE, "Receipt").replace("Subject:", "Auto-Submitted: auto-generated\r\nSubject:");
    send(&h, "erin@remote.test", &[ALICE], &auto).await;
    send(
        &h,
        "noreply@remote.test",
        &[ALICE],
        &message("noreply@remote.test", ALICE, "Invoice"),
    )
    .await;
    send(
        &h,
        "frank@remote.test",
        &[ALICE],
        &message("frank@remote.test", "someone@remote.test", "Bcc"),
    )
    .await;
    h.wait_for(ALICE, "INBOX", 6).await;
    assert_eq!(queued(&h).await.len(), 1, "still only the first reply");

    // Between two local users, the reply is delivered here, not queued.
    send(&h, BOB, &[ALICE], &message(BOB, ALICE, "Lunch?")).await;
    let bob = h.wait_for(BOB, "INBOX", 1).await;
    assert_eq!(header(&bob[0], "Subject").as_deref(), Some("Away until Monday"));
    h.stop().await;
}

/// Messages delivered at the same moment, two of them from one sender: each sender
/// gets one reply, none two and none forgotten (the record of who was answered is
/// changed only by one delivery at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vacation_replies_once_per_sender_when_mail_arrives_at_once() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    set_rules(&h, ALICE, away()).await;
    let senders = [
        "carol@remote.test",
        "carol@remote.test",
        "dave@remote.test",
        "erin@remote.test",
    ];
    let msgs: Vec<String> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| message(s, ALICE, &format!("Question {i}")))
        .collect();
    let (a, b, c, d) = tokio::join!(
        send(&h, senders[0], &[ALICE], &msgs[0]),
        send(&h, senders[1], &[ALICE], &msgs[1]),
        send(&h, senders[2], &[ALICE], &msgs[2]),
        send(&h, senders[3], &[ALICE], &msgs[3]),
    );
    for r in [a, b, c, d] {
        assert_eq!(r["ok"], true, "{r}");
    }
    h.wait_for(ALICE, "INBOX", 4).await;
    let mut answered: Vec<String> = queued(&h).await.into_iter().flat_map(|(_, to, _)| to).collect();
    answered.sort();
    assert_eq!(answered, ["carol@remote.test", "dave@remote.test", "erin@remote.test"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vacation_keeps_to_its_dates() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    let mut rules = away();
    rules.vacation.start = "2999-01-01".into();
    set_rules(&h, ALICE, rules).await;
    send(
        &h,
        "carol@remote.test",
        &[ALICE],
        &message("carol@remote.test", ALICE, "Early"),
    )
    .await;
    h.wait_for(ALICE, "INBOX", 1).await;
    assert!(queued(&h).await.is_empty(), "not before the first day");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarding_with_and_without_a_copy_and_never_in_a_loop() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    let forward = |keep_copy| DeliveryRules {
        forwarding: Forwarding {
            to: "alice@elsewhere.test".into(),
            keep_copy,
        },
        ..Default::default()
    };
    set_rules(&h, ALICE, forward(false)).await;
    let msg = message("carol@remote.test", ALICE, "Forward me");
    let r = send(&h, "carol@remote.test", &[ALICE], &msg).await;
    assert_eq!(r["ok"], true, "{r}");
    let q = queued(&h).await;
    assert_eq!(q.len(), 1, "{q:?}");
    let (sender, to, raw) = &q[0];
    assert_eq!(sender, ALICE, "bounces of the forward go to the user");
    assert_eq!(to, &vec!["alice@elsewhere.test".to_string()]);
    assert!(raw.starts_with(format!("Delivered-To: {ALICE}\r\n").as_bytes()));
    assert!(raw.ends_with(msg.as_bytes()), "the message goes on unchanged");
    assert!(h.inbox(ALICE).await.is_empty(), "no copy kept");

    set_rules(&h, ALICE, forward(true)).await;
    send(
        &h,
        "carol@remote.test",
        &[ALICE],
        &message("carol@remote.test", ALICE, "Keep me"),
    )
    .await;
    assert_eq!(h.inbox(ALICE).await.len(), 1, "a copy kept");
    assert_eq!(queued(&h).await.len(), 2);

    // A message that has been delivered here before is not forwarded again.
    let looped = format!(
        "Delivered-To: {ALICE}\r\n{}",
        message("carol@remote.test", ALICE, "Loop")
    );
    send(&h, "carol@remote.test", &[ALICE], &looped).await;
    assert_eq!(h.inbox(ALICE).await.len(), 2);
    assert_eq!(queued(&h).await.len(), 2, "the loop is broken");
    h.stop().await;
}
