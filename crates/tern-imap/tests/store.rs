//! STORE and UID STORE (RFC 9051 §6.4.6) with keywords, .SILENT and CONDSTORE's
//! UNCHANGEDSINCE and MODIFIED (RFC 7162 §3.1.3).

mod common;

use common::{Client, Server};

#[tokio::test(flavor = "multi_thread")]
async fn flags_keywords_silent_and_unchangedsince() {
    let server = Server::start().await;
    server
        .deliver(
            (1..=3)
                .map(|n| format!("Subject: {n}\r\n\r\nx\r\n").into_bytes())
                .collect(),
        )
        .await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;
    let r = c.run("a STORE 1:2 +FLAGS ($Label1 \\Flagged)").await;
    assert_eq!(r[0], "* 1 FETCH (FLAGS (\\Flagged $Label1))");
    assert_eq!(r[1], "* 2 FETCH (FLAGS (\\Flagged $Label1))");
    let r = c.run("b STORE 1 -FLAGS ($label1)").await;
    assert_eq!(
        r[0], "* 1 FETCH (FLAGS (\\Flagged))",
        "keywords are case-insensitive: {r:?}"
    );
    let r = c.run("c STORE 2 FLAGS.SILENT (\\Seen)").await;
    assert_eq!(r, ["c OK STORE completed"]);
    let r = c.run("d UID STORE 2 +FLAGS (\\Answered)").await;
    assert_eq!(r[0], "* 2 FETCH (UID 2 FLAGS (\\Seen \\Answered))");
    let r = c.run("e STORE 1 +FLAGS (\\Recent)").await;
    assert!(
        r.last().expect("tagged").starts_with("e BAD"),
        "\\Recent cannot be set: {r:?}"
    );
    let r = c.run("f STORE 9 +FLAGS (\\Seen)").await;
    assert!(r.last().expect("tagged").starts_with("f BAD"), "{r:?}");
    // Unchanged flags are reported too.
    let r = c.run("g STORE 3 -FLAGS (\\Deleted)").await;
    assert_eq!(r[0], "* 3 FETCH (FLAGS ())");

    // CONDSTORE: a STORE conditional on the modseq the client knows.
    let r = c.run("h FETCH 1:3 (MODSEQ)").await;
    let modseq_of = |line: &str| -> u64 {
        line.split("MODSEQ (")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|v| v.parse().ok())
            .expect("modseq")
    };
    let m1 = modseq_of(&r[0]);
    let m3 = modseq_of(&r[2]);
    // Someone else changes message 1.
    let mut other = Client::login(server.addr).await;
    other.run("s SELECT INBOX").await;
    other.run("x STORE 1 +FLAGS (\\Draft)").await;
    let r = c
        .run(&format!("i STORE 1,3 (UNCHANGEDSINCE {}) +FLAGS (\\Seen)", m1.max(m3)))
        .await;
    let tagged = r.last().expect("tagged");
    assert!(tagged.starts_with("i OK [MODIFIED 1]"), "{r:?}");
    assert!(
        r.iter().any(|l| l.starts_with("* 3 FETCH (FLAGS (\\Seen) MODSEQ (")),
        "{r:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_sessions_flag_changes_are_seen_by_fetch_and_search() {
    let server = Server::start().await;
    server
        .deliver(vec![
            b"Subject: a\r\n\r\nx\r\n".to_vec(),
            b"Subject: b\r\n\r\ny\r\n".to_vec(),
        ])
        .await;
    let mut a = Client::login(server.addr).await;
    let mut b = Client::login(server.addr).await;
    a.run("s SELECT INBOX").await;
    b.run("s SELECT INBOX").await;
    let r = a.run("f1 SEARCH FLAGGED").await;
    assert_eq!(r[0], "* SEARCH");
    b.run("x STORE 2 +FLAGS.SILENT (\\Flagged $Done)").await;
    let r = a.run("f2 SEARCH FLAGGED KEYWORD $Done").await;
    assert!(r.contains(&"* SEARCH 2".to_string()), "{r:?}");
    let r = a.run("f3 FETCH 2 (FLAGS)").await;
    assert!(r.iter().any(|l| l == "* 2 FETCH (FLAGS (\\Flagged $Done))"), "{r:?}");
    // And the session's own changes, made silently, too.
    a.run("y STORE 1 +FLAGS.SILENT (\\Seen)").await;
    let r = a.run("f4 SEARCH SEEN").await;
    assert_eq!(r[0], "* SEARCH 1");
    server.stop().await;
}
