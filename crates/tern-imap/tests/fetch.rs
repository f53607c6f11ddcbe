//! FETCH (RFC 9051 §6.4.5): sections and partials, ENVELOPE and BODYSTRUCTURE, BINARY
//! (RFC 3516), SAVEDATE (RFC 8514), CHANGEDSINCE (RFC 7162), implicit \Seen, and large
//! messages streamed byte-exact.

mod common;

use std::time::Duration;

use common::{Client, Server};

const MIXED: &[u8] = b"From: \"Bob Example\" <bob@example.org>\r\nTo: alice@example.test, Team: carol@example.net;\r\nSubject: report\r\nMessage-ID: <r1@example.org>\r\nContent-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n--xx\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--xx--\r\n";

/// Reads one FETCH response with a literal: the line, then `n` bytes, then the rest.
async fn literal_of(c: &mut Client, command: &str) -> Vec<u8> {
    let tag = command.split(' ').next().expect("tag").to_string();
    c.send(format!("{command}\r\n").as_bytes()).await;
    let head = c.line(Duration::from_secs(10)).await.expect("fetch line");
    let open = head.rfind('{').expect("literal");
    let n: usize = head[open + 1..head.len() - 1].parse().expect("length");
    let bytes = c.read_exact(n).await;
    c.until(&tag).await;
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn sections_structure_binary_and_savedate() {
    let server = Server::start().await;
    server.deliver(vec![MIXED.to_vec()]).await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;

    let r = c.run("a FETCH 1 (ENVELOPE)").await;
    assert!(
        r[0].contains("((\"Bob Example\" NIL \"bob\" \"example.org\"))"),
        "{r:?}"
    );
    assert!(
        r[0].contains("(NIL NIL \"Team\" NIL)(NIL NIL \"carol\" \"example.net\")(NIL NIL NIL NIL)"),
        "group syntax: {r:?}"
    );
    let r = c.run("b FETCH 1 (BODYSTRUCTURE)").await;
    assert!(r[0].contains("\"QUOTED-PRINTABLE\""), "{r:?}");
    assert!(r[0].contains("\"MIXED\" (\"BOUNDARY\" \"xx\")"), "{r:?}");

    assert_eq!(literal_of(&mut c, "c FETCH 1 BODY.PEEK[1]").await, b"Gr=C3=BC=C3=9Fe");
    assert_eq!(
        literal_of(&mut c, "d FETCH 1 BODY.PEEK[HEADER.FIELDS (subject)]").await,
        b"Subject: report\r\n\r\n"
    );
    assert_eq!(literal_of(&mut c, "e FETCH 1 BODY.PEEK[]<0.4>").await, b"From");
    assert!(
        literal_of(&mut c, "f FETCH 1 BODY.PEEK[2.MIME]")
            .await
            .starts_with(b"Content-Type: application/octet-stream")
    );
    assert_eq!(literal_of(&mut c, "g FETCH 1 BINARY.PEEK[1]").await, "Grüße".as_bytes());
    assert_eq!(literal_of(&mut c, "h FETCH 1 BINARY.PEEK[2]").await, [0u8, 1, 2, 255]);
    let r = c.run("i FETCH 1 (BINARY.SIZE[2] SAVEDATE FLAGS)").await;
    assert!(r[0].contains("BINARY.SIZE[2] 4"), "{r:?}");
    assert!(r[0].contains("SAVEDATE \""), "{r:?}");
    assert!(r[0].contains("FLAGS ()"), "PEEK left \\Seen alone: {r:?}");

    // A body fetch without PEEK sets \Seen and says so.
    let r = c.run("j FETCH 1 BODY[TEXT]").await;
    assert!(r.iter().any(|l| l.contains("FLAGS (\\Seen)")), "{r:?}");

    // CHANGEDSINCE shows only what changed after the given modseq.
    let r = c.run("k FETCH 1 (FLAGS) (CHANGEDSINCE 1)").await;
    assert!(r[0].contains("MODSEQ ("), "{r:?}");
    let r = c.run("l FETCH 1 (FLAGS) (CHANGEDSINCE 999999)").await;
    assert_eq!(r.len(), 1, "{r:?}");

    // Sequence numbers past the end are an error; UIDs past the end are not.
    let r = c.run("m FETCH 5 FLAGS").await;
    assert!(r.last().expect("tagged").starts_with("m BAD"), "{r:?}");
    let r = c.run("n UID FETCH 5:9 FLAGS").await;
    assert_eq!(r, ["n OK FETCH completed"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_messages_are_byte_exact() {
    let server = Server::start().await;
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 3 * 1024 * 1024 {
        big.extend_from_slice(b"0123456789abcdef ..... a line of a large attachment\r\n");
    }
    big.extend_from_slice(b"no final newline");
    server.deliver(vec![big.clone()]).await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;
    assert_eq!(literal_of(&mut c, "a UID FETCH 1 BODY.PEEK[]").await, big);
    let part = literal_of(&mut c, "b UID FETCH 1 BODY.PEEK[TEXT]<1000.50>").await;
    assert_eq!(part, &big[16 + 1000..16 + 1050]);
    server.stop().await;
}
