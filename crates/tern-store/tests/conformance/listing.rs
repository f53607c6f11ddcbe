//! Webmail's message list: sorted pages, search-result pages, conversations.

use tern_store::{Flags, ListQuery, ListSort, NewMessage, SystemFlags, TextField};

use super::{Fixture, with_alice};

fn msg(from: &str, subject: &str, date: i64, body: &str) -> NewMessage {
    let mut m = NewMessage::new(format!(
        "From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    ));
    m.internal_date = Some(date);
    m
}

fn subjects(page: &tern_store::ListPage) -> Vec<String> {
    page.items
        .iter()
        .map(|i| i.subject.clone().unwrap_or_default())
        .collect()
}

pub async fn pages_are_sorted_and_counted(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap().id;
    let mut batch = Vec::new();
    for i in 0..25i64 {
        // Arrival order differs from UID order and from sender and subject order.
        let date = 1_700_000_000 + ((i * 7) % 25) * 60;
        let from = format!("\"{}\" <s{i}@example.org>", (b'a' + ((i * 3) % 25) as u8) as char);
        batch.push(msg(
            &from,
            &format!("Topic {:02}", (i * 11) % 25),
            date,
            &"x".repeat(i as usize),
        ));
    }
    f.store.append(inbox, batch).await.unwrap();

    let newest = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                descending: true,
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(newest.total, 25);
    assert_eq!(newest.items.len(), 10);
    let dates: Vec<i64> = newest.items.iter().map(|i| i.summary.internal_date).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{dates:?}");
    assert_eq!(dates[0], 1_700_000_000 + 24 * 60);

    let last = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                descending: true,
                offset: 20,
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(last.items.len(), 5, "the last page holds the rest");
    assert_eq!(last.items[4].summary.internal_date, 1_700_000_000);

    let by_subject = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                sort: ListSort::Subject,
                limit: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(subjects(&by_subject), ["Topic 00", "Topic 01", "Topic 02"]);

    let by_from = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                sort: ListSort::From,
                descending: true,
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<_> = by_from.items.iter().map(|i| format!("{:?}", i.from[0])).collect();
    assert!(names[0].contains("\"y\""), "{names:?}");
    assert!(names[1].contains("\"x\""), "{names:?}");

    let by_size = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                sort: ListSort::Size,
                descending: true,
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_size.items[0].preview, "x".repeat(24));
}

pub async fn search_results_page(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap().id;
    let batch = (0..12i64)
        .map(|i| {
            let word = if i % 3 == 0 { "invoice" } else { "hello" };
            msg("bob@example.org", &format!("Note {i}"), 1_700_000_000 + i, word)
        })
        .collect();
    f.store.append(inbox, batch).await.unwrap();
    let hits = f.store.search_text(inbox, TextField::Text, "invoice").await.unwrap();
    assert_eq!(hits.len(), 4);
    let page = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                only: Some(hits),
                descending: true,
                limit: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 4);
    assert_eq!(subjects(&page), ["Note 9", "Note 6", "Note 3"]);
}

pub async fn conversations_group_by_base_subject(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap().id;
    let mut batch = vec![
        msg("bob@example.org", "Lunch?", 100, "a"),
        msg("carol@example.org", "Budget", 200, "b"),
        msg("alice@example.test", "Re: Lunch?", 300, "c"),
        msg("bob@example.org", "RE: lunch?", 400, "d"),
        msg("dan@example.org", "", 500, "e"),
        msg("erin@example.org", "", 600, "f"),
    ];
    batch[2].flags = Flags::system(SystemFlags::SEEN);
    f.store.append(inbox, batch).await.unwrap();
    let page = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                conversations: true,
                descending: true,
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 4, "lunch (3), budget, and two without a subject");
    let rows: Vec<(String, u32, u32)> = page
        .items
        .iter()
        .map(|i| {
            (
                i.subject.clone().unwrap_or_default(),
                i.conversation_size,
                i.conversation_unread,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (String::new(), 1, 1),
            (String::new(), 1, 1),
            ("RE: lunch?".to_string(), 3, 2),
            ("Budget".to_string(), 1, 1)
        ]
    );
}

pub async fn one_conversation_is_listed(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap().id;
    let batch = vec![
        msg("bob@example.org", "Lunch?", 100, "a"),
        msg("carol@example.org", "Budget", 200, "b"),
        msg("alice@example.test", "Re: Lunch?", 300, "c"),
    ];
    f.store.append(inbox, batch).await.unwrap();
    let page = f
        .store
        .list_page(
            inbox,
            &ListQuery {
                same_subject: Some("LUNCH?".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(subjects(&page), ["Lunch?", "Re: Lunch?"]);
}

pub async fn copied_and_moved_messages_keep_their_order(f: Fixture) {
    let alice = with_alice(&f).await;
    let inbox = f.store.mailbox(alice, "INBOX").await.unwrap().id;
    let archive = f.store.mailbox(alice, "Archive").await.unwrap().id;
    let batch = vec![
        msg("\"Zoe\" <zoe@example.org>", "Re: beta", 100, "a"),
        msg("\"Adam\" <adam@example.org>", "gamma", 200, "b"),
        msg("\"Mia\" <mia@example.org>", "Alpha", 300, "c"),
    ];
    let uids: Vec<_> = f
        .store
        .append(inbox, batch)
        .await
        .unwrap()
        .iter()
        .map(|a| a.uid)
        .collect();
    f.store.copy(inbox, &uids[..2], archive).await.unwrap();
    f.store.move_messages(inbox, &uids[2..], archive).await.unwrap();
    let by_subject = f
        .store
        .list_page(
            archive,
            &ListQuery {
                sort: ListSort::Subject,
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(subjects(&by_subject), ["Alpha", "Re: beta", "gamma"]);
    let by_from = f
        .store
        .list_page(
            archive,
            &ListQuery {
                sort: ListSort::From,
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(subjects(&by_from), ["gamma", "Alpha", "Re: beta"], "Adam, Mia, Zoe");
}
