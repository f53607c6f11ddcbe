//! `tern dns check` against an in-process DNS server (hickory-server) serving a good
//! zone, a broken one, and two resolvers that disagree (split-horizon).

use std::net::{IpAddr, Ipv4Addr};

use tern_dns::check::{Finding, Status, check, check_with};
use tern_dns::records::{self, DomainPlan, Kind};
use tern_dns::resolve::Lookup;
use tern_net::endpoints::ClientEndpoints;
use tern_store::DkimAlgorithm;
use tern_testkit::dns::TestDns;

const HOST: &str = "mail.example.test";
const PUBLIC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const OLD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn plan(domain: &str) -> DomainPlan {
    let keys = [DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256]
        .into_iter()
        .map(|alg| tern_smtp::dkim::generate(domain, alg, 1_790_000_000, &[]).expect("DKIM key"))
        .collect();
    DomainPlan {
        domain: domain.into(),
        endpoints: ClientEndpoints {
            hostname: HOST.into(),
            imap: Some(143),
            imaps: Some(993),
            submission: Some(587),
            submissions: Some(465),
            smtp: Some(25),
            https: Some(443),
            ..Default::default()
        },
        dkim: keys,
        addresses: vec![IpAddr::V4(PUBLIC)],
    }
}

/// Publishes exactly what `tern dns records` suggests.
fn publish_everything(dns: &TestDns, plan: &DomainPlan) {
    let suggested = records::suggested(plan);
    let mut txt: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for r in &suggested {
        match r.kind {
            Kind::Mx => dns.set_mx(&r.name, &[(10, HOST)]),
            Kind::A => dns.set_a(&r.name, &[r.value.parse().unwrap()]),
            Kind::Cname => dns.set_cname(&r.name, HOST),
            Kind::Txt => txt.entry(&r.name).or_default().push(&r.value),
            Kind::Srv => {
                let parts: Vec<&str> = r.value.split(' ').collect();
                dns.set_srv(
                    &r.name,
                    &[(
                        parts[0].parse().unwrap(),
                        parts[1].parse().unwrap(),
                        parts[2].parse().unwrap(),
                        parts[3],
                    )],
                );
            }
            Kind::Aaaa | Kind::Ptr => {}
        }
    }
    for (name, values) in txt {
        dns.set_txt(name, &values);
    }
    for r in records::reverse(plan) {
        dns.set_ptr(IpAddr::V4(PUBLIC), r.value.trim_end_matches('.'));
    }
}

fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no finding {check} in {findings:#?}"))
}

#[tokio::test]
async fn a_zone_publishing_the_suggested_records_is_all_ok() {
    let dns = TestDns::start().expect("DNS");
    let plan = plan("example.test");
    publish_everything(&dns, &plan);
    let lookup = Lookup::server(dns.addr()).unwrap();
    let findings = check(&plan, false, &lookup).await;
    let not_ok: Vec<&Finding> = findings.iter().filter(|f| f.status != Status::Ok).collect();
    assert!(not_ok.is_empty(), "{not_ok:#?}");
    // Every kind of check ran: host, MX, SPF, both DKIM keys, DMARC, MTA-STS, TLS-RPT,
    // three names, seven SRV records, PTR.
    assert_eq!(findings.len(), 1 + 1 + 1 + 2 + 1 + 1 + 1 + 3 + 7 + 1, "{findings:#?}");
    assert_eq!(find(&findings, "MX").published, "10 mail.example.test");
    assert_eq!(find(&findings, "SRV _pop3s._tcp").published, "0 0 0 .");
    assert!(find(&findings, "SPF").detail.contains("pass"));
}

