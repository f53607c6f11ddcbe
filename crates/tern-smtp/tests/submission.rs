//! Submission (RFC 6409 on 587 with STARTTLS, RFC 8314 on 465): logins only over TLS,
//! senders only the account's own addresses, local recipients delivered at once and
//! the rest queued, DKIM-signed. Peer: python's smtplib.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_only_over_tls_and_nothing_without_it() {
    let h = Harness::start().await;
    let t = raw_session(
        h.submission,
        &[
            (b"EHLO client.test\r\n", 1),
            (b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwYXNz\r\n", 1),
            (b"MAIL FROM:<alice@example.test>\r\n", 1),
            (b"QUIT\r\n", 1),
        ],
    )
    .await;
    assert!(!t.contains("AUTH PLAIN LOGIN"), "AUTH is not offered before TLS:\n{t}");
    let r = replies(&t);
    assert!(r[2].starts_with("538 5.7.11"), "{t}");
    assert!(r[3].starts_with("530 5.7.0"), "{t}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_and_login_over_starttls_and_implicit_tls() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    let msg = message(ALICE, BOB, "to a colleague and outside");
    let r = submit(
        h.submission.port(),
        false,
        "PLAIN",
        ALICE,
        PASSWORD,
        ALICE,
        &[BOB, "friend@remote.test"],
        &msg,
    )
    .await;
    assert_eq!(r["auth_before_tls"], false, "{r}");
    assert_eq!(r["auth_mechs"], " PLAIN LOGIN", "{r}");
    assert_eq!(r["login"][0], 235, "{r}");
    assert_eq!(r["refused"], serde_json::json!({}), "{r}");
    // The colleague has it at once; the outside recipient is queued, signed.
    let inbox = h.wait_for(BOB, "INBOX", 1).await;
    assert!(header(&inbox[0], "Received").unwrap().contains("with ESMTPSA id"));
    let queue = h.store.queue_entries().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].sender, ALICE);
    let envelope = tern_smtp::queue::Envelope::parse(&queue[0]);
    assert_eq!(envelope.recipients.len(), 1);
    assert_eq!(envelope.recipients[0].address, "friend@remote.test");
    assert_eq!(envelope.submitted_by.as_deref(), Some(ALICE));
    let queued = h.store.queue_message(queue[0].id).await.unwrap();
    let text = String::from_utf8_lossy(&queued);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "RSA and Ed25519:\n{text}");
    assert!(text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"));
    assert!(queued.ends_with(msg.as_bytes()));

    // LOGIN on 465 (TLS from the first byte), from an alias.
    let msg = message("sales@example.test", BOB, "from the alias");
    let r = submit(
        h.submissions.port(),
        true,
        "LOGIN",
        ALICE,
        PASSWORD,
        "sales@example.test",
        &[BOB],
        &msg,
    )
    .await;
    assert_eq!(r["login"][0], 235, "{r}");
    assert_eq!(r["refused"], serde_json::json!({}), "{r}");
    h.wait_for(BOB, "INBOX", 2).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_sends_as_someone_else() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    // Wrong password; three wrong tries end the connection.
    let r = submit(h.submission.port(), false, "PLAIN", ALICE, "guess", ALICE, &[BOB], "x").await;
    assert_eq!(r["login"][0], 535, "{r}");
    let wrong = "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABndWVzcw==\r\n"; // alice / guess
    let script = r#"
port, line = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port)
s.starttls(context=ctx)
s.ehlo()
codes = []
for i in range(4):
    try:
        s.send(line.encode())
        codes.append(s.getreply()[0])
    except smtplib.SMTPServerDisconnected:
        codes.append("closed")
