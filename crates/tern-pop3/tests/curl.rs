//! POP3 as curl speaks it: curl reads CAPA, logs in with AUTH PLAIN (SASL PLAIN is
//! advertised, so curl prefers it to USER/PASS), and prints LIST, RETR, UIDL and TOP output; over the STARTTLS port with
//! `--ssl-reqd` (STLS) and over the implicit-TLS port (pop3s://). curl undoes the
//! byte-stuffing itself, so what it prints is the message as a client receives it.

mod common;

use common::{PASSWORD, Server, USER, on_the_wire, path_arg};

const DOTS: &[u8] = b"From: Bob <bob@example.org>\r\nSubject: dots\r\n\r\n.leading dot\r\n.\r\nend\r\n";
const LF_ONLY: &[u8] = b"From: x@example.org\nSubject: lf\n\nline\n.dot\nno final newline";

fn big() -> Vec<u8> {
    let mut m = b"From: Carol <carol@example.net>\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..8000 {
        let dot = if i % 5 == 0 { "." } else { "" };
        m.extend_from_slice(format!("{dot}{i:06} pack my box with five dozen liquor jugs\n").as_bytes());
    }
    m
}

fn login() -> String {
    format!("{USER}:{PASSWORD}")
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_lists_and_retrieves() {
    let server = Server::start().await;
    let big = big();
    let appended = server.deliver_raw(&[DOTS, LF_ONLY, &big]).await;
    let base = format!("pop3://{}", server.pop3_authority());
    let user = login();

    let list = curl_ok(&[&format!("{base}/"), "-u", &user]).await;
    assert_eq!(
        String::from_utf8_lossy(&list),
        format!("1 {}\r\n2 {}\r\n3 {}\r\n", DOTS.len(), LF_ONLY.len(), big.len())
    );

    for (n, raw) in [(1, DOTS), (2, LF_ONLY), (3, &big[..])] {
        let got = curl_ok(&[&format!("{base}/{n}"), "-u", &user]).await;
        assert!(
            got == on_the_wire(raw),
            "message {n}: {:?}…",
            String::from_utf8_lossy(&got[..60.min(got.len())])
        );
    }

    let uidl = curl_ok(&[&format!("{base}/"), "-u", &user, "-X", "UIDL"]).await;
    let v = appended[0].uidvalidity;
    let expected: String = appended
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{} {v}.{}\r\n", i + 1, a.uid))
        .collect();
    assert_eq!(String::from_utf8_lossy(&uidl), expected);

    let top = curl_ok(&[&format!("{base}/"), "-u", &user, "-X", "TOP 1 0"]).await;
    assert_eq!(
        String::from_utf8_lossy(&top),
        "From: Bob <bob@example.org>\r\nSubject: dots\r\n\r\n"
    );

    // curl chose AUTH PLAIN from the CAPA list and answered the "+ " continuation.
    let verbose = common::curl(vec![format!("{base}/1"), "-u".into(), user.clone(), "-v".into()]).await;
    assert!(verbose.status.success(), "{}", verbose.stderr);
    let lines: Vec<&str> = verbose.stderr.lines().map(str::trim_end).collect();
    assert!(
        lines.windows(2).any(|w| w == ["> AUTH PLAIN", "< +"]),
        "{}",
        verbose.stderr
    );
    assert!(
        verbose.stderr.contains("< +OK maildrop has 3 messages"),
        "{}",
        verbose.stderr
    );

    let wrong = common::curl(vec![format!("{base}/1"), "-u".into(), format!("{USER}:wrong")]).await;
    assert_eq!(wrong.status.code(), Some(67), "curl's 'login denied': {}", wrong.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_deletes_with_dele_and_quit() {
    let server = Server::start().await;
    let uids: Vec<u32> = server
        .deliver_raw(&[b"Subject: keep\r\n\r\nk\r\n", b"Subject: drop\r\n\r\nd\r\n"])
        .await
        .iter()
        .map(|a| a.uid)
        .collect();
    let url = format!("pop3://{}/2", server.pop3_authority());
    curl_ok(&[&url, "-u", &login(), "-X", "DELE", "--no-progress-meter", "-I"]).await;
    assert_eq!(server.inbox_uids().await, [uids[0]]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_over_stls_and_pop3s() {
    let server = Server::start().await;
    server.deliver_raw(&[DOTS]).await;
    let cert = path_arg(&server.cert);
    let user = login();

    // STLS on the plain port, certificate checked against the self-signed one.
    let url = format!("pop3://{}/1", server.pop3_authority());
    let got = curl_ok(&[&url, "-u", &user, "--ssl-reqd", "--cacert", &cert]).await;
    assert_eq!(got, on_the_wire(DOTS));

    // Implicit TLS.
    let pop3s = server.pop3s.expect("pop3s");
    let got = curl_ok(&[&format!("pop3s://{pop3s}/1"), "-u", &user, "--cacert", &cert]).await;
    assert_eq!(got, on_the_wire(DOTS));
    let list = curl_ok(&[&format!("pop3s://{pop3s}/"), "-u", &user, "-k"]).await;
    assert_eq!(String::from_utf8_lossy(&list), format!("1 {}\r\n", DOTS.len()));
    server.stop().await;
}

async fn curl_ok(args: &[&str]) -> Vec<u8> {
    common::curl_ok(args).await
}
