//! SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957).

mod common;

use common::{Client, Server};

fn msg(id: &str, refs: &str, from: &str, subject: &str, date: &str, body: &str) -> Vec<u8> {
    let refs = if refs.is_empty() {
        String::new()
    } else {
        format!(
            "References: {refs}\r\nIn-Reply-To: {}\r\n",
            refs.split(' ').next_back().unwrap_or("")
        )
    };
    format!("Message-ID: {id}\r\n{refs}From: {from}\r\nSubject: {subject}\r\nDate: {date}\r\n\r\n{body}\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn sort_and_thread_a_conversation() {
    let server = Server::start().await;
    server
        .deliver(vec![
            // 1: starts a thread
            msg(
                "<a@x>",
                "",
                "Zed <zed@example.org>",
                "Plans",
                "Mon, 23 Nov 2026 09:00:00 +0000",
                "x",
            ),
            // 2: unrelated, earliest
            msg(
                "<b@x>",
                "",
                "Amy <amy@example.org>",
                "Budget",
                "Sun, 22 Nov 2026 09:00:00 +0000",
                "a longer body here",
            ),
            // 3: reply to 1
            msg(
                "<c@x>",
                "<a@x>",
                "Amy <amy@example.org>",
                "Re: Plans",
                "Mon, 23 Nov 2026 10:00:00 +0000",
                "yy",
            ),
            // 4: reply to 3
            msg(
                "<d@x>",
                "<a@x> <c@x>",
                "Bob <bob@example.org>",
                "Re: Re: Plans",
                "Mon, 23 Nov 2026 11:00:00 +0000",
                "z",
            ),
            // 5: second reply to 1
            msg(
                "<e@x>",
                "<a@x>",
                "Carl <carl@example.org>",
                "Re: Plans",
                "Mon, 23 Nov 2026 12:00:00 +0000",
                "w",
            ),
        ])
        .await;
    let mut c = Client::login(server.addr).await;
    c.run("s SELECT INBOX").await;
    let cases = [
        ("SORT (DATE) UTF-8 ALL", "* SORT 2 1 3 4 5"),
        ("SORT (REVERSE DATE) UTF-8 ALL", "* SORT 5 4 3 1 2"),
        ("SORT (FROM) UTF-8 ALL", "* SORT 2 3 4 5 1"),
        ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 2 3 4 5 1"),
        ("SORT (SUBJECT DATE) UTF-8 ALL", "* SORT 2 1 3 4 5"),
        ("SORT (SIZE) UTF-8 FROM amy", "* SORT 2 3"),
        ("UID SORT (ARRIVAL) UTF-8 ALL", "* SORT 1 2 3 4 5"),
        ("THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (2)(1 (3)(4)(5))"),
        ("THREAD REFERENCES UTF-8 ALL", "* THREAD (2)(1 (3 4)(5))"),
        ("THREAD REFERENCES UTF-8 NOT FROM zed", "* THREAD (2)((3 4)(5))"),
    ];
    for (command, want) in cases {
        let r = c.run(&format!("t {command}")).await;
        assert_eq!(r[0], want, "{command}: {r:?}");
    }
    let r = c.run("t SORT (DATE) KOI8-R ALL").await;
    assert!(r.last().expect("tagged").starts_with("t NO [BADCHARSET"), "{r:?}");
    server.stop().await;
}
