//! COPY, MOVE (RFC 6851) and EXPUNGE / UID EXPUNGE (RFC 9051 §6.4.3, RFC 4315), with
//! the UIDPLUS response codes.

mod common;

use common::{Client, Server};

#[tokio::test(flavor = "multi_thread")]
async fn copy_move_and_expunge() {
    let server = Server::start().await;
    server
        .deliver(
            (1..=5)
                .map(|n| format!("Subject: {n}\r\n\r\nx\r\n").into_bytes())
                .collect(),
        )
        .await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;
    let r = c.run("a COPY 1:2 Archive").await;
    let tagged = r.last().expect("tagged");
    assert!(
        tagged.starts_with("a OK [COPYUID ") && tagged.contains(" 1:2 1:2]"),
        "{r:?}"
    );
    let r = c.run("b COPY 1 Nope").await;
    assert!(r.last().expect("tagged").starts_with("b NO [TRYCREATE]"), "{r:?}");

    // MOVE: COPYUID in an untagged OK, then EXPUNGE for the moved messages.
    let r = c.run("c MOVE 2:3 Archive").await;
    assert!(
        r[0].starts_with("* OK [COPYUID ") && r[0].contains(" 2:3 3:4]"),
        "{r:?}"
    );
    assert_eq!(&r[1..3], ["* 3 EXPUNGE", "* 2 EXPUNGE"]);
    let r = c.run("d UID MOVE 5 Trash").await;
    assert!(r.contains(&"* 3 EXPUNGE".to_string()), "{r:?}");

    // UID EXPUNGE removes only the named \Deleted messages.
    c.run("e STORE 1:2 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.run("f UID EXPUNGE 4").await;
    assert_eq!(r, ["* 2 EXPUNGE", "f OK EXPUNGE completed"]);
    let r = c.run("g EXPUNGE").await;
    assert_eq!(r, ["* 1 EXPUNGE", "g OK EXPUNGE completed"]);
    let r = c.run("h STATUS Archive (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"Archive\" (MESSAGES 4)");
    let r = c.run("i STATUS Trash (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"Trash\" (MESSAGES 1)");
    // An empty UID set is fine and changes nothing.
    let r = c.run("j UID COPY 100:200 Archive").await;
    assert!(r.last().expect("tagged").starts_with("j OK"), "{r:?}");
    server.stop().await;
}
