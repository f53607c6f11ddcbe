//! `tern dns records`, `tern dns check` and `tern migrate cutover` from the command
//! line, with an in-process DNS server (tern_testkit::dns) as the resolver.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;

use common::{add_source, ok, one_line_error, tern, tern_stdin};
use tern_testkit::dns::TestDns;

const DOMAIN: &str = "example.test";
const HOST: &str = "mail.example.test";

/// A production data folder for example.test, its public address 192.0.2.10.
fn data_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&tern(dir.path(), &["init", "--domain", DOMAIN, "--hostname", HOST]));
    let config = dir.path().join("tern.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("public_addresses = []", "public_addresses = [\"192.0.2.10\"]");
    assert!(text.contains("192.0.2.10"), "the config has [dns] public_addresses");
    std::fs::write(&config, text).unwrap();
    dir
}

/// Publishes the lines of `tern dns records` that the test DNS can serve.
fn publish(dns: &TestDns, data: &Path) {
    let zone = ok(&tern(data, &["dns", "records", DOMAIN]));
    let mut txt: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in zone.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()) {
        let mut parts = line.splitn(5, ' ');
        let name = parts.next().unwrap().trim_end_matches('.').to_string();
        let (_ttl, _class, kind, value) = (parts.next(), parts.next(), parts.next().unwrap(), parts.next().unwrap());
        match kind {
            "MX" => dns.set_mx(&name, &[(10, HOST)]),
            "A" => dns.set_a(&name, &[value.parse().unwrap()]),
            "CNAME" => dns.set_cname(&name, value.trim_end_matches('.')),
            "SRV" => {
                let v: Vec<&str> = value.split(' ').collect();
                dns.set_srv(
                    &name,
                    &[(
                        v[0].parse().unwrap(),
                        v[1].parse().unwrap(),
                        v[2].parse().unwrap(),
                        v[3],
                    )],
                );
            }
            "TXT" => {
                // "a" or ( "a" "b" ): the strings joined.
                let joined: String = value
                    .split('"')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 1)
                    .map(|(_, s)| s)
                    .collect();
                txt.entry(name).or_default().push(joined);
            }
            other => panic!("unexpected record type {other} in {line}"),
        }
    }
    for (name, values) in txt {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        dns.set_txt(&name, &values);
    }
    dns.set_ptr("192.0.2.10".parse().unwrap(), HOST);
}

#[test]
fn records_check_and_the_exit_status() {
    let data = data_folder();
    let zone = ok(&tern(data.path(), &["dns", "records", DOMAIN]));
    for needle in [
        "example.test. 3600 IN MX 10 mail.example.test.",
        "mail.example.test. 3600 IN A 192.0.2.10",
        "._domainkey.example.test. 3600 IN TXT ( \"v=DKIM1; k=rsa; p=",
        "._domainkey.example.test. 3600 IN TXT \"v=DKIM1; k=ed25519; p=",
        "_imaps._tcp.example.test. 3600 IN SRV 0 1 993 mail.example.test.",
        "_submission._tcp.example.test. 3600 IN SRV 0 1 587 mail.example.test.",
        "autodiscover.example.test. 3600 IN CNAME mail.example.test.",
    ] {
        assert!(zone.contains(needle), "{needle} missing from\n{zone}");
    }

    let dns = TestDns::start().expect("DNS");
    publish(&dns, data.path());
    let resolver = dns.addr().to_string();
    let out = tern(data.path(), &["dns", "check", DOMAIN, "--resolver", &resolver]);
    let report = ok(&out);
    assert!(report.contains("0 warning(s), 0 error(s)"), "{report}");

    // JSON for scripts.
    let json: serde_json::Value = serde_json::from_str(&ok(&tern(
        data.path(),
        &["dns", "check", DOMAIN, "--resolver", &resolver, "--json"],
    )))
    .expect("JSON");
    assert_eq!(json["domain"], DOMAIN);
    assert!(json["reports"][0]["findings"].as_array().unwrap().len() > 15);

    // Break the MX: an error, the record to publish, exit status 1 and one error line.
    dns.set_mx(DOMAIN, &[(10, "mx.old.test")]);
    dns.set_a("mx.old.test", &[Ipv4Addr::new(198, 51, 100, 7)]);
    let out = tern(data.path(), &["dns", "check", DOMAIN, "--resolver", &resolver]);
    let err = one_line_error(&out);
    assert!(err.contains("1 error(s) in the DNS of example.test"), "{err}");
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(
        report.contains("publish: example.test. 3600 IN MX 10 mail.example.test."),
        "{report}"
    );

    // While the domain is still migrating that MX is only a warning.
    ok(&tern(data.path(), &["domain", "receiving", DOMAIN, "no"]));
    let report = ok(&tern(data.path(), &["dns", "check", DOMAIN, "--resolver", &resolver]));
    assert!(report.contains("expected until go-live"), "{report}");

    // Input errors are one line.
    let err = one_line_error(&tern(
        data.path(),
        &["dns", "check", "nothosted.test", "--resolver", &resolver],
    ));
    assert!(err.contains("nothosted.test is not hosted here"), "{err}");
    let err = one_line_error(&tern(
        data.path(),
        &["dns", "check", DOMAIN, "--resolver", "dns.example"],
    ));
    assert!(err.contains("not a DNS server address"), "{err}");
}

#[test]
fn cutover_by_hand() {
    let data = data_folder();
    let err = one_line_error(&tern(data.path(), &["migrate", "cutover", DOMAIN]));
    assert!(err.contains("has no migrations"), "{err}");

    // Loopback's discard port: nothing is migrated, only the cutover is declared.
    add_source(data.path(), 9);
    ok(&tern_stdin(
        data.path(),
        &["user", "add", "alice@example.test", "--password-stdin"],
        "a-long-password-1\n",
    ));
    ok(&tern_stdin(
        data.path(),
        &[
            "migrate",
            "add",
            "--source",
            "old",
            "--user",
            "alice@example.test",
            "--password-stdin",
        ],
        "old-password\n",
    ));
    ok(&tern(data.path(), &["domain", "receiving", DOMAIN, "no"]));
    let out = ok(&tern(data.path(), &["migrate", "cutover", DOMAIN]));
    assert!(out.contains("example.test is live"), "{out}");
    assert!(out.contains("72h 00m"), "the quiet period: {out}");
    // The domain receives now, and a delta pass is asked for.
    let domains: serde_json::Value =
        serde_json::from_str(&ok(&tern(data.path(), &["domain", "list", "--json"]))).unwrap();
    assert_eq!(domains[0]["receiving"], true, "{domains}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&tern(data.path(), &["migrate", "status", "--json"]))).unwrap();
    assert!(status.to_string().contains("delta"), "{status}");

    let status = ok(&tern(data.path(), &["migrate", "status"]));
    assert!(
        status.contains("Go-live of example.test: live since") && status.contains("declared by tern migrate cutover"),
        "{status}"
    );

    let err = one_line_error(&tern(data.path(), &["migrate", "cutover", DOMAIN]));
    assert!(err.contains("went live already"), "{err}");
    let err = one_line_error(&tern(data.path(), &["migrate", "cutover", "other.test"]));
    assert!(err.contains("other.test is not hosted here"), "{err}");
}
