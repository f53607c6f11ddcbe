//! APPEND (RFC 9051 §6.3.12): flags and date kept, APPENDUID (RFC 4315), TRYCREATE,
//! UTF8=ACCEPT's UTF8 literal form (RFC 6855 §4), and the new message announced to the
//! session that has the mailbox selected.

mod common;

use std::time::Duration;

use common::{Client, Server};

#[tokio::test(flavor = "multi_thread")]
async fn append_keeps_flags_and_date_and_announces_the_message() {
    let server = Server::start().await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;
    let message = "Subject: hi\r\n\r\nbody\r\n";
    c.send(
        format!(
            "a APPEND INBOX (\\Seen $Work) \"05-Jan-2024 10:11:12 +0100\" {{{}}}\r\n",
            message.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        c.line(Duration::from_secs(5)).await.as_deref(),
        Some("+ Ready for literal data")
    );
    c.send(format!("{message}\r\n").as_bytes()).await;
    let r = c.until("a").await;
    assert_eq!(r[0], "* 1 EXISTS", "the selected mailbox hears of it at once: {r:?}");
    let tagged = r.last().expect("tagged");
    assert!(
        tagged.starts_with("a OK [APPENDUID ") && tagged.contains(" 1]"),
        "{r:?}"
    );
    let r = c.run("f FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)").await;
    assert_eq!(
        r[0],
        format!(
            "* 1 FETCH (FLAGS (\\Seen $Work) INTERNALDATE \"05-Jan-2024 09:11:12 +0000\" RFC822.SIZE {})",
            message.len()
        )
    );

    let r = c.run("b APPEND Nope {4+}\r\nabcd").await;
    assert!(r.last().expect("tagged").starts_with("b NO [TRYCREATE]"), "{r:?}");
    let r = c.run("c APPEND INBOX {0+}\r\n").await;
    assert!(r.last().expect("tagged").starts_with("c NO"), "an empty message: {r:?}");

    // UTF8=ACCEPT: APPEND INBOX UTF8 (~{n}…) with a UTF-8 header.
    c.run("e ENABLE UTF8=ACCEPT").await;
    let utf8 = "Subject: Grüße\r\nFrom: Jürgen <j@example.de>\r\n\r\nHallo\r\n";
    let r = c
        .run(&format!("g APPEND INBOX UTF8 (~{{{}+}}\r\n{utf8})", utf8.len()))
        .await;
    assert!(r.last().expect("tagged").starts_with("g OK [APPENDUID"), "{r:?}");
    let r = c.run("h FETCH 2 (ENVELOPE)").await;
    assert!(
        r[0].contains("\"Jürgen\" NIL \"j\" \"example.de\""),
        "UTF-8 names as they are: {r:?}"
    );
    server.stop().await;
}
