//! POP3 as Python's standard poplib client speaks it: login, STAT, LIST, UIDL, RETR and
//! TOP against what was delivered, deletion at QUIT and not otherwise, UIDLs kept from
//! a migration and stable across sessions, STLS, AUTH PLAIN, and a session that goes on
//! after a client's mistakes. poplib undoes the byte-stuffing and splits lines; each
//! script joins them with CRLF again, so a message compares byte for byte with what a
//! POP3 client must receive ([`common::on_the_wire`]).

mod common;

use common::{PASSWORD, Server, USER, on_the_wire, path_arg, python};
use serde_json::Value;
use tern_net::auth::PlaintextPolicy;
use tern_store::NewMessage;
use tern_testkit::python::{str_of, strings_of, unhex};

/// CRLF throughout, with lines a POP3 server must byte-stuff and a bare CR.
const DOTS: &[u8] = b"From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n\
.leading dot\r\n..two dots\r\n.\r\ncarriage\rreturn alone\r\nlast line\r\n";

/// Bare LF line ends and no final newline, as an mbox import can leave a message.
const LF_ONLY: &[u8] = b"From: x@example.org\nSubject: lf only\n\nWritten with LF.\n.dot after LF\nno final newline";

/// Over 256 KiB, so the store keeps it in a file of its own and RETR streams it.
fn big() -> Vec<u8> {
    let mut m = b"From: Carol <carol@example.net>\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..6000 {
        let dot = if i % 7 == 0 { "." } else { "" };
        m.extend_from_slice(format!("{dot}{i:06} the quick brown fox jumps over the lazy dog\r\n").as_bytes());
    }
    m
}

