//! Commands valid in any state and the small session-wide ones: CAPABILITY, NOOP,
//! LOGOUT, ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342).

mod common;

use common::{Client, Server};

#[tokio::test(flavor = "multi_thread")]
async fn capability_id_enable_namespace_logout() {
    let server = Server::start().await;
    let mut c = Client::connect(server.addr).await;
    assert!(
        c.greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 "),
        "{}",
        c.greeting
    );
    let r = c.run("a CAPABILITY").await;
    assert!(r[0].contains("STARTTLS") && r[0].contains("AUTH=PLAIN"), "{r:?}");
    assert!(!r[0].contains("QRESYNC"), "extensions after login only: {r:?}");
    let r = c.run("b ID (\"name\" \"Thunderbird\" \"version\" \"128.0\")").await;
    assert!(r[0].starts_with("* ID (\"name\" \"Tern\""), "{r:?}");
    let r = c.run("c ID NIL").await;
    assert!(r.last().expect("tagged").starts_with("c OK"), "{r:?}");
    let r = c.run("d ENABLE CONDSTORE").await;
    assert!(
        r.last().expect("tagged").starts_with("d BAD"),
        "ENABLE needs a login: {r:?}"
    );

    let mut c = Client::login(server.addr).await;
    let r = c.run("a CAPABILITY").await;
    for cap in [
        "NAMESPACE",
        "UNSELECT",
        "UIDPLUS",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "SPECIAL-USE",
        "CREATE-SPECIAL-USE",
        "LIST-EXTENDED",
        "LIST-STATUS",
        "STATUS=SIZE",
        "LITERAL+",
        "ESEARCH",
        "SEARCHRES",
        "SORT",
        "THREAD=REFERENCES",
        "THREAD=ORDEREDSUBJECT",
        "BINARY",
        "CHILDREN",
        "APPENDLIMIT=",
        "QUOTA",
        "UTF8=ACCEPT",
        "SAVEDATE",
        "COMPRESS=DEFLATE",
        "IDLE",
        "ID",
        "ENABLE",
        "SASL-IR",
    ] {
        assert!(
            r[0].split(' ')
                .any(|c| c == cap || (cap.ends_with('=') && c.starts_with(cap))),
            "{cap}: {r:?}"
        );
    }
    let r = c.run("b ENABLE CONDSTORE QRESYNC X-UNKNOWN").await;
    assert_eq!(r[0], "* ENABLED CONDSTORE QRESYNC");
    let r = c.run("c ENABLE CONDSTORE").await;
    assert_eq!(r[0], "* ENABLED", "nothing new to enable: {r:?}");
    let r = c.run("d NAMESPACE").await;
    assert_eq!(r[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL");
    let r = c.run("e NOOP").await;
    assert_eq!(r, ["e OK NOOP completed"]);
    let r = c.run("f LOGOUT").await;
    assert_eq!(r, ["* BYE Logging out", "f OK LOGOUT completed"]);
    server.stop().await;
}
