//! SEARCH and UID SEARCH (RFC 9051 §6.4.4), ESEARCH (RFC 4731), SEARCHRES (RFC 5182),
//! SAVEDATE keys (RFC 8514), MODSEQ (RFC 7162 §3.1.5).

mod common;

use common::{Client, Server};

fn msg(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nX-Project: {subject}-tag\r\n\r\n{body}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn search_keys_results_and_saved_results() {
    let server = Server::start().await;
    server
        .deliver(vec![
            msg("Bob <bob@example.org>", "Quarterly report", "numbers attached"),
            msg("Carol <carol@example.net>", "Lunch?", "pizza or sushi"),
            msg(
                "=?utf-8?q?J=C3=BCrgen?= <j@example.de>",
                "Grüße",
                "Schöne Grüße aus Köln",
            ),
            msg("bob@example.org", "Re: Quarterly report", "looks good"),
        ])
        .await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;
    c.run("f STORE 2 +FLAGS (\\Seen $Important)").await;

    let cases = [
        ("SEARCH FROM bob", "* SEARCH 1 4"),
        ("SEARCH SUBJECT \"quarterly\"", "* SEARCH 1 4"),
        ("SEARCH BODY pizza", "* SEARCH 2"),
        ("SEARCH TEXT sushi", "* SEARCH 2"),
        ("SEARCH SEEN", "* SEARCH 2"),
        ("SEARCH UNSEEN", "* SEARCH 1 3 4"),
        ("SEARCH KEYWORD $Important", "* SEARCH 2"),
        ("SEARCH NOT FROM bob", "* SEARCH 2 3"),
        ("SEARCH OR FROM carol SUBJECT lunch", "* SEARCH 2"),
        ("SEARCH 2:3 UNSEEN", "* SEARCH 3"),
        ("UID SEARCH UID 3:*", "* SEARCH 3 4"),
        ("SEARCH HEADER X-Project lunch", "* SEARCH 2"),
        ("SEARCH SENTON 24-Nov-2026", "* SEARCH 1 2 3 4"),
        ("SEARCH SENTBEFORE 1-Jan-2020", "* SEARCH"),
        ("SEARCH LARGER 100000", "* SEARCH"),
        ("SEARCH SAVEDATESUPPORTED", "* SEARCH 1 2 3 4"),
        ("SEARCH SAVEDBEFORE 1-Jan-2000", "* SEARCH"),
        ("SEARCH CHARSET UTF-8 FROM {7+}\r\nJürgen", "* SEARCH 3"),
    ];
    for (command, want) in cases {
        let r = c.run(&format!("t {command}")).await;
        assert_eq!(r[0], want, "{command}: {r:?}");
        assert!(r.last().expect("tagged").starts_with("t OK"), "{command}: {r:?}");
    }
    let r = c.run("t SEARCH CHARSET KOI8-R ALL").await;
    assert!(r.last().expect("tagged").starts_with("t NO [BADCHARSET"), "{r:?}");

    // ESEARCH.
    let r = c.run("e1 UID SEARCH RETURN (MIN MAX COUNT ALL) FROM bob").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"e1\") UID MIN 1 MAX 4 COUNT 2 ALL 1,4");
    let r = c.run("e2 SEARCH RETURN () UNSEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"e2\") ALL 1,3:4");
    let r = c.run("e3 SEARCH RETURN (COUNT) FROM nobody").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"e3\") COUNT 0");

    // SEARCHRES: save, then use $ in FETCH and SEARCH.
    let r = c.run("r1 SEARCH RETURN (SAVE) FROM bob").await;
    assert_eq!(r.len(), 1, "SAVE alone returns nothing: {r:?}");
    let r = c.run("r2 FETCH $ (FLAGS)").await;
    assert_eq!(r.iter().filter(|l| l.contains(" FETCH (")).count(), 2, "{r:?}");
    let r = c.run("r3 SEARCH $ SUBJECT \"Re:\"").await;
    assert_eq!(r[0], "* SEARCH 4");

    // CONDSTORE: MODSEQ criterion and the highest modseq of the matches.
    let r = c.run("m SEARCH MODSEQ 1").await;
    assert!(r[0].starts_with("* SEARCH 1 2 3 4 (MODSEQ "), "{r:?}");
    // IMAP4rev2 sessions always get ESEARCH.
    c.run("en ENABLE IMAP4rev2").await;
    let r = c.run("v SEARCH SEEN").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"v\") ALL 2");
    server.stop().await;
}