fn args(server: &Server, extra: &[&str]) -> Vec<String> {
    let mut args = vec![server.pop3.port().to_string(), USER.to_string(), PASSWORD.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

const READ_EVERYTHING: &str = r#"
import json, poplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
joined = lambda lines: (b"\r\n".join(lines) + b"\r\n").hex()
p = poplib.POP3("127.0.0.1", port, timeout=20)
out = {"greeting": p.getwelcome().decode()}
out["capa_before_login"] = p.capa()
p.user(user)
out["pass"] = p.pass_(password).decode()
out["capa_after_login"] = p.capa()
count, size = p.stat()
out["stat"] = [count, size]
out["list"] = [l.decode() for l in p.list()[1]]
out["list_2"] = p.list(2).decode()
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["uidl_1"] = p.uidl(1).decode()
out["retr"] = []
for n in range(1, count + 1):
    resp, lines, octets = p.retr(n)
    out["retr"].append({"resp": resp.decode(), "raw": joined(lines)})
out["top"] = [joined(p.top(1, k)[1]) for k in (0, 1, 2, 100)]
out["top_lf"] = joined(p.top(2, 1)[1])
out["quit"] = p.quit().decode()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_client_reads_every_message_byte_for_byte() {
    let server = Server::start().await;
    let big = big();
    let appended = server.deliver_raw(&[DOTS, LF_ONLY, &big]).await;
    let out = python(READ_EVERYTHING, args(&server, &[])).await;

    assert_eq!(str_of(&out, "greeting"), "+OK Tern POP3 ready mail.example.test");
    let capa = &out["capa_before_login"];
    for cap in [
        "TOP",
        "UIDL",
        "USER",
        "SASL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "STLS",
    ] {
        assert!(capa.get(cap).is_some(), "{cap} in {capa}");
    }
    assert_eq!(capa["SASL"], serde_json::json!(["PLAIN"]));
    assert_eq!(capa["EXPIRE"], serde_json::json!(["NEVER"]));
    assert_eq!(capa["LOGIN-DELAY"], serde_json::json!(["0"]));
    assert_eq!(capa["IMPLEMENTATION"], serde_json::json!(["Tern"]));
    assert_eq!(
        out["capa_after_login"], out["capa_before_login"],
        "RFC 2449 §5: same list in both states"
    );
    let sizes = [DOTS.len(), LF_ONLY.len(), big.len()];
    assert_eq!(
        str_of(&out, "pass"),
        format!("+OK maildrop has 3 messages ({} octets)", sizes.iter().sum::<usize>())
    );
    assert_eq!(
        out["stat"],
        serde_json::json!([3, sizes.iter().sum::<usize>()]),
        "STAT reports the stored sizes"
    );
    let expected_list: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {s}", i + 1))
        .collect();
    assert_eq!(strings_of(&out, "list"), expected_list);
    assert_eq!(str_of(&out, "list_2"), format!("+OK 2 {}", LF_ONLY.len()));

    let uidvalidity = appended[0].uidvalidity;
    let expected_uidls: Vec<String> = appended
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{} {uidvalidity}.{}", i + 1, a.uid))
        .collect();
    assert_eq!(strings_of(&out, "uidl"), expected_uidls);
    assert_eq!(str_of(&out, "uidl_1"), format!("+OK {}", expected_uidls[0]));

    let retrieved = out["retr"].as_array().expect("retr");
    for ((got, raw), size) in retrieved.iter().zip([DOTS, LF_ONLY, &big]).zip(sizes) {
        assert_eq!(str_of(got, "resp"), format!("+OK {size} octets"));
        assert!(
            unhex(str_of(got, "raw")) == on_the_wire(raw),
            "RETR of {:?}…",
            &raw[..20]
        );
    }

    let top: Vec<Vec<u8>> = strings_of(&out, "top").into_iter().map(unhex).collect();
    let header = b"From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n".to_vec();
    assert_eq!(String::from_utf8_lossy(&top[0]), String::from_utf8_lossy(&header));
    assert_eq!(top[1], [&header[..], b".leading dot\r\n"].concat());
    assert_eq!(top[2], [&header[..], b".leading dot\r\n..two dots\r\n"].concat());
    assert_eq!(
        top[3], DOTS,
        "TOP with more lines than the body has is the whole message"
    );
    assert_eq!(
        unhex(str_of(&out, "top_lf")),
        b"From: x@example.org\r\nSubject: lf only\r\n\r\nWritten with LF.\r\n"
    );
    assert!(str_of(&out, "quit").starts_with("+OK"));
    assert_eq!(server.inbox_uids().await.len(), 3, "reading deletes nothing");
    server.stop().await;
}

const DELETE: &str = r#"
import json, poplib, sys
port, user, password, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
p = poplib.POP3("127.0.0.1", port, timeout=20)
p.user(user)
p.pass_(password)
out = {"dele": p.dele(1).decode()}
p.dele(3)
out["stat_after_dele"] = list(p.stat())
out["list_after_dele"] = [l.decode() for l in p.list()[1]]
for what, call in [("retr_deleted", lambda: p.retr(1)), ("dele_again", lambda: p.dele(1)),
                   ("list_deleted", lambda: p.list(3)), ("retr_missing", lambda: p.retr(9))]:
    try:
        call()
        out[what] = "accepted"
    except poplib.error_proto as e:
        out[what] = e.args[0].decode()
if mode == "rset":
    out["rset"] = p.rset().decode()
    out["stat_after_rset"] = list(p.stat())
    out["quit"] = p.quit().decode()
elif mode == "drop":
    p.close()  # no QUIT: RFC 1939 §6, nothing is removed
else:
    out["quit"] = p.quit().decode()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn dele_then_quit_removes_and_rset_or_a_dropped_connection_keeps() {
    let server = Server::start().await;
    let messages: [&[u8]; 3] = [
        b"Subject: one\r\n\r\n1\r\n",
        b"Subject: two\r\n\r\n2\r\n",
        b"Subject: three\r\n\r\n3\r\n",
    ];
    let total: usize = messages.iter().map(|m| m.len()).sum();
    let uids: Vec<u32> = server.deliver_raw(&messages).await.iter().map(|a| a.uid).collect();

    let out = python(DELETE, args(&server, &["rset"])).await;
    assert_eq!(str_of(&out, "dele"), "+OK message 1 deleted");
    assert_eq!(out["stat_after_dele"][0], 1);
    assert_eq!(out["stat_after_dele"][1], messages[1].len());
    assert_eq!(
        strings_of(&out, "list_after_dele"),
        [format!("2 {}", messages[1].len())],
        "numbers do not shift"
    );
    assert_eq!(str_of(&out, "retr_deleted"), "-ERR message 1 already deleted");
    assert_eq!(str_of(&out, "dele_again"), "-ERR message 1 already deleted");
    assert_eq!(str_of(&out, "list_deleted"), "-ERR message 3 already deleted");
    assert_eq!(
        str_of(&out, "retr_missing"),
        "-ERR no such message, only 3 messages in maildrop"
    );
    assert_eq!(
        str_of(&out, "rset"),
        format!("+OK maildrop has 3 messages ({total} octets)")
    );
    assert_eq!(out["stat_after_rset"], serde_json::json!([3, total]));
    assert_eq!(server.inbox_uids().await, uids, "RSET then QUIT keeps everything");

    python(DELETE, args(&server, &["drop"])).await;
    server.wait_for_no_sessions().await;
    assert_eq!(
        server.inbox_uids().await,
        uids,
        "a connection dropped without QUIT keeps everything"
    );

    let out = python(DELETE, args(&server, &["quit"])).await;
    assert_eq!(str_of(&out, "quit"), "+OK Tern POP3 signing off (2 messages deleted)");
    assert_eq!(server.inbox_uids().await, [uids[1]], "QUIT removed messages 1 and 3");
    server.stop().await;
}

const UIDLS: &str = r#"
import json, poplib, sys
port, user, password, dele = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
p = poplib.POP3("127.0.0.1", port, timeout=20)
p.user(user)
p.pass_(password)
out = {"uidl": [l.decode() for l in p.uidl()[1]]}
if dele != "0":
    p.dele(int(dele))
p.quit()
print(json.dumps(out))
"#;

/// The UIDL of each message, keyed by what follows the message number.
fn uidls(out: &Value) -> Vec<String> {
    strings_of(out, "uidl")
        .into_iter()
        .map(|l| l.split_once(' ').expect("n uidl").1.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn uidls_survive_migration_and_stay_stable_across_sessions() {
    let server = Server::start().await;
    let mut migrated = NewMessage::new(b"Subject: from the old server\r\n\r\nold\r\n".to_vec());
    migrated.pop3_uidl = Some("UID123-1234567890".into());
    let appended = server
        .deliver(vec![migrated, NewMessage::new(b"Subject: new\r\n\r\nnew\r\n".to_vec())])
        .await;
    let own = |i: usize| format!("{}.{}", appended[i].uidvalidity, appended[i].uid);

    let first = python(UIDLS, args(&server, &["0"])).await;
    assert_eq!(uidls(&first), ["UID123-1234567890".to_string(), own(1)]);
    for uidl in uidls(&first) {
        assert!((1..=70).contains(&uidl.len()) && uidl.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }

    // New mail and a deletion in between change the numbers, not the UIDLs.
    let later = server.deliver_raw(&[b"Subject: later\r\n\r\nlater\r\n"]).await;
    let second = python(UIDLS, args(&server, &["1"])).await;
    let later_uidl = format!("{}.{}", later[0].uidvalidity, later[0].uid);
    assert_eq!(
        uidls(&second),
        ["UID123-1234567890".to_string(), own(1), later_uidl.clone()]
    );
    let third = python(UIDLS, args(&server, &["0"])).await;
    assert_eq!(
        strings_of(&third, "uidl"),
        [format!("1 {}", own(1)), format!("2 {later_uidl}")]
    );
    server.stop().await;
}

const STLS: &str = r#"
import json, poplib, ssl, sys
port, user, password, cafile, pop3s_port = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ctx = ssl.create_default_context(cafile=cafile)

def attempt(call):
    try:
        return call().decode()
    except poplib.error_proto as e:
        return e.args[0].decode()

p = poplib.POP3("127.0.0.1", port, timeout=20)
out = {"capa_plain": sorted(p.capa())}
out["user_before_tls"] = attempt(lambda: p.user(user))
out["auth_before_tls"] = attempt(lambda: p._shortcmd("AUTH PLAIN AGFsaWNlAHB3"))
out["stls"] = p.stls(context=ctx).decode()
out["tls_version"] = p.sock.version()
out["capa_tls"] = sorted(p.capa())
out["user"] = attempt(lambda: p.user(user))
out["pass"] = attempt(lambda: p.pass_(password))
out["stat"] = list(p.stat())
out["stls_again"] = attempt(lambda: p._shortcmd("STLS"))
out["quit"] = p.quit().decode()

s = poplib.POP3_SSL("127.0.0.1", pop3s_port, context=ctx, timeout=20)
out["pop3s_capa"] = sorted(s.capa())
out["pop3s_stls"] = attempt(lambda: s._shortcmd("STLS"))
s.user(user)
out["pop3s_pass"] = s.pass_(password).decode()
out["pop3s_stat"] = list(s.stat())
s.quit()
print(json.dumps(out))
"#;

const SECRET: &[u8] = b"Subject: secret\r\n\r\nover TLS\r\n";

async fn stls_with(policy: PlaintextPolicy) -> (Server, Value) {
    let server = Server::with(common::Options {
        policy,
        ..Default::default()
    })
    .await;
    server.deliver_raw(&[SECRET]).await;
    let pop3s = server.pop3s.expect("pop3s").port().to_string();
    let out = python(STLS, args(&server, &[&path_arg(&server.cert), &pop3s])).await;
    (server, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn stls_upgrades_and_then_login_works() {
    let (server, out) = stls_with(PlaintextPolicy::Loopback).await;
    assert!(strings_of(&out, "capa_plain").contains(&"STLS"));
    assert_eq!(
        str_of(&out, "user_before_tls"),
        "+OK send PASS",
        "loopback may log in in plaintext"
    );
    assert_eq!(str_of(&out, "stls"), "+OK Begin TLS negotiation");
    assert!(str_of(&out, "tls_version").starts_with("TLSv1."));
    assert!(
        !strings_of(&out, "capa_tls").contains(&"STLS"),
        "no STLS once TLS is on"
    );
    assert_eq!(
        str_of(&out, "pass"),
        format!("+OK maildrop has 1 messages ({} octets)", SECRET.len())
    );
    assert_eq!(out["stat"], serde_json::json!([1, SECRET.len()]));
    assert!(str_of(&out, "stls_again").starts_with("-ERR"));
    assert!(!strings_of(&out, "pop3s_capa").contains(&"STLS"));
    assert_eq!(str_of(&out, "pop3s_stls"), "-ERR TLS is already active");
    assert_eq!(out["pop3s_stat"], serde_json::json!([1, SECRET.len()]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_are_refused_before_tls_when_the_policy_says_so() {
    let (server, out) = stls_with(PlaintextPolicy::Never).await;
    let plain = strings_of(&out, "capa_plain");
    assert!(
        plain.contains(&"STLS") && !plain.contains(&"USER") && !plain.contains(&"SASL"),
        "{plain:?}"
    );
    assert_eq!(
        str_of(&out, "user_before_tls"),
        "-ERR [AUTH] passwords are not accepted before TLS; use STLS first"
    );
    assert_eq!(str_of(&out, "auth_before_tls"), str_of(&out, "user_before_tls"));
    let tls = strings_of(&out, "capa_tls");
    assert!(tls.contains(&"USER") && tls.contains(&"SASL"), "{tls:?}");
    assert_eq!(str_of(&out, "user"), "+OK send PASS");
    assert!(str_of(&out, "pass").starts_with("+OK maildrop has 1 messages"));
    assert!(
        str_of(&out, "pop3s_pass").starts_with("+OK"),
        "implicit TLS counts as TLS"
    );
    server.stop().await;
}

const PLAINTEXT_INJECTION: &str = r#"
import json, socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)

def line(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode()

s = socket.create_connection(("127.0.0.1", port), timeout=20)
out = {"greeting": line(s)}
# A man in the middle appends a command to the client's STLS; it must not run as if it
# had come over TLS (CVE-2011-0411).
s.sendall(b"STLS\r\nUSER mallory\r\n")
out["stls"] = line(s)
t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
t.sendall(b"PASS guess\r\n")
out["after_tls"] = line(t)
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn commands_pipelined_after_stls_are_discarded() {
    let server = Server::start().await;
    let out = python(
        PLAINTEXT_INJECTION,
        vec![server.pop3.port().to_string(), path_arg(&server.cert)],
    )
    .await;
    assert_eq!(str_of(&out, "stls"), "+OK Begin TLS negotiation\r\n");
    // Had "USER mallory" been kept, PASS would have been a login attempt.
    assert_eq!(str_of(&out, "after_tls"), "-ERR give USER first\r\n");
    server.stop().await;
}

const AUTH_PLAIN: &str = r#"
import base64, json, poplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
plain = lambda u, pw: base64.b64encode(b"\0" + u.encode() + b"\0" + pw.encode()).decode()

def attempt(call):
    try:
        return call().decode()
    except poplib.error_proto as e:
        return e.args[0].decode()

p = poplib.POP3("127.0.0.1", port, timeout=20)
out = {"mechanisms": [l.decode() for l in p._longcmd("AUTH")[1]]}
out["wrong"] = attempt(lambda: p._shortcmd("AUTH PLAIN " + plain(user, "wrong")))
out["unknown_mechanism"] = attempt(lambda: p._shortcmd("AUTH CRAM-MD5"))
out["bad_base64"] = attempt(lambda: p._shortcmd("AUTH PLAIN !!!"))
p._putcmd("AUTH PLAIN")
out["challenge"] = p._getresp().decode()
p._putcmd("*")
out["cancel"] = attempt(p._getresp)
p._putcmd("AUTH PLAIN")
p._getresp()
p._putcmd(plain(user, password))
out["continuation"] = attempt(p._getresp)
out["stat"] = list(p.stat())
p.quit()

q = poplib.POP3("127.0.0.1", port, timeout=20)
out["initial_response"] = attempt(lambda: q._shortcmd("AUTH PLAIN " + plain(user.upper(), password)))
out["noop"] = q.noop().decode()
q.quit()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn auth_plain_with_initial_response_and_continuation() {
    let server = Server::start().await;
    server.deliver_raw(&[b"Subject: a\r\n\r\nb\r\n"]).await;
    let out = python(AUTH_PLAIN, args(&server, &[])).await;
    assert_eq!(strings_of(&out, "mechanisms"), ["PLAIN"]);
    assert_eq!(str_of(&out, "wrong"), "-ERR [AUTH] invalid user name or password");
    assert_eq!(
        str_of(&out, "unknown_mechanism"),
        "-ERR unsupported authentication mechanism"
    );
    assert_eq!(str_of(&out, "bad_base64"), "-ERR the response is not valid base64");
    assert_eq!(str_of(&out, "challenge"), "+ ");
    assert_eq!(str_of(&out, "cancel"), "-ERR authentication cancelled");
    assert_eq!(str_of(&out, "continuation"), "+OK maildrop has 1 messages (17 octets)");
    assert_eq!(out["stat"], serde_json::json!([1, 17]));
    assert!(str_of(&out, "initial_response").starts_with("+OK maildrop has 1 messages"));
    assert_eq!(str_of(&out, "noop"), "+OK");
    server.stop().await;
}

const MISTAKES: &str = r#"
import json, poplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def attempt(call):
    try:
        return call().decode()
    except poplib.error_proto as e:
        return e.args[0].decode()

def raw(line):
    p._putline(line)
    return attempt(p._getresp)

p = poplib.POP3("127.0.0.1", port, timeout=20)
out = {}
out["pass_first"] = attempt(lambda: p.pass_(password))
out["stat_before_login"] = attempt(p.stat)
p.user(user)
out["wrong_password"] = attempt(lambda: p.pass_("not it"))
out["pass_again"] = attempt(lambda: p.pass_(password))
p.user(user)
out["right_password"] = attempt(lambda: p.pass_(password))
out["unknown"] = raw(b"XYZZY")
out["bad_argument"] = raw(b"RETR one")
out["too_long"] = raw(b"NOOP " + b"x" * 10000)
out["not_utf8"] = raw(b"\xff\xfe\xfd \x80")
out["user_again"] = attempt(lambda: p.user(user))
out["stat"] = list(p.stat())
out["quit"] = p.quit().decode()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_get_err_and_the_session_goes_on() {
    let server = Server::start().await;
    server.deliver_raw(&[b"Subject: a\r\n\r\nb\r\n"]).await;
    let out = python(MISTAKES, args(&server, &[])).await;
    assert_eq!(str_of(&out, "pass_first"), "-ERR give USER first");
    assert_eq!(
        str_of(&out, "stat_before_login"),
        "-ERR log in first (USER and PASS, or AUTH)"
    );
    assert_eq!(
        str_of(&out, "wrong_password"),
        "-ERR [AUTH] invalid user name or password"
    );
    assert_eq!(
        str_of(&out, "pass_again"),
        "-ERR give USER first",
        "a failed PASS forgets the USER"
    );
    assert!(str_of(&out, "right_password").starts_with("+OK"));
    assert_eq!(str_of(&out, "unknown"), "-ERR unknown command");
    assert_eq!(str_of(&out, "bad_argument"), "-ERR invalid message number");
    assert_eq!(str_of(&out, "too_long"), "-ERR line too long");
    assert_eq!(str_of(&out, "not_utf8"), "-ERR unknown command");
    assert_eq!(str_of(&out, "user_again"), "-ERR already logged in");
    assert_eq!(out["stat"], serde_json::json!([1, 17]));
    assert!(str_of(&out, "quit").starts_with("+OK"));
    server.stop().await;
}
