//! Renewal reasons, back-off, certificate inspection and trust, names wanted, challenges
//! and renewal requests.

use std::net::Ipv4Addr;

use super::*;

fn info(names: &[&str], not_after: i64, self_signed: bool) -> CertificateInfo {
    CertificateInfo {
        names: names.iter().map(|n| n.to_string()).collect(),
        subject: "CN=mail.example.test".into(),
        issuer: if self_signed { "CN=mail.example.test" } else { "CN=CA" }.into(),
        not_before: 0,
        not_after,
        serial: "01".into(),
        self_signed,
        sha256: "00".into(),
    }
}

#[test]
fn renewal_is_needed_for_missing_self_signed_incomplete_or_expiring_certificates() {
    let now = 1_800_000_000;
    let day = 86_400;
    let wanted = vec!["mail.example.test".to_string(), "autoconfig.example.test".to_string()];
    let good = info(&["mail.example.test", "autoconfig.example.test"], now + 60 * day, false);
    assert_eq!(renewal_reason(Some(&good), &wanted, now, 30), None);
    // Extra names on the certificate are no reason.
    assert_eq!(renewal_reason(Some(&good), &wanted[..1], now, 30), None);

    let reason = |cert: Option<&CertificateInfo>| renewal_reason(cert, &wanted, now, 30).expect("renew");
    assert!(reason(None).contains("no certificate"));
    assert!(reason(Some(&info(&["mail.example.test"], now + 600 * day, true))).contains("self-signed"));
    let lacking = reason(Some(&info(&["MAIL.example.test"], now + 60 * day, false)));
    assert_eq!(lacking, "the certificate lacks autoconfig.example.test");
    let expiring = info(&["mail.example.test", "autoconfig.example.test"], now + 29 * day, false);
    assert!(reason(Some(&expiring)).contains("expires on"));
    // A shorter window lets it stay.
    assert_eq!(renewal_reason(Some(&expiring), &wanted, now, 7), None);
    assert_eq!(renewal_due(&expiring, 7), now + 22 * day);
}

#[test]
fn failures_back_off_from_five_minutes_to_the_check_interval() {
    assert_eq!(retry_delay(1), Duration::from_secs(300));
    assert_eq!(retry_delay(2), Duration::from_secs(600));
    assert_eq!(retry_delay(4), Duration::from_secs(2400));
    assert_eq!(retry_delay(9), CHECK_INTERVAL);
    assert_eq!(retry_delay(u32::MAX), CHECK_INTERVAL);
}

#[test]
fn inspecting_a_self_signed_certificate() {
    let (cert, _key) = tls::self_signed_pem("mail.example.test").expect("generate");
    let info = inspect_pem(cert.as_bytes()).expect("inspect");
    assert!(info.self_signed);
    assert_eq!(info.names, vec!["mail.example.test", "localhost"]);
    assert!(info.not_after - info.not_before > 800 * 86_400);
    assert_eq!(info.sha256.len(), 64);
    assert!(inspect_pem(b"not pem").is_err());
    // A self-signed certificate is never trusted, whatever the status says.
    let chain: Vec<CertificateDer<'static>> = {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(cert.as_bytes())
            .map(|c| c.expect("pem"))
            .collect()
    };
    let status = Status {
        issued_sha256: Some(info.sha256.clone()),
        ..Status::default()
    };
    assert!(!is_trusted(&chain, "mail.example.test", Some(&status)));
}

#[tokio::test]
async fn only_names_pointing_at_the_host_are_wanted() {
    let dns = tern_testkit::dns::TestDns::start().expect("DNS");
    let lookups = vec![Lookup::server(dns.addr()).expect("lookup")];
    dns.set_a(
        "mail.example.test",
        &[Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
    );
    dns.set_a("autoconfig.example.test", &[Ipv4Addr::new(192, 0, 2, 2)]);
    dns.set_cname("autodiscover.example.test", "mail.example.test");
    dns.set_a(
        "mta-sts.example.test",
        &[Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)],
    );
    dns.set_txt("autoconfig.other.test", &["v=nothing"]);
    let domains = vec!["Example.test".to_string(), "other.test".to_string()];
    let wanted = wanted_names("Mail.Example.Test", &[], &domains, &lookups).await;
    assert_eq!(
        wanted.names,
        vec![
            "mail.example.test",
            "autoconfig.example.test",
            "autodiscover.example.test"
        ]
    );
    let reasons: Vec<(&str, &str)> = wanted
        .left_out
        .iter()
        .map(|l| (l.name.as_str(), l.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "mta-sts.example.test",
                "resolves to 192.0.2.1, 198.51.100.7, not to mail.example.test's 192.0.2.1, 192.0.2.2"
            ),
            ("autoconfig.other.test", "has no A or AAAA record"),
            ("autodiscover.other.test", "does not exist in DNS"),
            ("mta-sts.other.test", "does not exist in DNS"),
        ]
    );

    // A host name that does not resolve is still wanted (the order then says why it
    // fails); nothing can be compared with it.
    dns.remove("mail.example.test");
    let wanted = wanted_names("mail.example.test", &[], &domains[..1], &lookups).await;
    assert_eq!(wanted.names, vec!["mail.example.test"]);
    assert!(
        wanted.left_out[0].reason.contains("itself does not resolve"),
        "{wanted:?}"
    );

    // With [dns] public_addresses, names are compared with those instead.
    let public = [
        IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::from(Ipv4Addr::new(198, 51, 100, 7)),
    ];
    let wanted = wanted_names("mail.example.test", &public, &domains[..1], &lookups).await;
    assert_eq!(wanted.names, vec!["mail.example.test", "mta-sts.example.test"]);
    assert_eq!(
        wanted.left_out[0].reason,
        "resolves to 192.0.2.2, not to this server's 192.0.2.1, 198.51.100.7"
    );
}

#[test]
fn published_challenges_go_when_the_order_ends() {
    let challenges = Http01Challenges::default();
    {
        let mut published = Published {
            challenges: &challenges,
            tokens: Vec::new(),
        };
        published.insert("token-1", "token-1.key");
        published.insert("token-2", "token-2.key");
        assert_eq!(challenges.get("token-2").as_deref(), Some("token-2.key"));
    }
    assert!(challenges.is_empty());
}

#[test]
fn renewal_requests_are_taken_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = AcmeFiles::new(dir.path());
    assert_eq!(files.take_request(), None);
    let id = files.request_renewal().expect("request");
    assert!(files.renewal_requested());
    assert_eq!(files.take_request(), Some(id));
    assert!(!files.renewal_requested());
    assert_eq!(files.take_request(), None);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("acme"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    // A damaged status file is reported with its path, not taken as empty.
    std::fs::write(files.status_path(), "{").expect("write");
    let err = files.read_status().expect_err("damaged");
    assert!(err.to_string().contains("status.json is damaged"), "{err}");
}

#[test]
fn a_first_start_with_acme_serves_a_temporary_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::production("mail.example.test").expect("config");
    let certificate = initial_certificate(dir.path(), &config).expect("temporary");
    let info = inspect(&certificate.current().cert).expect("inspect");
    assert!(info.self_signed && info.names.contains(&"mail.example.test".to_string()));
    // Without ACME, missing files stop the start.
    config.acme.enabled = false;
    assert!(initial_certificate(dir.path(), &config).is_err());
}
