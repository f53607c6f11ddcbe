//! The doctor's checks against scripted servers and generated certificates.

use super::*;
use chrono::Datelike;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::TcpListener;

const HOST: &str = "mail.example.test";

/// (year, month, day) `days` from today (negative: in the past).
fn ymd(days: i64) -> (i32, u8, u8) {
    let d = chrono::Utc::now() + chrono::Duration::days(days);
    (d.year(), d.month() as u8, d.day() as u8)
}

/// A CA: its issuer (to sign leaves) and certificate (to trust).
fn ca(name: &str) -> (Issuer<'static, KeyPair>, CertificateDer<'static>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    (Issuer::new(params, key), cert.der().clone())
}

/// A leaf for `names`, valid from `from` to `until` days from today, signed by
/// `issuer` (or by itself).
fn leaf(names: &[&str], from: i64, until: i64, issuer: Option<&Issuer<'static, KeyPair>>) -> CertificateDer<'static> {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    let (y, m, d) = ymd(from);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(until);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = KeyPair::generate().expect("key");
    match issuer {
        Some(issuer) => params.signed_by(&key, issuer).expect("sign").der().clone(),
        None => params.self_signed(&key).expect("self-sign").der().clone(),
    }
}

fn roots(trusted: &[&CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).expect("trust anchor");
    }
    roots
}

fn judged(chain: &[CertificateDer<'static>], roots: &RootCertStore) -> CertVerdict {
    let name = ServerName::try_from(HOST).expect("name");
    judge(
        chain,
        &name,
        roots,
        &rustls::crypto::ring::default_provider(),
        unix_now(),
    )
}

#[test]
fn a_good_certificate_is_ok_and_says_what_it_is() {
    let (issuer, ca_cert) = ca("Doctor Test CA");
    let verdict = judged(&[leaf(&[HOST], -1, 90, Some(&issuer))], &roots(&[&ca_cert]));
    assert_eq!(verdict.problems, vec![]);
    assert_eq!(verdict.names, vec![HOST.to_string()]);
    assert_eq!(verdict.issuer, "Doctor Test CA");
    assert!(verdict.days_left() >= 88, "{}", verdict.days_left());
    let (status, detail, advice) = verdict.finding("TLS 1.3");
    assert_eq!(status, Status::Ok);
    assert!(
        detail.starts_with("TLS 1.3; certificate for mail.example.test, issued by Doctor Test CA"),
        "{detail}"
    );
    assert!(advice.is_none());
}

#[test]
fn each_problem_is_named_apart() {
    let (issuer, ca_cert) = ca("Doctor Test CA");
    let trusted = roots(&[&ca_cert]);

    let expired = judged(&[leaf(&[HOST], -100, -3, Some(&issuer))], &trusted);
    assert!(
        matches!(expired.problems.as_slice(), [CertProblem::Expired { .. }]),
        "{:?}",
        expired.problems
    );
    assert!(expired.finding("TLS 1.3").1.contains("EXPIRED on"));

    let early = judged(&[leaf(&[HOST], 3, 100, Some(&issuer))], &trusted);
    assert!(
        matches!(early.problems.as_slice(), [CertProblem::NotYetValid { .. }]),
        "{:?}",
        early.problems
    );

    let other = judged(
        &[leaf(
            &["other.example.test", "www.other.example.test"],
            -1,
            90,
            Some(&issuer),
        )],
        &trusted,
    );
    assert_eq!(
        other.problems,
        vec![CertProblem::WrongName {
            names: vec!["other.example.test".into(), "www.other.example.test".into()]
        }]
    );
    let (status, detail, _) = other.finding("TLS 1.3");
    assert_eq!(status, Status::Error);
    assert!(
        detail.contains("WRONG NAME: it names other.example.test, www.other.example.test"),
        "{detail}"
    );

    let self_signed = judged(&[leaf(&[HOST], -1, 90, None)], &trusted);
    assert_eq!(self_signed.problems, vec![CertProblem::SelfSigned]);
    assert!(self_signed.finding("TLS 1.3").1.contains("SELF-SIGNED"));

    let (stranger, _) = ca("Some Other CA");
    let untrusted = judged(&[leaf(&[HOST], -1, 90, Some(&stranger))], &trusted);
    assert_eq!(
        untrusted.problems,
        vec![CertProblem::UntrustedIssuer {
            issuer: "Some Other CA".into()
        }]
    );

    // Everything at once: every problem reported, not just the first.
    let all = judged(&[leaf(&["other.example.test"], -100, -3, Some(&stranger))], &trusted);
    assert_eq!(all.problems.len(), 3, "{:?}", all.problems);
    let detail = all.finding("TLS 1.2").1;
    for word in ["EXPIRED", "UNTRUSTED ISSUER: Some Other CA", "WRONG NAME"] {
        assert!(detail.contains(word), "{word} in {detail}");
    }
}

#[test]
fn a_certificate_expiring_soon_is_a_warning() {
    let (issuer, ca_cert) = ca("Doctor Test CA");
    let verdict = judged(&[leaf(&[HOST], -80, 5, Some(&issuer))], &roots(&[&ca_cert]));
    assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
    let (status, detail, advice) = verdict.finding("TLS 1.3");
    assert_eq!(status, Status::Warning);
    assert!(
        detail.contains("expires in 4 days") || detail.contains("expires in 5 days"),
        "{detail}"
    );
    assert!(advice.is_some_and(|a| a.contains("Renew")));
}

#[test]
fn a_self_signed_certificate_given_as_the_ca_verifies() {
    let cert = leaf(&[HOST], -1, 90, None);
    assert!(
        judged(std::slice::from_ref(&cert), &roots(&[&cert]))
            .problems
            .is_empty()
    );
}

#[test]
fn addresses_and_their_domains() {
    assert_eq!(email_domain(" alice@Example.COM "), Some("example.com".into()));
    assert_eq!(
        email_domain("a.b+c@mail.example.test."),
        Some("mail.example.test".into())
    );
    for bad in [
        "alice",
        "@example.com",
        "alice@",
        "alice@localhost",
        "al ice@example.com",
        "a@exa mple.com",
        "a@-..com",
    ] {
        assert_eq!(email_domain(bad), None, "{bad}");
    }
}

#[test]
fn srv_labels_follow_rfc_6186_and_8314() {
    let e = |protocol, security| Endpoint {
        protocol,
        port: 1,
        security,
    };
    assert_eq!(srv_label(e(Protocol::Imap, Security::Tls)), "_imaps._tcp");
    assert_eq!(srv_label(e(Protocol::Pop3, Security::StartTls)), "_pop3._tcp");
    assert_eq!(srv_label(e(Protocol::Submission, Security::Tls)), "_submissions._tcp");
    assert_eq!(
        srv_label(e(Protocol::Submission, Security::StartTls)),
        "_submission._tcp"
    );
}

#[test]
fn a_password_never_shows() {
    let password = Password::new("s3cret!");
    assert_eq!(format!("{password:?}"), "Password(hidden)");
    assert_eq!(
        redact("NO user s3cret! unknown", &password),
        "NO user (password hidden) unknown"
    );
}

/// A one-connection server that answers each line the client sends with the next
/// scripted answer, after sending `greeting`.
async fn scripted(greeting: &'static str, answers: Vec<&'static str>) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn = Conn::new(stream);
        conn.io.get_mut().write_all(greeting.as_bytes()).await.expect("greet");
        for answer in answers {
            if conn.line().await.is_err() {
                return;
            }
            conn.io.get_mut().write_all(answer.as_bytes()).await.expect("answer");
        }
        // Hold the connection until the client is done with it.
        let _ = conn.line().await;
    });
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test]
async fn starttls_dialogues_reach_the_handshake() {
    let imap = scripted(
        "* OK ready\r\n",
        vec![
            "* CAPABILITY IMAP4rev1 STARTTLS\r\nD1 OK done\r\n",
            "D2 OK begin TLS\r\n",
        ],
    )
    .await;
    starttls(Protocol::Imap, imap).await.expect("IMAP STARTTLS");

    let pop3 = scripted(
        "+OK POP3\r\n",
        vec!["+OK\r\nUSER\r\nSTLS\r\n.\r\n", "+OK begin TLS\r\n"],
    )
    .await;
    starttls(Protocol::Pop3, pop3).await.expect("POP3 STLS");

    let smtp = scripted(
        "220-mail.example.test\r\n220 ESMTP\r\n",
        vec![
            "250-mail.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
            "220 go ahead\r\n",
        ],
    )
    .await;
    starttls(Protocol::Submission, smtp).await.expect("SMTP STARTTLS");
}