#[tokio::test]
async fn a_broken_zone_gets_each_problem_named_with_the_record_to_publish() {
    let dns = TestDns::start().expect("DNS");
    let domain = "broken.test";
    let plan = plan(domain);
    publish_everything(&dns, &plan);
    // The MX still at the old provider; SPF without Tern; a stale DKIM key; no DMARC;
    // autodiscover at the old provider; an SRV record pointing elsewhere; no host name.
    dns.set_mx(domain, &[(10, "mx.old.test")]);
    dns.set_a("mx.old.test", &[OLD]);
    dns.set_txt(domain, &["v=spf1 ip4:198.51.100.7 -all"]);
    let rsa = &plan.dkim[0];
    dns.set_txt(
        &tern_smtp::dkim::record_name(rsa),
        &["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAstale"],
    );
    dns.remove(&format!("_dmarc.{domain}"));
    dns.remove(&format!("autodiscover.{domain}"));
    dns.set_a(&format!("autodiscover.{domain}"), &[OLD]);
    dns.set_srv(&format!("_imaps._tcp.{domain}"), &[(0, 1, 993, "imap.old.test")]);
    let lookup = Lookup::server(dns.addr()).unwrap();

    // While the domain is migrating its MX at the old provider is expected.
    let findings = check(&plan, true, &lookup).await;
    let mx = find(&findings, "MX");
    assert_eq!(mx.status, Status::Warning, "{mx:#?}");
    assert!(
        mx.detail.contains("mx.old.test") && mx.detail.contains("go-live"),
        "{mx:#?}"
    );
    assert_eq!(
        mx.publish,
        vec!["broken.test. 3600 IN MX 10 mail.example.test.".to_string()]
    );
    // Not migrating: the same MX is an error.
    let findings = check(&plan, false, &lookup).await;
    assert_eq!(find(&findings, "MX").status, Status::Error);

    let spf = find(&findings, "SPF");
    assert_eq!(spf.status, Status::Error, "{spf:#?}");
    assert!(spf.detail.contains("192.0.2.10 (fail)"), "{spf:#?}");
    assert_eq!(
        spf.publish,
        vec!["broken.test. 3600 IN TXT \"v=spf1 ip4:198.51.100.7 a:mail.example.test -all\"".to_string()]
    );
    let dkim = find(&findings, &format!("DKIM {}", rsa.selector));
    assert_eq!(dkim.status, Status::Error);
    assert!(dkim.detail.contains("not the one Tern signs with"), "{dkim:#?}");
    assert!(dkim.publish[0].starts_with(&format!(
        "{}. 3600 IN TXT ( \"v=DKIM1; k=rsa; p=",
        tern_smtp::dkim::record_name(rsa)
    )));
    assert_eq!(
        find(&findings, &format!("DKIM {}", plan.dkim[1].selector)).status,
        Status::Ok
    );
    let dmarc = find(&findings, "DMARC");
    assert_eq!(dmarc.status, Status::Warning);
    assert_eq!(
        dmarc.publish,
        vec!["_dmarc.broken.test. 3600 IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@broken.test\"".to_string()]
    );
    let autodiscover = find(&findings, "name autodiscover.broken.test");
    assert_eq!(autodiscover.status, Status::Warning);
    assert!(autodiscover.detail.contains("another server"), "{autodiscover:#?}");
    let srv = find(&findings, "SRV _imaps._tcp");
    assert_eq!(srv.status, Status::Warning);
    assert_eq!(
        srv.publish,
        vec!["_imaps._tcp.broken.test. 3600 IN SRV 0 1 993 mail.example.test.".to_string()]
    );

    // The host name gone: an error, with the A record to publish.
    dns.remove(HOST);
    let findings = check(&plan, false, &lookup).await;
    let host = find(&findings, "A/AAAA mail.example.test");
    assert_eq!(host.status, Status::Error);
    assert_eq!(
        host.publish,
        vec!["mail.example.test. 3600 IN A 192.0.2.10".to_string()]
    );

    // Two SPF records: a permanent error for every receiver.
    dns.set_txt(domain, &["v=spf1 mx -all", "v=spf1 a -all"]);
    let findings = check(&plan, false, &lookup).await;
    assert!(find(&findings, "SPF").detail.contains("RFC 7208 §4.5"));
}

#[tokio::test]
async fn resolvers_that_disagree_on_where_mail_and_clients_go_are_flagged() {
    let plan = plan("split.test");
    let public = TestDns::start().expect("DNS");
    publish_everything(&public, &plan);
    // The internal DNS still has the old provider's MX and autoconfig name.
    let internal = TestDns::start().expect("DNS");
    publish_everything(&internal, &plan);
    internal.set_mx("split.test", &[(10, "mx.old.test")]);
    internal.set_a("mx.old.test", &[OLD]);
    internal.remove("autoconfig.split.test");
    internal.set_a("autoconfig.split.test", &[OLD]);
    let lookups = [
        Lookup::server(internal.addr()).unwrap(),
        Lookup::server(public.addr()).unwrap(),
    ];
    let report = check_with(&plan, false, &lookups).await;
    assert_eq!(report.reports.len(), 2);
    assert_eq!(report.worst(), Status::Error);
    let mx = report
        .differences
        .iter()
        .find(|f| f.check == "MX (split-horizon)")
        .unwrap_or_else(|| panic!("{:#?}", report.differences));
    assert_eq!(mx.status, Status::Error);
    assert!(mx.published.contains("10 mx.old.test") && mx.published.contains("10 mail.example.test"));
    assert!(
        report
            .differences
            .iter()
            .any(|f| f.check == "name autoconfig.split.test (split-horizon)" && f.status == Status::Error),
        "{:#?}",
        report.differences
    );
    // Records both agree on are not listed.
    assert!(!report.differences.iter().any(|f| f.check.starts_with("DMARC")));
}

#[tokio::test]
async fn an_unreachable_resolver_is_reported_not_hung_on() {
    // Nothing listens on the discard port of loopback: every question fails.
    let lookup = Lookup::server("127.0.0.1:9".parse().unwrap()).unwrap();
    let plan = plan("example.test");
    let findings = check(&plan, false, &lookup).await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].check, "resolver 127.0.0.1:9");
    assert_eq!(findings[0].status, Status::Error);
    assert!(findings[0].published.starts_with("no answer"), "{findings:#?}");
}