out(codes)
"#;
    let r = python(script, vec![h.submission.port().to_string(), wrong.into()]).await;
    // The third failure comes with 421 and the end of the connection.
    assert_eq!(r, serde_json::json!([535, 535, 535, 421]), "{r}");
    // Envelope sender that is bob's.
    let r = submit(
        h.submission.port(),
        false,
        "PLAIN",
        ALICE,
        PASSWORD,
        BOB,
        &[BOB],
        &message(BOB, BOB, "x"),
    )
    .await;
    assert_eq!(r["error"][0], 553, "{r}");
    // Envelope sender alice's, From: bob's.
    let r = submit(
        h.submission.port(),
        false,
        "PLAIN",
        ALICE,
        PASSWORD,
        ALICE,
        &["x@remote.test"],
        &message(BOB, "x@remote.test", "x"),
    )
    .await;
    assert_eq!(r["error"][0], 550, "{r}");
    assert!(r["error"][1].as_str().unwrap().contains("not yours"), "{r}");
    // Another domain's address altogether.
    let r = submit(
        h.submission.port(),
        false,
        "PLAIN",
        ALICE,
        PASSWORD,
        "ceo@bank.test",
        &["x@remote.test"],
        &message("ceo@bank.test", "x@remote.test", "x"),
    )
    .await;
    assert_eq!(r["error"][0], 553, "{r}");
    assert!(h.store.queue_entries().await.unwrap().is_empty());
    assert!(h.inbox(BOB).await.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hourly_limits_per_sender() {
    let h = Harness::start_with(|s| {
        s.deliver = false;
        s.config.submissions_per_hour = 2;
    })
    .await;
    for i in 0..2 {
        let r = submit(
            h.submission.port(),
            false,
            "PLAIN",
            ALICE,
            PASSWORD,
            ALICE,
            &[BOB],
            &message(ALICE, BOB, &format!("{i}")),
        )
        .await;
        assert_eq!(r["refused"], serde_json::json!({}), "{r}");
    }
    let r = submit(
        h.submission.port(),
        false,
        "PLAIN",
        ALICE,
        PASSWORD,
        ALICE,
        &[BOB],
        &message(ALICE, BOB, "third"),
    )
    .await;
    assert_eq!(r["error"][0], 450, "{r}");
    // Bob is not limited by alice's sending.
    let r = submit(
        h.submission.port(),
        false,
        "PLAIN",
        BOB,
        PASSWORD,
        BOB,
        &[ALICE],
        &message(BOB, ALICE, "hi"),
    )
    .await;
    assert_eq!(r["refused"], serde_json::json!({}), "{r}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaks_submits_over_starttls_with_auth() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    let args = format!(
        "--server 127.0.0.1:{} --tls --auth LOGIN --auth-user {ALICE} --from {ALICE} --h-From {ALICE} --to {BOB} --body from-swaks",
        h.submission.port()
    );
    let mut args: Vec<String> = args.split(' ').map(String::from).collect();
    args.extend(["--auth-password".to_string(), PASSWORD.to_string()]);
    if swaks(args).await.is_none() {
        return;
    }
    let inbox = h.wait_for(BOB, "INBOX", 1).await;
    assert!(String::from_utf8_lossy(&inbox[0]).contains("from-swaks"));
    h.stop().await;
}

/// Webmail's send button (`SmtpServer::submit`): the submission session's own checks and
/// steps without a socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submitting_without_a_socket_checks_signs_queues_and_delivers() {
    let h = Harness::start_with(|s| s.deliver = false).await;
    let alice = h.store.account(ALICE).await.unwrap();
    let peer: std::net::SocketAddr = "198.51.100.7:50000".parse().unwrap();
    let message = message(ALICE, "friend@remote.test", "From webmail");
    let reply = h
        .server
        .submit(
            alice.clone(),
            peer,
            ALICE,
            &[BOB.to_string(), "friend@remote.test".to_string()],
            message.clone().into_bytes(),
        )
        .await
        .expect("accepted");
    assert_eq!(reply.code, 250);
    let bob = h.wait_for(BOB, "INBOX", 1).await;
    assert!(bob[0].ends_with(message.as_bytes()));
    assert!(header(&bob[0], "Received").is_some_and(|r| r.contains("from webmail ([198.51.100.7])")));
    let entries = h.store.queue_entries().await.unwrap();
    assert_eq!(entries.len(), 1);
    let queued = h.store.queue_message(entries[0].id).await.unwrap();
    assert!(
        header(&queued, "DKIM-Signature").is_some(),
        "signed for the remote recipient"
    );

    // The same rules as over a socket: no sending as someone else, no bad recipient.
    let refused = h
        .server
        .submit(
            alice.clone(),
            peer,
            BOB,
            &["friend@remote.test".to_string()],
            message.clone().into_bytes(),
        )
        .await
        .expect_err("not alice's address");
    assert_eq!(refused.code, 553);
    let forged = message.replace(&format!("From: <{ALICE}>"), &format!("From: <{BOB}>"));
    let refused = h
        .server
        .submit(
            alice.clone(),
            peer,
            ALICE,
            &["friend@remote.test".to_string()],
            forged.into_bytes(),
        )
        .await
        .expect_err("From is bob's");
    assert_eq!(refused.code, 550);
    let refused = h
        .server
        .submit(
            alice,
            peer,
            ALICE,
            &["nobody@example.test".to_string()],
            message.into_bytes(),
        )
        .await
        .expect_err("no such local user");
    assert!(refused.text.starts_with("<nobody@example.test>"), "{refused:?}");
    assert_eq!(h.store.queue_entries().await.unwrap().len(), 1, "nothing more queued");
    h.stop().await;
}
