//! The MX (RFC 5321): what it accepts, what it refuses, and that a message arrives in
//! the mailbox byte for byte. Peers: python's smtplib, swaks, raw sockets.

mod common;

use common::*;
use tern_smtp::DmarcReject;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepts_hosted_addresses_and_refuses_relaying() {
    let h = Harness::start().await;
    let msg = message("someone@remote.test", ALICE, "hello");
    let r = send(
        &h,
        "someone@remote.test",
        &[
            ALICE,
            "alice+news@example.test",
            "sales@example.test",
            "nobody@example.test",
            "x@elsewhere.test",
        ],
        &msg,
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["refused"]["nobody@example.test"][0], 550, "{r}");
    assert!(
        r["refused"]["nobody@example.test"][1]
            .as_str()
            .unwrap()
            .starts_with("5.1.1"),
        "{r}"
    );
    assert_eq!(r["refused"]["x@elsewhere.test"][0], 550, "{r}");
    assert!(
        r["refused"]["x@elsewhere.test"][1]
            .as_str()
            .unwrap()
            .starts_with("5.7.1 relaying denied"),
        "{r}"
    );
    // Three addresses of one account: one copy.
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    let raw = &inbox[0];
    assert!(
        raw.ends_with(msg.as_bytes()),
        "the message is stored as sent, below Tern's own fields"
    );
    assert_eq!(header(raw, "Return-Path").as_deref(), Some("<someone@remote.test>"));
    let received = header(raw, "Received").unwrap();
    assert!(
        received.contains("by mail.example.test (Tern) with ESMTP id"),
        "{received}"
    );
    let results = header(raw, "Authentication-Results").unwrap();
    assert!(results.starts_with("mail.example.test;"), "{results}");
    assert!(
        results.contains("dkim=none") && results.contains("spf=none") && results.contains("dmarc=none"),
        "{results}"
    );
    assert!(h.inbox(BOB).await.is_empty());

    // Catch-all: unknown local parts reach the target.
    h.store.set_catch_all(DOMAIN, Some(BOB)).await.unwrap();
    let r = send(
        &h,
        "someone@remote.test",
        &["whoever@example.test"],
        &message("someone@remote.test", "whoever@example.test", "c"),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    h.wait_for(BOB, "INBOX", 1).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_not_receiving_yet_is_a_temporary_failure() {
    let h = Harness::start().await;
    h.store.set_domain_receiving(DOMAIN, false).await.unwrap();
    let r = send(
        &h,
        "someone@remote.test",
        &[ALICE],
        &message("someone@remote.test", ALICE, "early"),
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["refused"][ALICE][0], 451, "{r}");
    assert!(r["refused"][ALICE][1].as_str().unwrap().starts_with("4.3.2"), "{r}");
    h.store.set_domain_receiving(DOMAIN, true).await.unwrap();
    let r = send(
        &h,
        "someone@remote.test",
        &[ALICE],
        &message("someone@remote.test", ALICE, "now"),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    h.wait_for(ALICE, "INBOX", 1).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_commands_and_bad_input_keep_the_session() {
    let h = Harness::start().await;
    let body = message("a@remote.test", ALICE, "pipelined");
    let pipelined =
        format!("MAIL FROM:<a@remote.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n");
    let data = format!("{body}.\r\n");
    let t = raw_session(
        h.smtp,
        &[
            (b"EHLO client.test\r\n", 1),
            (b"FROB nothing\r\n", 1),
            (format!("NOOP {}\r\n", "x".repeat(5000)).as_bytes(), 1),
            (b"MAIL FROM:<a@remote.test> BOGUS=1\r\n", 1),
            (b"RCPT TO:<x@example.test>\r\n", 1),
            (b"DATA\r\n", 1),
            (pipelined.as_bytes(), 4),
            (data.as_bytes(), 1),
            (b"NOOP\r\nVRFY alice\r\nRSET\r\nQUIT\r\n", 4),
        ],
    )
    .await;
    let r = replies(&t);
    let codes: Vec<&str> = r.iter().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        [
            "220", "250", "500", "500", "555", "503", "503", "250", "550", "250", "354", "250", "250", "252", "250",
            "221"
        ],
        "{t}"
    );
    assert!(r[3].starts_with("500 5.5.2 line too long"), "{t}");
    assert!(t.contains("250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"), "{t}");
    assert!(t.contains("250-CHUNKING") && t.contains("250 STARTTLS"), "{t}");
    // No AUTH on the MX.
    assert!(!t.contains("AUTH"), "{t}");
    h.wait_for(ALICE, "INBOX", 1).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bdat_nuls_and_bare_line_feeds_are_stored_byte_exact() {
    let h = Harness::start().await;
    // A message with a NUL, a bare LF, a bare CR and a line that starts with a dot.
    let body: &[u8] =
        b"From: <a@remote.test>\r\nSubject: odd bytes\r\n\r\nnul:\x00 here\nbare lf\rbare cr\r\n.dot line\r\n";
    let (first, second) = body.split_at(20);
    let mut chunk1 = format!("BDAT {}\r\n", first.len()).into_bytes();
    chunk1.extend_from_slice(first);
    let mut chunk2 = format!("BDAT {} LAST\r\n", second.len()).into_bytes();
    chunk2.extend_from_slice(second);
    // The same over DATA, dot-stuffed as RFC 5321 §4.5.2 wants.
    let mut data = b"DATA\r\n".to_vec();
    let mut stuffed = body.to_vec();
    stuffed = String::from_utf8_lossy(&stuffed)
        .replace("\r\n.", "\r\n..")
        .into_bytes();
    data.extend_from_slice(&stuffed);
    data.extend_from_slice(b".\r\n");
    let t = raw_session(
        h.smtp,
        &[
            (b"EHLO client.test\r\n", 1),
            (
                format!("MAIL FROM:<a@remote.test>\r\nRCPT TO:<{ALICE}>\r\n").as_bytes(),
                2,
            ),
            (&chunk1, 1),
            (&chunk2, 1),
            (
                format!("MAIL FROM:<a@remote.test>\r\nRCPT TO:<{ALICE}>\r\n").as_bytes(),
                2,
            ),
            (&data[..6], 1),
            (&data[6..], 1),
            (b"QUIT\r\n", 1),
        ],
    )
    .await;
    let r = replies(&t);
    assert!(r[4].starts_with("250 2.0.0 20 octets"), "{t}");
    assert!(r[5].starts_with("250 2.0.0 OK"), "{t}");
    assert!(r[9].starts_with("250 2.0.0 OK"), "{t}");
    let inbox = h.wait_for(ALICE, "INBOX", 2).await;
    for raw in &inbox {
        assert!(raw.ends_with(body), "stored: {:?}", String::from_utf8_lossy(raw));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtputf8_addresses_and_8bit_bodies() {
    let h = Harness::start().await;
    h.store.create_alias("jörg@example.test", BOB).await.unwrap();
    let script = r#"
port = int(sys.argv[1])
msg = "From: Jörg <jörg@remote.test>\r\nTo: jörg@example.test\r\nSubject: Grüße\r\n\r\nSchöne Grüße aus Köln\r\n".encode()
s = smtplib.SMTP("127.0.0.1", port)
s.ehlo()
out({"utf8": s.has_extn("smtputf8"), "refused": s.sendmail("jörg@remote.test", ["jörg@example.test"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])})
s.quit()
"#;
    let r = python(script, vec![h.smtp.port().to_string()]).await;
    assert_eq!(r["utf8"], true, "{r}");
    assert_eq!(r["refused"], serde_json::json!({}), "{r}");
    let inbox = h.wait_for(BOB, "INBOX", 1).await;
    let text = String::from_utf8(inbox[0].clone()).unwrap();
    assert!(text.contains("Schöne Grüße aus Köln\r\n"), "{text}");
    assert!(text.contains("with UTF8ESMTP id"), "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_25_mb_message_arrives_and_a_larger_one_is_refused() {
    let h = Harness::start_with(|s| s.config.max_message_size = 26 * 1024 * 1024).await;
    let script = r#"
port, size = int(sys.argv[1]), int(sys.argv[2])
line = b"x" * 998 + b"\r\n"
def msg(n):
    return b"From: <a@remote.test>\r\nSubject: big\r\n\r\n" + line * (n // len(line))
s = smtplib.SMTP("127.0.0.1", port)
ok = s.sendmail("a@remote.test", ["alice@example.test"], msg(size))
try:
    s.sendmail("a@remote.test", ["alice@example.test"], msg(size + 4 * 1024 * 1024))
    out({"first": ok, "second": None})
except smtplib.SMTPException as e:
    out({"first": ok, "second": err(e)})
"#;
    let r = python(script, vec![h.smtp.port().to_string(), (25 * 1000 * 1000).to_string()]).await;
    assert_eq!(r["first"], serde_json::json!({}), "{r}");
    assert_eq!(r["second"][0], 552, "{r}");
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    assert!(inbox[0].len() > 25 * 1000 * 1000 - 1000);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swaks_over_starttls() {
    let h = Harness::start().await;
    let args = format!(
        "--server 127.0.0.1:{} --tls --pipeline --from someone@remote.test --to {ALICE} --body over-TLS",
        h.smtp.port()
    );
    if swaks(args.split(' ').map(String::from).collect()).await.is_none() {
        return;
    }
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    assert!(header(&inbox[0], "Received").unwrap().contains("with ESMTPS id"));
    h.stop().await;
}

/// Publishes SPF and DMARC records and a DKIM key for senders' domains in the test DNS.
fn publish_sender_domains(h: &Harness) -> tern_store::DkimKey {
    h.dns.set_txt("good.test", &["v=spf1 ip4:127.0.0.1 -all"]);
    h.dns.set_txt("_dmarc.good.test", &["v=DMARC1; p=reject"]);
    h.dns.set_txt("forged.test", &["v=spf1 ip4:192.0.2.1 -all"]);
    h.dns.set_txt("_dmarc.forged.test", &["v=DMARC1; p=reject"]);
    h.dns.set_txt("doubtful.test", &["v=spf1 ip4:192.0.2.1 -all"]);
    h.dns.set_txt("_dmarc.doubtful.test", &["v=DMARC1; p=quarantine"]);
    let key = tern_smtp::dkim::generate("good.test", tern_store::DkimAlgorithm::RsaSha256, 0, &[]).unwrap();
    h.dns.set_txt(
        &tern_smtp::dkim::record_name(&key),
        &[&tern_smtp::dkim::record_value(&key)],
    );
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spf_dkim_and_dmarc_verdicts_for_signed_unsigned_and_forged_mail() {
    let h = Harness::start().await;
    let key = publish_sender_domains(&h);
    // Signed and from an allowed IP: everything passes.
    let unsigned = message("news@good.test", ALICE, "signed");
    let signed = format!(
        "{}{unsigned}",
        tern_smtp::dkim::sign(unsigned.as_bytes(), &[key]).unwrap()
    );
    let r = send(&h, "news@good.test", &[ALICE], &signed).await;
    assert_eq!(r["ok"], true, "{r}");
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    let results = header(&inbox[0], "Authentication-Results").unwrap();
    assert!(
        results.contains("dkim=pass") && results.contains("header.d=good.test"),
        "{results}"
    );
    assert!(
        results.contains("spf=pass") && results.contains("dmarc=pass"),
        "{results}"
    );

    // Unsigned, right IP: SPF alone aligns, DMARC passes.
    let r = send(
        &h,
        "news@good.test",
        &[ALICE],
        &message("news@good.test", ALICE, "unsigned"),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let inbox = h.wait_for(ALICE, "INBOX", 2).await;
    let results = header(&inbox[1], "Authentication-Results").unwrap();
    assert!(
        results.contains("dkim=none") && results.contains("spf=pass") && results.contains("dmarc=pass"),
        "{results}"
    );

    // Forged: SPF fails, no signature, p=reject: refused at the end of DATA.
    let r = send(
        &h,
        "ceo@forged.test",
        &[ALICE],
        &message("ceo@forged.test", ALICE, "wire money"),
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"][0], 550, "{r}");
    assert!(r["error"][1].as_str().unwrap().contains("DMARC"), "{r}");

    // p=quarantine: delivered, to Junk.
    let r = send(
        &h,
        "x@doubtful.test",
        &[ALICE],
        &message("x@doubtful.test", ALICE, "maybe"),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let junk = h.wait_for(ALICE, "Junk", 1).await;
    assert!(
        header(&junk[0], "Authentication-Results")
            .unwrap()
            .contains("dmarc=fail")
    );
    assert_eq!(h.inbox(ALICE).await.len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dmarc_reject_can_deliver_to_junk_instead() {
    let h = Harness::start_with(|s| s.config.dmarc_reject = DmarcReject::Junk).await;
    publish_sender_domains(&h);
    let r = send(
        &h,
        "ceo@forged.test",
        &[ALICE],
        &message("ceo@forged.test", ALICE, "wire money"),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    h.wait_for(ALICE, "Junk", 1).await;
    assert!(h.inbox(ALICE).await.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postfix_relays_into_tern() {
    if tern_testkit::postfix::Postfix::skip_if_missing("postfix_relays_into_tern") {
        return;
    }
    let h = Harness::start().await;
    let postfix = tern_testkit::postfix::Postfix::relay(h.smtp)
        .myhostname("mta.sender.test")
        .start()
        .unwrap();
    let msg = message("someone@sender.test", ALICE, "through Postfix");
    let reply = postfix
        .submit("someone@sender.test", &[ALICE, "sales@example.test"], msg.as_bytes())
        .unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    let raw = String::from_utf8(inbox[0].clone()).unwrap();
    assert!(raw.ends_with(&msg), "{raw}");
    // Tern's Received names Postfix's EHLO; Postfix's own Received is below it.
    let received = header(&inbox[0], "Received").unwrap();
    assert!(received.starts_with("from mta.sender.test ([127.0.0.1])"), "{received}");
    assert!(received.contains("with ESMTPS"), "Postfix used STARTTLS: {received}");
    assert!(raw.matches("Received: ").count() >= 2, "{raw}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recipient_limit_and_idle_timeout() {
    let h = Harness::start_with(|s| {
        s.config.max_recipients = 2;
        s.config.command_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let t = raw_session(
        h.smtp,
        &[
            (b"EHLO client.test\r\n", 1),
            (
                format!("MAIL FROM:<a@remote.test>\r\nRCPT TO:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nRCPT TO:<sales@example.test>\r\n")
                    .as_bytes(),
                4,
            ),
            // Then silence: RFC 5321 §4.5.3.2.7 lets the server give up (here after 1 s).
            (b"", 1),
        ],
    )
    .await;
    let r = replies(&t);
    assert!(r[5].starts_with("452 4.5.3"), "{t}");
    assert!(r[6].starts_with("421 4.3.2") && r[6].contains("timeout"), "{t}");
    h.stop().await;
}
