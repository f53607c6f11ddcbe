//! Bad input gets BAD or NO and the session goes on; limits hold (RFC 9051 §7.1.3).

mod common;

use std::time::Duration;

use common::{Client, Server};
use tern_imap::ImapConfig;
use tern_net::auth::PlaintextPolicy;

#[tokio::test(flavor = "multi_thread")]
async fn malformed_commands_get_bad_and_the_session_continues() {
    let server = Server::start().await;
    let mut c = Client::connect(server.addr).await;
    for junk in [
        "a1 FROB",
        "a2 LOGIN",
        "a3 SELECT",
        "(((",
        "a4 FETCH x",
        "a5 UID",
        "\u{1}\u{2}",
    ] {
        c.send(format!("{junk}\r\n").as_bytes()).await;
        let line = c.line(Duration::from_secs(5)).await.expect("reply");
        assert!(line.contains(" BAD "), "{junk}: {line}");
    }
    // Not logged in: selected-state commands are refused, not crashed on.
    let r = c.run("b1 FETCH 1 FLAGS").await;
    assert!(r.last().expect("reply").starts_with("b1 BAD"), "{r:?}");
    let r = c.run("b2 NOOP").await;
    assert!(r.last().expect("reply").starts_with("b2 OK"), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_enforced_before_reading() {
    let config = ImapConfig {
        max_line: 1024,
        max_message_size: 4096,
        ..Default::default()
    };
    let server = Server::start_with(PlaintextPolicy::Loopback, config).await;
    let mut c = Client::login(server.addr).await;
    let long = format!("x1 NOOP {}\r\n", "a".repeat(100_000));
    c.send(long.as_bytes()).await;
    let line = c.line(Duration::from_secs(5)).await.expect("reply");
    assert!(line.starts_with("x1 BAD [TOOBIG]"), "{line}");
    // A synchronising literal over APPENDLIMIT is refused without a continuation.
    c.send(b"x2 APPEND INBOX {5000}\r\n").await;
    let line = c.line(Duration::from_secs(5)).await.expect("reply");
    assert!(line.starts_with("x2 NO [TOOBIG]"), "{line}");
    let r = c.run("x3 NOOP").await;
    assert!(r.last().expect("reply").starts_with("x3 OK"), "{r:?}");
    // LITERAL+ within the limit needs no continuation.
    c.send(b"x4 APPEND INBOX {24+}\r\nSubject: hi\r\n\r\nliteral+\r\n")
        .await;
    let r = c.until("x4").await;
    assert!(r.last().expect("reply").starts_with("x4 OK [APPENDUID"), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_are_refused_and_plaintext_needs_tls_when_configured() {
    let server = Server::start().await;
    let mut c = Client::connect(server.addr).await;
    let r = c.run("a LOGIN alice@example.test wrong").await;
    assert!(
        r.last().expect("reply").starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{r:?}"
    );
    let r = c
        .run(&format!("b LOGIN {} \"{}\"", common::USER, common::PASSWORD))
        .await;
    assert!(r.last().expect("reply").starts_with("b OK"), "{r:?}");
    server.stop().await;

    let strict = Server::start_with(PlaintextPolicy::Never, ImapConfig::default()).await;
    let mut c = Client::connect(strict.addr).await;
    assert!(
        c.greeting.contains("LOGINDISABLED") && c.greeting.contains("STARTTLS"),
        "{}",
        c.greeting
    );
    let r = c
        .run(&format!("a LOGIN {} \"{}\"", common::USER, common::PASSWORD))
        .await;
    assert!(r.last().expect("reply").starts_with("a NO [PRIVACYREQUIRED]"), "{r:?}");
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_dropped_without_slowing_others() {
    let config = ImapConfig {
        write_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let server = Server::start_with(PlaintextPolicy::Loopback, config).await;
    let body = vec![b'z'; 200_000];
    let mut message = b"Subject: big\r\n\r\n".to_vec();
    message.extend_from_slice(&body);
    server.deliver(vec![message; 40]).await;
    // The stuck client asks for 8 MB and never reads a byte of it.
    let mut stuck = Client::login(server.addr).await;
    stuck.run("s SELECT INBOX").await;
    stuck.send(b"f FETCH 1:* BODY.PEEK[]\r\n").await;
    // Meanwhile another client is served at once.
    let started = std::time::Instant::now();
    let mut other = Client::login(server.addr).await;
    let r = other.run("s SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 40 EXISTS"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // After the write timeout the stuck one is disconnected: reading drains what was
    // sent and then hits the end of the stream.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut total = 0usize;
    while let Some(line) = stuck.line(Duration::from_secs(2)).await {
        total += line.len();
    }
    assert!(
        total < 8_000_000,
        "the server gave up before sending everything ({total} bytes)"
    );
    server.stop().await;
}
