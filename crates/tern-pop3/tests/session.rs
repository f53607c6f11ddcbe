//! Session behaviour no ordinary client shows on purpose, driven over a bare socket:
//! the login snapshot against concurrent changes, pipelining, shutdown, the idle
//! timer, a flood of bad commands, the connection limit, a client that stops reading,
//! and `Pop3Server::serve` on an in-memory stream.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, Options, PASSWORD, Server, USER};
use tern_net::listeners::{ConnContext, Limits, ShutdownSignal, TlsMode};
use tern_pop3::Pop3Config;
use tern_store::Expunge;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn the_maildrop_is_a_snapshot_taken_at_login() {
    let server = Server::start().await;
    let first = server
        .deliver_raw(&[b"Subject: 1\r\n\r\none\r\n", b"Subject: 2\r\n\r\ntwo\r\n"])
        .await;
    let mut client = Client::login(server.pop3).await;

    // Mail delivered now waits for the next login; numbers do not move.
    server.deliver_raw(&[b"Subject: 3\r\n\r\nthree\r\n"]).await;
    assert_eq!(client.cmd("STAT").await, "+OK 2 38");
    assert_eq!(
        client.cmd("LIST 3").await,
        "-ERR no such message, only 2 messages in maildrop"
    );

    // Another session (IMAP, say) expunges message 1.
    let inbox = server.inbox().await;
    server
        .store
        .expunge(inbox.id, Expunge::Uids(vec![first[0].uid]))
        .await
        .expect("expunge");
    assert_eq!(client.cmd("RETR 1").await, "-ERR message no longer exists");
    assert_eq!(client.cmd("TOP 1 0").await, "-ERR message no longer exists");
    assert_eq!(client.cmd("RETR 2").await, "+OK 19 octets");
    assert_eq!(client.body().await, ["Subject: 2", "", "two"]);

    // Deleting the vanished one as well as another is fine at QUIT.
    assert_eq!(client.cmd("DELE 1").await, "+OK message 1 deleted");
    assert_eq!(client.cmd("DELE 2").await, "+OK message 2 deleted");
    assert_eq!(
        client.cmd("QUIT").await,
        "+OK Tern POP3 signing off (1 messages deleted)"
    );
    assert_eq!(client.next_line().await, None, "closed after QUIT");
    assert_eq!(
        server.inbox_uids().await.len(),
        1,
        "only the message delivered later is left"
    );

    let mut again = Client::login(server.pop3).await;
    assert_eq!(again.cmd("STAT").await, "+OK 1 21");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_commands_are_answered_in_order() {
    let server = Server::start().await;
    server.deliver_raw(&[b"Subject: p\r\n\r\n.x\r\n"]).await;
    let (mut client, _) = Client::connect(server.pop3).await;
    client
        .send(format!("USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST\r\nRETR 1\r\nNOOP\r\nQUIT\r\n").as_bytes())
        .await;
    assert_eq!(client.line().await, "+OK send PASS");
    assert_eq!(client.line().await, "+OK maildrop has 1 messages (18 octets)");
    assert_eq!(client.line().await, "+OK 1 18");
    assert_eq!(client.line().await, "+OK 1 messages (18 octets)");
    assert_eq!(client.body().await, ["1 18"]);
    assert_eq!(client.line().await, "+OK 18 octets");
    assert_eq!(
        client.body().await,
        ["Subject: p", "", "..x"],
        "byte-stuffed on the wire"
    );
    assert_eq!(client.line().await, "+OK");
    assert_eq!(client.line().await, "+OK Tern POP3 signing off");
    assert_eq!(client.next_line().await, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn top_of_a_large_streamed_message() {
    let server = Server::start().await;
    let mut big = b"Subject: big\r\nX-Filler: yes\r\n\r\n".to_vec();
    for i in 0..10_000 {
        big.extend_from_slice(format!(".{i:05} lorem ipsum dolor sit amet\r\n").as_bytes());
    }
    assert!(big.len() > 256 * 1024, "stored as a file of its own");
    server.deliver_raw(&[&big]).await;
    let mut client = Client::login(server.pop3).await;
    assert_eq!(client.cmd("TOP 1 2").await, "+OK top of message follows");
    assert_eq!(
        client.body().await,
        [
            "Subject: big",
            "X-Filler: yes",
            "",
            "..00000 lorem ipsum dolor sit amet",
            "..00001 lorem ipsum dolor sit amet"
        ]
    );
    assert_eq!(client.cmd("RETR 1").await, format!("+OK {} octets", big.len()));
    let body = client.body().await;
    assert_eq!(body.len(), 3 + 10_000);
    assert_eq!(body[10_002], "..09999 lorem ipsum dolor sit amet");
    assert_eq!(client.cmd("NOOP").await, "+OK");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_tells_the_client_and_deletes_nothing() {
    let server = Server::start().await;
    server.deliver_raw(&[b"Subject: s\r\n\r\ns\r\n"]).await;
    let (store, inbox) = (server.store.clone(), server.inbox().await);
    let mut logged_in = Client::login(server.pop3).await;
    assert_eq!(logged_in.cmd("DELE 1").await, "+OK message 1 deleted");
    let (mut waiting, _) = Client::connect(server.pop3).await;

    let report = server.stop().await;
    assert_eq!(report.aborted, 0, "idle sessions end at once");
    for client in [&mut logged_in, &mut waiting] {
        assert_eq!(client.until_closed().await, ["-ERR [SYS/TEMP] server shutting down"]);
    }
    assert_eq!(
        store.messages(inbox.id).await.expect("messages").len(),
        1,
        "no UPDATE state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_is_closed_silently_without_deleting() {
    let server = Server::with(Options {
        config: Pop3Config {
            idle_timeout: Duration::from_millis(300),
            ..Options::default().config
        },
        ..Default::default()
    })
    .await;
    server.deliver_raw(&[b"Subject: i\r\n\r\ni\r\n"]).await;
    let mut client = Client::login(server.pop3).await;
    assert_eq!(client.cmd("DELE 1").await, "+OK message 1 deleted");
    // RFC 1939 §3: autologout sends nothing and does not enter UPDATE.
    assert_eq!(client.until_closed().await, Vec::<String>::new());
    server.wait_for_no_sessions().await;
    assert_eq!(server.inbox_uids().await.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_bad_commands_is_cut_off() {
    let server = Server::start().await;
    let (mut client, _) = Client::connect(server.pop3).await;
    // An HTTP client that found the wrong port.
    let mut request = String::from("GET / HTTP/1.1\r\nHost: mail.example.test\r\n");
    for i in 0..30 {
        request.push_str(&format!("X-Header-{i}: value\r\n"));
    }
    client.send(request.as_bytes()).await;
    let replies = client.until_closed().await;
    assert_eq!(replies.len(), 20);
    assert!(replies[..19].iter().all(|r| r == "-ERR unknown command"), "{replies:?}");
    assert_eq!(replies[19], "-ERR too many bad commands; closing the connection");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_connection_limit_the_client_is_told_to_come_back() {
    let server = Server::with(Options {
        limits: Limits {
            max_connections: 1,
            ..Limits::default()
        },
        ..Default::default()
    })
    .await;
    let (_first, greeting) = Client::connect(server.pop3).await;
    assert!(greeting.starts_with("+OK"));
    let (mut second, busy) = Client::connect(server.pop3).await;
    assert_eq!(busy, "-ERR [SYS/TEMP] too many connections");
    assert_eq!(second.next_line().await, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_does_not_hold_up_others() {
    let server = Server::start().await;
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.resize(600 * 1024, b'x');
    big.extend_from_slice(b"\r\n");
    server.deliver_raw(&[&big]).await;
    // Asks for 30 MB and reads none of it.
    let mut stuck = Client::login(server.pop3).await;
    stuck.send("RETR 1\r\n".repeat(50).as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut other = Client::login(server.pop3).await;
    assert_eq!(other.cmd("STAT").await, format!("+OK 1 {}", big.len()));
    assert_eq!(other.cmd("QUIT").await, "+OK Tern POP3 signing off");
    drop(stuck);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_a_session_on_any_stream() {
    let server = Server::start().await;
    server.deliver_raw(&[b"Subject: d\r\n\r\nd\r\n"]).await;
    let auth = std::sync::Arc::new(tern_net::auth::Authenticator::new(
        server.store.clone(),
        tern_net::auth::PlaintextPolicy::Loopback,
        tern_net::auth::AuthLimits::default(),
    ));
    let pop3 = tern_pop3::Pop3Server::new(Pop3Config::default(), auth);
    let (client, stream) = tokio::io::duplex(4096);
    let (_trigger, shutdown) = ShutdownSignal::channel();
    let ctx = ConnContext {
        listener: "test",
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        local: SocketAddr::from(([127, 0, 0, 1], 110)),
        tls_mode: TlsMode::Plain,
        tls_active: false,
        tls_config: None,
        tls_handshake_timeout: Duration::from_secs(5),
        shutdown,
    };
    let session = tokio::spawn(async move { pop3.serve(stream, ctx).await });
    let mut client = BufReader::new(client);
    let mut said = String::new();
    for command in [
        "CAPA",
        &format!("USER {USER}"),
        &format!("PASS {PASSWORD}"),
        "STLS",
        "QUIT",
    ] {
        client
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("write");
    }
    while client.read_line(&mut said).await.expect("read") > 0 {}
    session.await.expect("session");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], "+OK Tern POP3 ready localhost");
    assert!(lines.contains(&"USER") && !lines.contains(&"STLS"), "{lines:?}");
    assert!(lines.contains(&"+OK maildrop has 1 messages (17 octets)"), "{lines:?}");
    assert!(lines.contains(&"-ERR STLS is only allowed before login"), "{lines:?}");
    assert_eq!(lines.last(), Some(&"+OK Tern POP3 signing off"));
    server.stop().await;
}
