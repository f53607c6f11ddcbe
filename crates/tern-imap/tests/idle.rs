//! Several writers on one mailbox: two IMAP sessions and delivery, announced to each
//! other with the right untagged responses (RFC 9051 §7.4, §7.5.1; IDLE, RFC 2177).

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server};

fn message(subject: &str) -> Vec<u8> {
    format!("From: bob@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_pushes_delivery_flag_changes_and_expunges_from_other_sessions() {
    let server = Server::start().await;
    server.deliver(vec![message("one")]).await;
    let mut watcher = Client::login(server.addr).await;
    let mut other = Client::login(server.addr).await;
    let r = watcher.run("s SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    other.run("s SELECT INBOX").await;

    watcher.send(b"i IDLE\r\n").await;
    assert_eq!(watcher.line(Duration::from_secs(5)).await.as_deref(), Some("+ idling"));

    // Delivery (a third writer) shows up as EXISTS while idling.
    let started = Instant::now();
    server.deliver(vec![message("two")]).await;
    let pushed = watcher.line(Duration::from_secs(5)).await;
    let latency = started.elapsed();
    assert_eq!(pushed.as_deref(), Some("* 2 EXISTS"));
    println!("IDLE pushed a delivery {latency:?} after the store acknowledged it");

    // Another session's flag change arrives as FETCH FLAGS.
    let r = other.run("f STORE 1 +FLAGS (\\Flagged)").await;
    assert!(r.last().expect("tagged").starts_with("f OK"), "{r:?}");
    let pushed = watcher.line(Duration::from_secs(5)).await.expect("flag update");
    assert!(pushed.starts_with("* 1 FETCH (UID 1 FLAGS (\\Flagged)"), "{pushed}");

    // And its expunge as EXPUNGE, which IDLE may send at any time.
    other.run("d STORE 1 +FLAGS (\\Deleted)").await;
    let _ = watcher.line(Duration::from_secs(5)).await;
    let r = other.run("e EXPUNGE").await;
    assert!(r.contains(&"* 1 EXPUNGE".to_string()), "{r:?}");
    assert_eq!(
        watcher.line(Duration::from_secs(5)).await.as_deref(),
        Some("* 1 EXPUNGE")
    );

    watcher.send(b"DONE\r\n").await;
    assert_eq!(
        watcher.line(Duration::from_secs(5)).await.as_deref(),
        Some("i OK IDLE terminated")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expunges_wait_while_sequence_numbers_are_in_use() {
    let server = Server::start().await;
    server.deliver(vec![message("a"), message("b"), message("c")]).await;
    let mut a = Client::login(server.addr).await;
    let mut b = Client::login(server.addr).await;
    a.run("s SELECT INBOX").await;
    b.run("s SELECT INBOX").await;
    b.run("d STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    b.run("e EXPUNGE").await;
    // RFC 9051 §7.5.1: no EXPUNGE during FETCH; message 3 keeps its number.
    let r = a.run("f FETCH 3 (UID)").await;
    assert!(r.iter().all(|l| !l.contains("EXPUNGE")), "{r:?}");
    assert!(r.iter().any(|l| l.starts_with("* 3 FETCH (UID 3")), "{r:?}");
    // NOOP may send it; afterwards the numbers have moved down.
    let r = a.run("n NOOP").await;
    assert!(r.contains(&"* 2 EXPUNGE".to_string()), "{r:?}");
    let r = a.run("f FETCH 2 (UID)").await;
    assert!(r.iter().any(|l| l.starts_with("* 2 FETCH (UID 3")), "{r:?}");
    // A QRESYNC session hears VANISHED instead.
    let mut q = Client::login(server.addr).await;
    q.run("en ENABLE QRESYNC").await;
    q.run("s SELECT INBOX").await;
    b.run("d STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.run("e EXPUNGE").await;
    let r = q.run("n NOOP").await;
    assert!(r.contains(&"* VANISHED 1".to_string()), "{r:?}");
    server.stop().await;
}
