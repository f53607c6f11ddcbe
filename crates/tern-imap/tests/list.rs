//! LIST, LSUB and their extensions: LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819),
//! SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348), modified UTF-7 names (RFC 3501 §5.1.3).

mod common;

use common::{Client, Server};

#[tokio::test(flavor = "multi_thread")]
async fn list_patterns_attributes_and_extended_options() {
    let server = Server::start().await;
    let mut c = Client::login(server.addr).await;
    for name in ["Projects/2026/Q1", "Entwürfe", "Tom & Jerry"] {
        let utf7 = tern_imap_names(name);
        let r = c.run(&format!("c CREATE \"{utf7}\"")).await;
        assert!(r.last().expect("reply").starts_with("c OK"), "{name}: {r:?}");
    }
    let r = c.run("a LIST \"\" %").await;
    assert!(
        r.contains(&"* LIST (\\HasChildren) \"/\" \"Projects\"".to_string()),
        "{r:?}"
    );
    assert!(
        r.contains(&"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"".to_string()),
        "{r:?}"
    );
    assert!(
        r.contains(&"* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\"".to_string()),
        "{r:?}"
    );
    assert!(
        r.contains(&"* LIST (\\HasNoChildren) \"/\" \"Tom &- Jerry\"".to_string()),
        "{r:?}"
    );
    assert!(
        !r.iter().any(|l| l.contains("Projects/2026")),
        "% stops at the delimiter: {r:?}"
    );

    let r = c.run("b LIST \"Projects/\" *").await;
    assert_eq!(r.len(), 3, "{r:?}");
    let r = c.run("d LIST \"\" \"\"").await;
    assert_eq!(r[0], "* LIST (\\Noselect) \"/\" \"\"");

    // SPECIAL-USE selection and LIST-STATUS.
    let r = c
        .run("e LIST (SPECIAL-USE) \"\" * RETURN (STATUS (MESSAGES UNSEEN))")
        .await;
    let lists: Vec<_> = r.iter().filter(|l| l.starts_with("* LIST")).collect();
    assert_eq!(lists.len(), 5, "Sent, Drafts, Trash, Junk, Archive: {r:?}");
    assert!(
        r.contains(&"* STATUS \"Sent\" (MESSAGES 0 UNSEEN 0)".to_string()),
        "{r:?}"
    );

    // Subscriptions: SUBSCRIBED selection, RECURSIVEMATCH with CHILDINFO, LSUB.
    // CREATE does not subscribe (RFC 9051 §6.3.4); only the leaf is subscribed.
    let r = c.run("u SUBSCRIBE Projects/2026/Q1").await;
    assert!(r.last().expect("reply").starts_with("u OK"), "{r:?}");
    let r = c.run("f LIST (SUBSCRIBED RECURSIVEMATCH) \"\" Projects*").await;
    assert!(
        r.contains(&"* LIST (\\HasChildren) \"/\" \"Projects\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".to_string()),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("\\Subscribed") && l.ends_with("\"Projects/2026/Q1\"")),
        "{r:?}"
    );
    let r = c.run("g LSUB \"\" *").await;
    assert!(!r.iter().any(|l| l.ends_with("\"Projects\"")), "{r:?}");
    assert!(r.iter().any(|l| l.ends_with("\"INBOX\"")), "{r:?}");

    // Multiple patterns, and a bad option.
    let r = c.run("h LIST \"\" (INBOX Sent)").await;
    assert_eq!(r.iter().filter(|l| l.starts_with("* LIST")).count(), 2, "{r:?}");
    let r = c.run("i LIST (BOGUS) \"\" *").await;
    assert!(r.last().expect("reply").starts_with("i BAD"), "{r:?}");

    // Rev2 and UTF8=ACCEPT clients see UTF-8 names.
    c.run("en ENABLE UTF8=ACCEPT").await;
    let r = c.run("j LIST \"\" Entw*").await;
    assert!(
        r.contains(&"* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"".to_string()),
        "{r:?}"
    );
    server.stop().await;
}

/// Modified UTF-7 for the names used above (RFC 3501 §5.1.3).
fn tern_imap_names(name: &str) -> &'static str {
    match name {
        "Entwürfe" => "Entw&APw-rfe",
        "Tom & Jerry" => "Tom &- Jerry",
        _ => Box::leak(name.to_string().into_boxed_str()),
    }
}
