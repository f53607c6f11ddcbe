//! The outbound queue: delivery to other hosts' MX (found in the test DNS), signed with
//! DKIM, over opportunistic STARTTLS; retries, bounces, delay notices and smarthosts.
//! Peers: Debian's Postfix as the remote MX, dkimpy as the DKIM checker, and a
//! scripted SMTP server for the misbehaviours (refusals, tempfails, a dropped
//! connection).

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use tern_testkit::postfix::Postfix;
use tern_testkit::smtp_peer::{Behaviour, ScriptedSmtp};

/// Points `domain`'s MX at a host name that resolves to 127.0.0.1.
fn mx_to_loopback(h: &Harness, domain: &str) {
    let mx = format!("mx.{domain}");
    h.dns.set_mx(domain, &[(10, &mx)]);
    h.dns.set_a(&mx, &[Ipv4Addr::LOCALHOST]);
}

/// The DKIM records Tern published for example.test, as (name, value) pairs.
async fn dkim_records(h: &Harness) -> Vec<(String, String)> {
    h.store
        .dkim_keys(Some(DOMAIN))
        .await
        .unwrap()
        .iter()
        .map(|k| (tern_smtp::dkim::record_name(k), tern_smtp::dkim::record_value(k)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivers_to_postfix_signed_over_starttls_and_byte_exact() {
    if Postfix::skip_if_missing("delivers_to_postfix_signed_over_starttls_and_byte_exact") {
        return;
    }
    let sink = Postfix::sink(&["remote.test"])
        .myhostname("mx.remote.test")
        .start()
        .unwrap();
    let h = Harness::start_with(|s| s.config.remote_port = sink.smtp_port()).await;
    mx_to_loopback(&h, "remote.test");
    let msg = message(ALICE, "ann@remote.test", "to Postfix");
    alice_sends(&h, &["ann@remote.test", "ben@remote.test"], &msg).await;
    let sink2 = std::sync::Arc::new(sink);
    let s = sink2.clone();
    let (ann, ben) = tokio::task::spawn_blocking(move || {
        (
            s.wait_for("ann@remote.test", 1, Duration::from_secs(30)).unwrap(),
            s.wait_for("ben@remote.test", 1, Duration::from_secs(30)).unwrap(),
        )
    })
    .await
    .unwrap();
    h.wait_queue_empty(Duration::from_secs(10)).await;
    // One connection, one transaction for both (Postfix logs one queue id).
    let log = sink2.log();
    assert_eq!(
        log.matches("TLS connection established").count(),
        1,
        "one connection:\n{log}"
    );
    let stored = String::from_utf8(ann[0].clone()).unwrap();
    assert!(stored.contains("using TLSv1.3"), "opportunistic STARTTLS:\n{stored}");
    // Postfix stores LF line endings; the rest is what Alice sent, byte for byte.
    assert!(stored.ends_with(&msg.replace("\r\n", "\n")), "{stored}");
    assert!(String::from_utf8_lossy(&ben[0]).ends_with(&msg.replace("\r\n", "\n")));

    // The signatures verify with dkimpy (both keys), as received by Postfix (with CRLF
    // restored, as a verifier sees it on the wire).
    let records = dkim_records(&h).await;
    let pairs: Vec<(&str, &str)> = records.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let wire = stored.replace('\n', "\r\n");
    let verdict = tern_testkit::dkim_check::dkimpy_check(wire.as_bytes(), &pairs).unwrap();
    assert!(verdict.verified, "dkimpy: {}", verdict.log);
    // And with mail-auth, through Tern's own inbound checks.
    let auth = tern_smtp::verify::resolver(&[h.dns.addr()]).unwrap();
    let v = tern_smtp::verify::check(
        &auth,
        "mx.remote.test",
        "127.0.0.1".parse().unwrap(),
        "mail.example.test",
        ALICE,
        wire.as_bytes(),
    )
    .await;
    assert!(v.header.contains("dkim=pass"), "{}", v.header);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_recipient_bounces_to_the_sender() {
    let peer = ScriptedSmtp::start(Behaviour::RejectAll).unwrap();
    let h = Harness::start_with(|s| s.config.remote_port = peer.port()).await;
    mx_to_loopback(&h, "remote.test");
    alice_sends(
        &h,
        &["nobody@remote.test"],
        &message(ALICE, "nobody@remote.test", "hello?"),
    )
    .await;
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    let dsn = String::from_utf8_lossy(&inbox[0]);
    assert!(dsn.contains("Subject: Undelivered Mail Returned to Sender"), "{dsn}");
    assert!(
        dsn.contains("Content-Type: multipart/report; report-type=delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@remote.test\r\nAction: failed\r\nStatus: 5.1.1"),
        "{dsn}"
    );
    assert!(dsn.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{dsn}");
    assert!(dsn.contains("Subject: hello?"), "the original comes back:\n{dsn}");
    h.wait_queue_empty(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tempfailures_and_a_dropped_connection_are_retried_and_delivered_once() {
    let peer = ScriptedSmtp::start(Behaviour::AcceptAfter(1)).unwrap();
    let h = Harness::start_with(|s| s.config.remote_port = peer.port()).await;
    mx_to_loopback(&h, "remote.test");
    alice_sends(
        &h,
        &["x@remote.test"],
        &message(ALICE, "x@remote.test", "first try fails"),
    )
    .await;
    h.wait_queue_empty(Duration::from_secs(30)).await;
    assert_eq!(peer.transactions().len(), 1, "delivered exactly once");

    // Dropped after DATA started: not delivered as far as Tern can tell, so retried.
    peer.set_behaviour(Behaviour::DropMidData);
    alice_sends(&h, &["y@remote.test"], &message(ALICE, "y@remote.test", "dropped")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.store.queue_entries().await.unwrap().len(),
        1,
        "still queued after the drop"
    );
    peer.set_behaviour(Behaviour::Accept);
    h.wait_queue_empty(Duration::from_secs(30)).await;
    let t = peer.transactions();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[1].rcpt_to, vec!["y@remote.test".to_string()]);
    assert!(h.inbox(ALICE).await.is_empty(), "no bounce for mail that was delivered");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_messages_to_one_destination_share_a_connection() {
    let peer = ScriptedSmtp::start(Behaviour::Accept).unwrap();
    let h = Harness::start_with(|s| {
        s.config.remote_port = peer.port();
        s.deliver = false;
    })
    .await;
    mx_to_loopback(&h, "remote.test");
    for i in 0..3 {
        alice_sends(
            &h,
            &["x@remote.test"],
            &message(ALICE, "x@remote.test", &format!("{i}")),
        )
        .await;
    }
    let deliverer = h.deliverer(&[]);
    assert_eq!(deliverer.round().await.unwrap(), 3);
    assert_eq!(peer.transactions().len(), 3);
    assert_eq!(peer.connections(), 1);
    assert!(h.store.queue_entries().await.unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delays_are_notified_and_expired_messages_bounce() {
    let peer = ScriptedSmtp::start(Behaviour::TempfailAll).unwrap();
    let h = Harness::start_with(|s| {
        s.config.remote_port = peer.port();
        s.config.delay_notice_after = Duration::ZERO;
        s.config.max_queue_age = Duration::from_secs(3);
    })
    .await;
    mx_to_loopback(&h, "remote.test");
    alice_sends(
        &h,
        &["slow@remote.test"],
        &message(ALICE, "slow@remote.test", "patience"),
    )
    .await;
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    let delay = String::from_utf8_lossy(&inbox[0]);
    assert!(delay.contains("Subject: Delayed Mail (still being retried)"), "{delay}");
    assert!(delay.contains("Action: delayed\r\nStatus: 4.3.0"), "{delay}");
    assert!(delay.contains("Will-Retry-Until:"), "{delay}");
    // Only one delay notice, then the bounce when the message expires.
    let inbox = h.wait_for(ALICE, "INBOX", 2).await;
    let bounce = String::from_utf8_lossy(&inbox[1]);
    assert!(
        bounce.contains("Subject: Undelivered Mail Returned to Sender"),
        "{bounce}"
    );
    assert!(bounce.contains("Action: failed\r\nStatus: 4.3.0"), "{bounce}");
    h.wait_queue_empty(Duration::from_secs(10)).await;
    assert_eq!(h.inbox(ALICE).await.len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_without_mx_is_its_own_mail_server() {
    let peer = ScriptedSmtp::start(Behaviour::Accept).unwrap();
    let h = Harness::start_with(|s| s.config.remote_port = peer.port()).await;
    // RFC 5321 §5.1: no MX records, but an address: that host is the implicit MX.
    h.dns.set_a("plain.test", &[Ipv4Addr::LOCALHOST]);
    alice_sends(&h, &["x@plain.test"], &message(ALICE, "x@plain.test", "implicit MX")).await;
    h.wait_queue_empty(Duration::from_secs(10)).await;
    assert_eq!(peer.transactions().len(), 1);
    assert_eq!(peer.transactions()[0].rcpt_to, vec!["x@plain.test".to_string()]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn domains_without_mail_servers_bounce_at_once() {
    let h = Harness::start().await;
    h.dns.set_mx("nomail.test", &[(0, ".")]);
    alice_sends(
        &h,
        &["a@nomail.test", "b@nowhere.test"],
        &message(ALICE, "a@nomail.test", "x"),
    )
    .await;
    let inbox = h.wait_for(ALICE, "INBOX", 1).await;
    let dsn = String::from_utf8_lossy(&inbox[0]);
    assert!(
        dsn.contains("Final-Recipient: rfc822; a@nomail.test\r\nAction: failed\r\nStatus: 5.1.10"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; b@nowhere.test\r\nAction: failed\r\nStatus: 5.1.2"),
        "{dsn}"
    );
    h.wait_queue_empty(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_smarthost_with_login_and_verified_tls() {
    // The smarthost is another Tern's submission port: it wants STARTTLS and a login.
    let relay = Harness::start_with(|s| s.deliver = false).await;
    let ca = relay.dir.path().join("cert.pem").display().to_string();
    let h = Harness::start_with(|s| {
        s.config.smarthost = Some(tern_smtp::Smarthost {
            host: HOSTNAME.into(),
            port: relay.submission.port(),
            implicit_tls: false,
            require_tls: true,
            credentials: Some((ALICE.into(), PASSWORD.into())),
        });
        s.deliver = false;
    })
    .await;
    h.dns.set_a(HOSTNAME, &[Ipv4Addr::LOCALHOST]);
    // MX records of the destination are not even looked at.
    alice_sends(
        &h,
        &["far@away.test"],
        &message(ALICE, "far@away.test", "via the smarthost"),
    )
    .await;
    let deliverer = h.deliverer(&[ca]);
    deliverer.round().await.unwrap();
    assert!(
        h.store.queue_entries().await.unwrap().is_empty(),
        "{:?}",
        h.store.queue_entries().await
    );
    let relayed = relay.store.queue_entries().await.unwrap();
    assert_eq!(relayed.len(), 1);
    let env = tern_smtp::queue::Envelope::parse(&relayed[0]);
    assert_eq!(env.recipients[0].address, "far@away.test");
    assert_eq!(env.submitted_by.as_deref(), Some(ALICE));
    h.stop().await;
    relay.stop().await;
}
