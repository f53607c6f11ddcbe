//! Mailbox management: CREATE (with CREATE-SPECIAL-USE), DELETE, RENAME, SUBSCRIBE,
//! STATUS (with SIZE, DELETED, HIGHESTMODSEQ, DELETED-STORAGE) and QUOTA (RFC 9208).

mod common;

use common::{Client, Server};
use tern_store::Store;

#[tokio::test(flavor = "multi_thread")]
async fn create_rename_delete_status_and_quota() {
    let server = Server::start().await;
    let mut c = Client::login(server.addr).await;
    let ok = |r: &[String], tag: &str| assert!(r.last().expect("reply").starts_with(&format!("{tag} OK")), "{r:?}");

    ok(&c.run("a CREATE Work/").await, "a");
    let r = c.run("b CREATE Work").await;
    assert!(r.last().expect("reply").starts_with("b NO [ALREADYEXISTS]"), "{r:?}");
    ok(&c.run("c CREATE \"Sent Items\" (USE (\\Sent))").await, "c");
    let r = c.run("d LIST \"\" \"Sent Items\"").await;
    assert!(r[0].contains("\\Sent"), "{r:?}");
    let r = c.run("e CREATE x (USE (\\Bogus))").await;
    assert!(r.last().expect("reply").starts_with("e NO [USEATTR]"), "{r:?}");

    ok(&c.run("f CREATE Work/Clients").await, "f");
    let r = c.run("g DELETE Work").await;
    assert!(r.last().expect("reply").starts_with("g NO [HASCHILDREN]"), "{r:?}");
    ok(&c.run("h RENAME Work Projects").await, "h");
    let r = c.run("i LIST \"\" Projects/*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" \"Projects/Clients\"");
    let r = c.run("j DELETE Nope").await;
    assert!(r.last().expect("reply").starts_with("j NO [NONEXISTENT]"), "{r:?}");
    let r = c.run("k DELETE INBOX").await;
    assert!(r.last().expect("reply").starts_with("k NO"), "{r:?}");
    ok(&c.run("l DELETE Projects/Clients").await, "l");

    server
        .deliver(vec![
            b"Subject: a\r\n\r\nfirst\r\n".to_vec(),
            vec![b'x'; 3000]
                .into_iter()
                .chain(b"\r\n".iter().copied())
                .collect::<Vec<u8>>(),
        ])
        .await;
    c.run("s SELECT INBOX").await;
    c.run("t STORE 2 +FLAGS (\\Deleted)").await;
    let r = c
        .run("m STATUS INBOX (MESSAGES UNSEEN DELETED SIZE UIDNEXT HIGHESTMODSEQ DELETED-STORAGE)")
        .await;
    assert!(
        r[0].starts_with("* STATUS \"INBOX\" (MESSAGES 2 UNSEEN 2 DELETED 1 SIZE 3023 UIDNEXT 3 HIGHESTMODSEQ "),
        "{r:?}"
    );
    assert!(r[0].ends_with(" DELETED-STORAGE 3)"), "{r:?}");

    // No quota: no quota root. With one (set by the administrator): STORAGE in KiB.
    let r = c.run("n GETQUOTAROOT INBOX").await;
    assert_eq!(r[0], "* QUOTAROOT \"INBOX\"");
    server
        .store
        .set_quota(common::USER, Some(10 * 1024 * 1024))
        .await
        .expect("quota");
    let r = c.run("o GETQUOTAROOT INBOX").await;
    assert_eq!(r[0], "* QUOTAROOT \"INBOX\" \"\"");
    assert_eq!(r[1], "* QUOTA \"\" (STORAGE 3 10240)");
    let r = c.run("p GETQUOTA \"\"").await;
    assert_eq!(r[0], "* QUOTA \"\" (STORAGE 3 10240)");
    let r = c.run("q SETQUOTA \"\" (STORAGE 1)").await;
    assert!(r.last().expect("reply").starts_with("q NO [NOPERM]"), "{r:?}");

    // Over quota, APPEND says OVERQUOTA.
    server.store.set_quota(common::USER, Some(4000)).await.expect("quota");
    c.send(b"r APPEND INBOX {2000+}\r\n").await;
    c.send(&vec![b'y'; 2000]).await;
    c.send(b"\r\n").await;
    let r = c.until("r").await;
    assert!(r.last().expect("reply").starts_with("r NO [OVERQUOTA]"), "{r:?}");
    server.stop().await;
}
