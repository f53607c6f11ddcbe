//! SELECT and EXAMINE (RFC 9051 §6.3.2-3), CONDSTORE (RFC 7162 §3.1) and QRESYNC
//! (RFC 7162 §3.2) resynchronisation, CLOSE and UNSELECT, IMAP4rev1 versus rev2.

mod common;

use common::{Client, Server};

fn msg(n: u32) -> Vec<u8> {
    format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn select_responses_rev1_and_rev2() {
    let server = Server::start().await;
    server.deliver(vec![msg(1), msg(2), msg(3)]).await;
    let mut c = Client::login(server.addr).await;
    c.run("f STORE 1 +FLAGS (\\Seen)").await; // not selected: BAD, harmless
    let r = c.run("s SELECT INBOX").await;
    for want in [
        "* 3 EXISTS",
        "* 0 RECENT",
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        "* OK [UIDNEXT 4] Predicted next UID",
        "* OK [UNSEEN 1] First unseen",
    ] {
        assert!(r.iter().any(|l| l == want), "{want}: {r:?}");
    }
    assert!(r.iter().any(|l| l.starts_with("* OK [UIDVALIDITY ")), "{r:?}");
    assert!(r.iter().any(|l| l.starts_with("* OK [HIGHESTMODSEQ ")), "{r:?}");
    assert!(r.iter().any(|l| l.starts_with("* OK [PERMANENTFLAGS (")), "{r:?}");
    assert!(r.last().expect("tagged").starts_with("s OK [READ-WRITE]"), "{r:?}");

    // EXAMINE is read-only; switching mailboxes says CLOSED.
    let r = c.run("e EXAMINE INBOX").await;
    assert!(
        r.contains(&"* OK [CLOSED] Previous mailbox closed".to_string()),
        "{r:?}"
    );
    assert!(r.last().expect("tagged").starts_with("e OK [READ-ONLY]"), "{r:?}");
    let r = c.run("t STORE 1 +FLAGS (\\Seen)").await;
    assert!(r.last().expect("tagged").starts_with("t NO [READ-ONLY]"), "{r:?}");
    // A failed SELECT leaves nothing selected.
    let r = c.run("x SELECT Nope").await;
    assert!(r.last().expect("tagged").starts_with("x NO [NONEXISTENT]"), "{r:?}");
    let r = c.run("y FETCH 1 FLAGS").await;
    assert!(r.last().expect("tagged").starts_with("y BAD"), "{r:?}");

    // IMAP4rev2: no RECENT, no UNSEEN code, and the LIST response.
    c.run("en ENABLE IMAP4rev2").await;
    let r = c.run("s SELECT INBOX").await;
    assert!(
        !r.iter().any(|l| l.contains("RECENT") || l.contains("[UNSEEN")),
        "{r:?}"
    );
    assert!(r.contains(&"* LIST () \"/\" \"INBOX\"".to_string()), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn close_expunges_and_unselect_does_not() {
    let server = Server::start().await;
    server.deliver(vec![msg(1), msg(2)]).await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;
    c.run("d STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.run("u UNSELECT").await;
    assert_eq!(r, ["u OK UNSELECT completed"]);
    let r = c.run("st STATUS INBOX (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (MESSAGES 2)");
    c.run("s SELECT INBOX").await;
    let r = c.run("c CLOSE").await;
    assert_eq!(r, ["c OK CLOSE completed"], "CLOSE sends no EXPUNGE");
    let r = c.run("st STATUS INBOX (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (MESSAGES 1)");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn qresync_reports_what_changed_while_away() {
    let server = Server::start().await;
    server.deliver(vec![msg(1), msg(2), msg(3), msg(4)]).await;
    let mut c = Client::login(server.addr).await;
    c.run("en ENABLE QRESYNC").await;
    let r = c.run("s SELECT INBOX").await;
    let validity: u32 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|l| l.split(']').next())
        .and_then(|v| v.parse().ok())
        .expect("uidvalidity");
    let modseq: u64 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ "))
        .and_then(|l| l.split(']').next())
        .and_then(|v| v.parse().ok())
        .expect("highestmodseq");
    c.run("l LOGOUT").await;

    // While the client is away: a flag change, an expunge, a new message.
    let mut other = Client::login(server.addr).await;
    other.run("s SELECT INBOX").await;
    other.run("f STORE 2 +FLAGS (\\Flagged)").await;
    other.run("d STORE 3 +FLAGS (\\Deleted)").await;
    other.run("e EXPUNGE").await;
    server.deliver(vec![msg(5)]).await;

    let mut c = Client::login(server.addr).await;
    c.run("en ENABLE QRESYNC").await;
    let r = c
        .run(&format!("s SELECT INBOX (QRESYNC ({validity} {modseq} 1:5))"))
        .await;
    assert!(r.contains(&"* VANISHED (EARLIER) 3".to_string()), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Deleted)")
                || l.starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged)")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|l| l.starts_with("* 4 FETCH (UID 5 ")),
        "the new message: {r:?}"
    );
    // UID FETCH with VANISHED (RFC 7162 §3.2.6).
    let r = c
        .run(&format!("v UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"))
        .await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 3", "{r:?}");
    // QRESYNC without ENABLE is refused.
    let mut d = Client::login(server.addr).await;
    let r = d.run(&format!("s SELECT INBOX (QRESYNC ({validity} {modseq}))")).await;
    assert!(r.last().expect("tagged").starts_with("s BAD"), "{r:?}");
    server.stop().await;
}
