//! The not-authenticated state (RFC 9051 §6.2): STARTTLS, LOGIN, AUTHENTICATE PLAIN and
//! LOGIN with and without SASL-IR (RFC 4959), and Python's imaplib over STARTTLS and
//! implicit TLS.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Client, PASSWORD, Server, USER, python};

#[tokio::test(flavor = "multi_thread")]
async fn authenticate_plain_and_login_with_and_without_initial_response() {
    let server = Server::start().await;
    let plain = B64.encode(format!("\0{USER}\0{PASSWORD}"));

    let mut c = Client::connect(server.addr).await;
    assert!(
        c.greeting.contains("AUTH=PLAIN") && c.greeting.contains("SASL-IR"),
        "{}",
        c.greeting
    );
    let r = c.run(&format!("a AUTHENTICATE PLAIN {plain}")).await;
    assert!(r.last().expect("reply").starts_with("a OK [CAPABILITY "), "{r:?}");
    let r = c.run("b LOGIN x y").await;
    assert!(
        r.last().expect("reply").starts_with("b BAD"),
        "already logged in: {r:?}"
    );

    // Without SASL-IR: the empty challenge, then the response.
    let mut c = Client::connect(server.addr).await;
    c.send(b"a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line(Duration::from_secs(5)).await.as_deref(), Some("+ "));
    c.send(format!("{plain}\r\n").as_bytes()).await;
    let r = c.until("a").await;
    assert!(r.last().expect("reply").starts_with("a OK"), "{r:?}");

    // AUTHENTICATE LOGIN asks for the user name and the password.
    let mut c = Client::connect(server.addr).await;
    c.send(b"a AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(c.line(Duration::from_secs(5)).await.as_deref(), Some("+ VXNlcm5hbWU6"));
    c.send(format!("{}\r\n", B64.encode(USER)).as_bytes()).await;
    assert_eq!(c.line(Duration::from_secs(5)).await.as_deref(), Some("+ UGFzc3dvcmQ6"));
    c.send(format!("{}\r\n", B64.encode(PASSWORD)).as_bytes()).await;
    let r = c.until("a").await;
    assert!(r.last().expect("reply").starts_with("a OK"), "{r:?}");

    // Cancelling, bad base64, another user's authorisation identity, a mechanism Tern
    // does not offer: each refused, the session goes on.
    let mut c = Client::connect(server.addr).await;
    c.send(b"a AUTHENTICATE PLAIN\r\n").await;
    c.line(Duration::from_secs(5)).await;
    c.send(b"*\r\n").await;
    let r = c.until("a").await;
    assert!(r.last().expect("reply").starts_with("a BAD"), "{r:?}");
    let r = c.run("b AUTHENTICATE PLAIN !!!").await;
    assert!(r.last().expect("reply").starts_with("b BAD"), "{r:?}");
    let other = B64.encode(format!("bob@example.test\0{USER}\0{PASSWORD}"));
    let r = c.run(&format!("c AUTHENTICATE PLAIN {other}")).await;
    assert!(
        r.last().expect("reply").starts_with("c NO [AUTHORIZATIONFAILED]"),
        "{r:?}"
    );
    let r = c.run("d AUTHENTICATE CRAM-MD5").await;
    assert!(r.last().expect("reply").starts_with("d NO"), "{r:?}");
    let r = c.run(&format!("e LOGIN {USER} \"{PASSWORD}\"")).await;
    assert!(r.last().expect("reply").starts_with("e OK"), "{r:?}");
    server.stop().await;
}

const TLS_CLIENTS: &str = r#"
import imaplib, json, ssl, sys
port, user, password, tls_port, cert = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(cafile=cert)
out = {}
m = imaplib.IMAP4("localhost", port)
out["before"] = sorted(m.capabilities)
m.starttls(ssl_context=ctx)
typ, caps = m.capability()
out["after"] = caps[0].decode()
out["login"] = m.login(user, password)[0]
m.logout()
m = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=ctx)
out["implicit"] = m.login(user, password)[0]
out["select"] = m.select("INBOX")[0]
m.logout()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn starttls_and_implicit_tls_with_a_verified_certificate() {
    let server = Server::start().await;
    let (tls_addr, cert) = server.tls.clone().expect("tls");
    let out = python(
        server.port(),
        TLS_CLIENTS,
        &[&tls_addr.port().to_string(), &cert.display().to_string()],
    )
    .await;
    assert!(out["before"].to_string().contains("STARTTLS"), "{out}");
    let after = out["after"].as_str().expect("caps");
    assert!(!after.contains("STARTTLS"), "not offered twice: {after}");
    assert_eq!(out["login"], "OK");
    assert_eq!(out["implicit"], "OK");
    assert_eq!(out["select"], "OK");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_pipelined_after_starttls_are_discarded() {
    let server = Server::start().await;
    let mut c = Client::connect(server.addr).await;
    // CVE-2011-0411: the NOOP sent in the clear with STARTTLS must not be answered.
    c.send(b"a STARTTLS\r\nb NOOP\r\n").await;
    assert_eq!(
        c.line(Duration::from_secs(5)).await.as_deref(),
        Some("a OK Begin TLS negotiation now")
    );
    // The server now waits for a TLS ClientHello; it must not have answered "b".
    assert_eq!(c.line(Duration::from_millis(500)).await, None);
    server.stop().await;
}