#[tokio::test]
async fn a_server_without_tls_or_with_injected_data_is_refused() {
    let imap = scripted("* OK ready\r\n", vec!["* CAPABILITY IMAP4rev1\r\nD1 OK done\r\n"]).await;
    let err = starttls(Protocol::Imap, imap).await.expect_err("no STARTTLS");
    assert!(err.contains("does not offer STARTTLS"), "{err}");

    let pop3 = scripted("+OK POP3\r\n", vec!["+OK\r\nUSER\r\n.\r\n"]).await;
    let err = starttls(Protocol::Pop3, pop3).await.expect_err("no STLS");
    assert!(err.contains("does not offer STLS"), "{err}");

    let smtp = scripted("220 ESMTP\r\n", vec!["250-mail.example.test\r\n250 PIPELINING\r\n"]).await;
    let err = starttls(Protocol::Submission, smtp).await.expect_err("no STARTTLS");
    assert!(err.contains("does not offer STARTTLS"), "{err}");

    // Plain text after the go-ahead would be taken as if it came over TLS.
    let smtp = scripted(
        "220 ESMTP\r\n",
        vec![
            "250-mail.example.test\r\n250 STARTTLS\r\n",
            "220 go ahead\r\n250 injected\r\n",
        ],
    )
    .await;
    let err = starttls(Protocol::Submission, smtp).await.expect_err("injection");
    assert!(err.contains("after agreeing to start TLS"), "{err}");

    let wrong = scripted("+OK POP3 here\r\n", vec![]).await;
    let err = starttls(Protocol::Imap, wrong).await.expect_err("not IMAP");
    assert!(err.contains("not answer with a greeting of IMAP"), "{err}");
}
