mod common;
use common::Server;

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn scratch_server() {
    let server = Server::start().await;
    let mut msgs = Vec::new();
    for i in 0..3 {
        msgs.push(format!("From: bob@example.org\r\nTo: alice@example.test\r\nSubject: msg {i}\r\nMessage-ID: <{i}@example.org>\r\n\r\nBody {i}\r\n").into_bytes());
    }
    server.deliver(msgs).await;
    let account = server.store.account(common::USER).await.unwrap();
    use tern_store::Store;
    let sub = server
        .store
        .create_mailbox(account.id, "Projects/Work", None)
        .await
        .unwrap();
    server
        .store
        .append(
            sub.id,
            vec![tern_store::NewMessage::new(
                b"From: x@y\r\nSubject: sub\r\n\r\nsub body\r\n".to_vec(),
            )],
        )
        .await
        .unwrap();
    std::fs::write(
        "/tmp/scratch_ports",
        format!(
            "{} {} {}\n",
            server.addr.port(),
            server.tls.as_ref().unwrap().0.port(),
            server.tls.as_ref().unwrap().1.display()
        ),
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3000)).await;
}

#[test]
#[ignore]
fn scratch_dovecot() {
    let d = tern_testkit::dovecot::Dovecot::start().unwrap();
    std::fs::write("/tmp/scratch_dovecot", format!("{}\n", d.imap_port())).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3000));
}
