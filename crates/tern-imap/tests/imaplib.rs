//! Python's imaplib, a client someone else wrote, against Tern over loopback.

mod common;

use common::{Server, python};
use tern_testkit::python::unhex;

const SESSION: &str = r#"
import imaplib, json, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {}
m = imaplib.IMAP4("127.0.0.1", port)
out["greeting_caps"] = sorted(m.capabilities)
m.login(user, password)
typ, caps = m.capability()
out["caps"] = caps[0].decode()
typ, boxes = m.list()
out["list"] = [b.decode() for b in boxes]
typ, data = m.select("INBOX")
out["exists"] = int(data[0])
msg = b"From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: hello imaplib\r\nMessage-ID: <m1@example.org>\r\n\r\nThe quick brown fox.\r\n"
typ, data = m.append("INBOX", "(\\Flagged)", None, msg)
out["append"] = [typ, data[0].decode()]
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[] ENVELOPE)")
out["fetch_size"] = len(data)
body = [d for d in data if isinstance(d, tuple)][-1][1]
out["body_hex"] = body.hex()
typ, data = m.search(None, "FLAGGED")
out["search_flagged"] = data[0].decode()
typ, data = m.search(None, "SUBJECT", "imaplib")
out["search_subject"] = data[0].decode()
typ, data = m.search(None, "BODY", "brown")
out["search_body"] = data[0].decode()
typ, data = m.store("1", "+FLAGS", "(\\Seen $Label1)")
out["store"] = [d.decode() for d in data]
typ, data = m.fetch("1", "(BODYSTRUCTURE)")
out["bodystructure"] = data[0].decode()
typ, data = m.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
out["header_fields"] = data[0][1].decode()
typ, data = m.create("Projects/2026")
out["create"] = typ
typ, data = m.copy("1", "Projects/2026")
out["copy"] = [typ, data[0].decode()]
typ, data = m.status("Projects/2026", "(MESSAGES UIDNEXT UNSEEN)")
out["status"] = data[0].decode()
typ, data = m.store("1", "+FLAGS", "\\Deleted")
typ, data = m.expunge()
out["expunge"] = [d.decode() if d else None for d in data]
typ, data = m.select("Projects/2026")
out["projects_exists"] = int(data[0])
typ, data = m.uid("MOVE", "1:*", "INBOX") if "MOVE" in out["caps"] else ("NO", [b""])
out["move"] = typ
typ, data = m.rename("Projects/2026", "Projects/Done")
out["rename"] = typ
typ, data = m.select("INBOX")
out["inbox_after_move"] = int(data[0])
typ, data = m.noop()
m.logout()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_imaplib_session() {
    let server = Server::start().await;
    let out = python(server.port(), SESSION, &[]).await;
    println!("{out:#}");
    let caps = out["caps"].as_str().expect("caps");
    for cap in [
        "IMAP4rev2",
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "SPECIAL-USE",
        "ESEARCH",
    ] {
        assert!(caps.contains(cap), "{cap} in {caps}");
    }
    assert!(out["list"].to_string().contains("\\\\Sent"), "{}", out["list"]);
    assert_eq!(out["exists"], 0);
    assert_eq!(out["append"][0], "OK");
    assert!(out["append"][1].as_str().expect("append").contains("APPENDUID"));
    let body = unhex(out["body_hex"].as_str().expect("hex"));
    assert!(body.starts_with(b"From: Bob <bob@example.org>\r\n"));
    assert!(body.ends_with(b"The quick brown fox.\r\n"));
    assert_eq!(out["search_flagged"], "1");
    assert_eq!(out["search_subject"], "1");
    assert_eq!(out["search_body"], "1");
    assert!(out["store"][0].as_str().expect("store").contains("\\Seen"));
    assert!(
        out["bodystructure"]
            .as_str()
            .expect("bs")
            .contains("(\"TEXT\" \"PLAIN\"")
    );
    assert_eq!(out["header_fields"], "Subject: hello imaplib\r\n\r\n");
    assert_eq!(out["create"], "OK");
    assert!(out["copy"][1].as_str().expect("copy").contains("COPYUID"));
    assert!(out["status"].as_str().expect("status").contains("MESSAGES 1"));
    assert_eq!(out["expunge"][0], "1");
    assert_eq!(out["projects_exists"], 1);
    assert_eq!(out["move"], "OK");
    assert_eq!(out["rename"], "OK");
    assert_eq!(out["inbox_after_move"], 1);
    server.stop().await;
}
