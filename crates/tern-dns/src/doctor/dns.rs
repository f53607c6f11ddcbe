//! Step 1: the names a client looks up: the host's addresses, the autoconfig and
//! autodiscover names and the SRV records of RFC 6186 §3 and RFC 8314 §5.1.

use super::*;

/// Step 1: the host's addresses.
pub(super) async fn resolve_host(lookup: &Lookup, host: &str, domain: &str) -> (Finding, Vec<IpAddr>) {
    if let Ok(ip) = host.parse::<IpAddr>() {
        let finding = Finding::new(
            Status::Warning,
            Check::Host,
            host,
            "the server is given as an IP address: nothing to look up",
        )
        .advice(
            "Clients should connect by name: a certificate from a public CA names the host, not its address. \
             Set hostname in tern.toml to the server's DNS name.",
        );
        return (finding, vec![ip]);
    }
    let publish = format!(
        "Publish an A record for {host} with this server's public IPv4 address (and AAAA for IPv6); \
         `tern dns records {domain}` prints them."
    );
    match lookup.addresses(host).await {
        Answer::Records(addresses, _) => {
            let list = addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
            (Finding::new(Status::Ok, Check::Host, host, list), addresses)
        }
        Answer::NxDomain => (
            Finding::new(Status::Error, Check::Host, host, "the name does not exist in DNS").advice(publish),
            Vec::new(),
        ),
        Answer::NoData => (
            Finding::new(Status::Error, Check::Host, host, "the name has no A or AAAA record").advice(publish),
            Vec::new(),
        ),
        Answer::Failed(e) => (
            Finding::new(
                Status::Error,
                Check::Host,
                host,
                format!("no answer from {} ({e})", lookup.name()),
            )
            .advice("Check that the DNS server answers (or pass another with --resolver), then run the check again."),
            Vec::new(),
        ),
    }
}

/// autoconfig.DOMAIN or autodiscover.DOMAIN: published, and pointing at this host?
pub(super) async fn discovery_name(
    lookup: &Lookup,
    check: Check,
    domain: &str,
    host: &str,
    host_addresses: &[IpAddr],
) -> Finding {
    let prefix = check.label();
    let name = format!("{prefix}.{domain}");
    let who = if check == Check::Autoconfig {
        "Thunderbird and other clients find"
    } else {
        "Outlook finds"
    };
    let record = if host.parse::<IpAddr>().is_ok() {
        format!("Publish {name} with an A record of this server")
    } else {
        format!("Publish {name} as a CNAME of {host}")
    };
    let publish = format!(
        "{record} so {who} the settings by themselves (`tern dns records {domain}` prints the record); until \
         then users type the server name."
    );
    match lookup.addresses(&name).await {
        Answer::Records(addresses, _) => {
            let list = addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
            if !host_addresses.is_empty() && !addresses.iter().any(|a| host_addresses.contains(a)) {
                Finding::new(
                    Status::Warning,
                    check,
                    &name,
                    format!("points at {list}, not at {host}"),
                )
                .advice(format!(
                    "Point {name} at {host} (a CNAME) unless another web server there answers for Tern."
                ))
            } else {
                Finding::new(Status::Ok, check, &name, list)
            }
        }
        Answer::NxDomain => {
            Finding::new(Status::Warning, check, &name, "not published (the name does not exist)").advice(publish)
        }
        Answer::NoData => {
            Finding::new(Status::Warning, check, &name, "not published (no address record)").advice(publish)
        }
        Answer::Failed(e) => Finding::new(
            Status::Warning,
            check,
            &name,
            format!("no answer from {} ({e})", lookup.name()),
        )
        .advice("Check that the DNS server answers, then run the check again."),
    }
}

/// The SRV owner label of an endpoint: RFC 6186 §3.1–3.3 for IMAP, POP3 and submission
/// with STARTTLS, RFC 8314 §5.1 for their implicit-TLS forms.
pub fn srv_label(endpoint: Endpoint) -> &'static str {
    match (endpoint.protocol, endpoint.security) {
        (Protocol::Imap, Security::Tls) => "_imaps._tcp",
        (Protocol::Imap, Security::StartTls) => "_imap._tcp",
        (Protocol::Pop3, Security::Tls) => "_pop3s._tcp",
        (Protocol::Pop3, Security::StartTls) => "_pop3._tcp",
        (Protocol::Submission, Security::Tls) => "_submissions._tcp",
        (Protocol::Submission, Security::StartTls) => "_submission._tcp",
    }
}

/// One endpoint's SRV record: present, naming this host and port?
pub(super) async fn srv_record(lookup: &Lookup, endpoint: Endpoint, domain: &str, host: &str) -> Finding {
    let name = format!("{}.{domain}", srv_label(endpoint));
    // An SRV target is a name, never an address (RFC 2782).
    let target = if host.parse::<IpAddr>().is_ok() {
        "SERVER-NAME"
    } else {
        host
    };
    let wanted = format!("0 1 {} {target}.", endpoint.port);
    let publish = format!(
        "Publish `{name}. SRV {wanted}` so clients that look up SRV records (RFC 6186) find this port; \
         until then users type the server name and port."
    );
    let finding = |status, detail: String| Finding::new(status, Check::Srv, &name, detail).at(endpoint);
    match lookup.srv(&name).await {
        Answer::Records(records, _) => {
            let list = records.iter().map(Srv::to_string).collect::<Vec<_>>().join(", ");
            if records.iter().any(|r| r.target == host && r.port == endpoint.port) {
                finding(Status::Ok, list)
            } else if records.iter().all(|r| r.target == ".") {
                // RFC 6186 §3.4 / RFC 2782: a target of "." means the service is not offered.
                finding(
                    Status::Warning,
                    format!(
                        "{list}: says the service is not offered, but it is on port {}",
                        endpoint.port
                    ),
                )
                .advice(publish)
            } else {
                finding(Status::Warning, format!("{list}: not {host} port {}", endpoint.port))
                    .advice(format!("Change the record to `{name}. SRV {wanted}`."))
            }
        }
        Answer::NxDomain | Answer::NoData => finding(Status::Warning, "not published".into()).advice(publish),
        Answer::Failed(e) => finding(Status::Warning, format!("no answer from {} ({e})", lookup.name()))
            .advice("Check that the DNS server answers, then run the check again."),
    }
}

/// A configuration without the ports a client needs at all.
pub(super) fn missing_services(endpoints: &ClientEndpoints) -> Option<Finding> {
    let has = |p| !endpoints.of(p).is_empty();
    if !has(Protocol::Imap) && !has(Protocol::Pop3) {
        Some(
            Finding::new(
                Status::Error,
                Check::Port,
                "[listen]",
                "no IMAP or POP3 port is configured: clients cannot read mail",
            )
            .advice("Add imaps (993) and submissions (465) to [listen] in tern.toml and restart tern serve."),
        )
    } else if !has(Protocol::Submission) {
        Some(
            Finding::new(
                Status::Warning,
                Check::Port,
                "[listen]",
                "no submission port is configured: clients can read mail but not send it",
            )
            .advice("Add submissions (465) or submission (587) to [listen] in tern.toml and restart tern serve."),
        )
    } else {
        None
    }
}
