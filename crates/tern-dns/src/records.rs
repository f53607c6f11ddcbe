//! The records a domain publishes for Tern, as [`Suggested`] records the checks compare
//! with what is published and `tern dns records` prints as a zone-file snippet.
//!
//! What and why, by purpose:
//! - mail in: MX (RFC 5321 §5.1) naming this host, whose A/AAAA records must exist;
//! - mail out: SPF (RFC 7208) allowing this host, DKIM keys (RFC 6376 §3.6.1) matching
//!   the ones Tern signs with, DMARC (RFC 7489 §6.1) starting at `p=none`;
//! - transport security, advisory: MTA-STS (RFC 8461 §3.1, policy served by Tern on
//!   mta-sts.DOMAIN) and TLS-RPT (RFC 8460 §3);
//! - clients: autoconfig.DOMAIN and autodiscover.DOMAIN (Thunderbird, Outlook), and the
//!   SRV records of RFC 6186 §3 and RFC 8314 §5.1 (`_imaps._tcp`, `_submissions._tcp`,
//!   …), a service not offered published with target "." (RFC 2782, RFC 6186 §4);
//! - reverse DNS (PTR) of the host's addresses, advisory, set at the address's owner.

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tern_net::endpoints::ClientEndpoints;
use tern_store::DkimKey;

/// The TTL suggested for new records: an hour, so a mistake is fixed within one.
pub const TTL: u32 = 3600;

/// What a domain's records are made from.
#[derive(Debug, Clone)]
pub struct DomainPlan {
    pub domain: String,
    /// This server's host name and client ports.
    pub endpoints: ClientEndpoints,
    /// The domain's active DKIM keys.
    pub dkim: Vec<DkimKey>,
    /// This server's public addresses (the `[dns] public_addresses` of tern.toml, or
    /// what the host name resolves to). Empty: unknown.
    pub addresses: Vec<IpAddr>,
}

impl DomainPlan {
    /// The plan of a hosted domain: its DKIM keys from the store, this server's client
    /// endpoints, and its public addresses (the configured ones, or what the host name
    /// resolves to through `lookup`). An error when the domain is not hosted here.
    pub async fn load(
        store: &dyn tern_store::Store,
        domain: &str,
        endpoints: ClientEndpoints,
        public_addresses: &[IpAddr],
        lookup: Option<&crate::resolve::Lookup>,
    ) -> Result<DomainPlan, tern_store::StoreError> {
        let domain = store.domain(domain.trim_end_matches('.')).await?.name;
        let mut addresses = public_addresses.to_vec();
        if addresses.is_empty()
            && let Some(lookup) = lookup
        {
            addresses = lookup.addresses(&endpoints.hostname).await.records().to_vec();
        }
        Ok(DomainPlan {
            dkim: store.dkim_keys(Some(&domain)).await?,
            domain,
            endpoints,
            addresses,
        })
    }
}

/// The kind of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
    #[serde(rename = "MX")]
    Mx,
    #[serde(rename = "PTR")]
    Ptr,
    #[serde(rename = "SRV")]
    Srv,
    #[serde(rename = "TXT")]
    Txt,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::A => "A",
            Kind::Aaaa => "AAAA",
            Kind::Cname => "CNAME",
            Kind::Mx => "MX",
            Kind::Ptr => "PTR",
            Kind::Srv => "SRV",
            Kind::Txt => "TXT",
        }
    }
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggested {
    /// Owner name, without the final dot.
    pub name: String,
    pub kind: Kind,
    /// The value as a zone file writes it (TXT values without their quotes).
    pub value: String,
    /// What it is for, one line.
    pub purpose: String,
    /// Mail or clients break without it (as opposed to advisory).
    pub required: bool,
}

impl Suggested {
    pub fn new(name: impl Into<String>, kind: Kind, value: impl Into<String>, purpose: &str, required: bool) -> Self {
        Suggested {
            name: name.into(),
            kind,
            value: value.into(),
            purpose: purpose.into(),
            required,
        }
    }

    /// A TXT record, for a zone-file line of a value that is not one of
    /// [`suggested`]'s.
    pub fn txt(name: impl Into<String>, value: impl Into<String>) -> Self {
        Suggested::new(name, Kind::Txt, value, "", true)
    }

    /// The record as a zone-file line. TXT strings are at most 255 bytes (RFC 1035
    /// §3.3.14), so a long value (an RSA DKIM key) is split into several strings.
    pub fn zone_line(&self) -> String {
        let value = match self.kind {
            Kind::Txt => {
                let strings: Vec<String> = self
                    .value
                    .as_bytes()
                    .chunks(255)
                    .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                    .collect();
                if strings.len() > 1 {
                    format!("( {} )", strings.join(" "))
                } else {
                    strings.concat()
                }
            }
            _ => self.value.clone(),
        };
        format!("{}. {TTL} IN {} {value}", self.name, self.kind.name())
    }
}

/// `name.` : the fully qualified form zone files need for targets.
fn fq(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The SPF record for a domain that has none: this host's MX and addresses may send,
/// others soft-fail (`~all`) while the domain moves (RFC 7208 §5.1, §5.4, §5.6).
pub fn spf_record(plan: &DomainPlan) -> String {
    let mut terms = vec!["v=spf1".to_string(), "mx".to_string()];
    terms.push(format!("a:{}", plan.endpoints.hostname));
    terms.push("~all".into());
    terms.join(" ")
}

/// An existing SPF record with this host allowed: `a:HOST` inserted before its final
/// `all` (or `redirect=`) term, so whatever else it allows (the old provider still
/// sending until go-live) keeps working.
pub fn spf_with_this_host(published: &str, hostname: &str) -> String {
    let mechanism = format!("a:{hostname}");
    let mut terms: Vec<&str> = published.split_whitespace().collect();
    let at = terms
        .iter()
        .position(|t| {
            let t = t.trim_start_matches(['+', '-', '~', '?']).to_ascii_lowercase();
            t == "all" || t.starts_with("redirect=")
        })
        .unwrap_or(terms.len());
    terms.insert(at, &mechanism);
    terms.join(" ")
}

/// The DMARC record to start with: reports to postmaster, nothing refused yet
/// (RFC 7489 §6.3); tighten to quarantine/reject once the reports look right.
pub fn dmarc_record(domain: &str) -> String {
    format!("v=DMARC1; p=none; rua=mailto:postmaster@{domain}")
}

/// The MTA-STS policy Tern serves at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`
/// (RFC 8461 §3.2): senders that support MTA-STS then insist on TLS with a valid
/// certificate for `hostname` when delivering to the domain. "testing" mode: failures
/// are reported (TLS-RPT, RFC 8460) but mail is still delivered, the safe start while
/// a domain moves.
pub fn mta_sts_policy(hostname: &str) -> String {
    format!("version: STSv1\r\nmode: testing\r\nmx: {hostname}\r\nmax_age: 604800\r\n")
}

/// The `_mta-sts` TXT record: its id changes whenever the policy does (RFC 8461 §3.1),
/// so it is derived from the policy text.
pub fn mta_sts_record(hostname: &str) -> String {
    let digest = Sha256::digest(mta_sts_policy(hostname).as_bytes());
    // The id is 1–32 alphanumeric characters.
    format!("v=STSv1; id={}", &hex::encode(digest)[..20])
}

/// The TLS-RPT record (RFC 8460 §3): where senders report TLS failures.
pub fn tls_rpt_record(domain: &str) -> String {
    format!("v=TLSRPTv1; rua=mailto:postmaster@{domain}")
}

/// The client SRV records: service label, port if served.
pub fn srv_services(endpoints: &ClientEndpoints) -> [(&'static str, Option<u16>); 7] {
    [
        // RFC 8314 §5.1 / RFC 6186 §3.2 and §3.1: implicit TLS first.
        ("_imaps._tcp", endpoints.imaps),
        ("_imap._tcp", endpoints.imap),
        ("_pop3s._tcp", endpoints.pop3s),
        ("_pop3._tcp", endpoints.pop3),
        ("_submissions._tcp", endpoints.submissions),
        ("_submission._tcp", endpoints.submission),
        // Outlook's Autodiscover by SRV ([MS-OXDSCLI] §3.1.5.1): HTTPS on this host.
        ("_autodiscover._tcp", endpoints.https),
    ]
}

/// The SRV value for a service: `0 1 PORT HOST.`, or `0 0 0 .` for one not offered.
pub fn srv_value(hostname: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("0 1 {port} {}", fq(hostname)),
        None => "0 0 0 .".into(),
    }
}

/// Every record the domain should publish, required ones first within each purpose.
pub fn suggested(plan: &DomainPlan) -> Vec<Suggested> {
    let d = &plan.domain;
    let host = &plan.endpoints.hostname;
    let mut out = vec![Suggested::new(
        d,
        Kind::Mx,
        format!("10 {}", fq(host)),
        "mail for the domain comes to Tern (publish on the go-live day)",
        true,
    )];
    for ip in &plan.addresses {
        let kind = if ip.is_ipv4() { Kind::A } else { Kind::Aaaa };
        out.push(Suggested::new(
            host,
            kind,
            ip.to_string(),
            "this host's address: the MX and every client connect to it",
            true,
        ));
    }
    out.push(Suggested::new(
        d,
        Kind::Txt,
        spf_record(plan),
        "SPF: Tern may send the domain's mail",
        true,
    ));
    out.extend(plan.dkim.iter().filter(|k| k.active).map(dkim_record));
    out.push(Suggested::new(
        format!("_dmarc.{d}"),
        Kind::Txt,
        dmarc_record(d),
        "DMARC: receivers report what they see (start with p=none)",
        false,
    ));
    for name in ["autoconfig", "autodiscover"] {
        out.push(Suggested::new(
            format!("{name}.{d}"),
            Kind::Cname,
            fq(host),
            "mail clients find their settings from the address alone",
            false,
        ));
    }
    for (service, port) in srv_services(&plan.endpoints) {
        out.push(Suggested::new(
            format!("{service}.{d}"),
            Kind::Srv,
            srv_value(host, port),
            "client settings by SRV (RFC 6186, RFC 8314)",
            false,
        ));
    }
    out.push(Suggested::new(
        format!("mta-sts.{d}"),
        Kind::Cname,
        fq(host),
        "MTA-STS: the policy is served by Tern under this name",
        false,
    ));
    out.push(Suggested::new(
        format!("_mta-sts.{d}"),
        Kind::Txt,
        mta_sts_record(host),
        "MTA-STS: senders insist on TLS to the MX (RFC 8461)",
        false,
    ));
    out.push(Suggested::new(
        format!("_smtp._tls.{d}"),
        Kind::Txt,
        tls_rpt_record(d),
        "TLS-RPT: senders report TLS problems (RFC 8460)",
        false,
    ));
    out
}

/// A DKIM key's TXT record (RFC 6376 §3.6.1).
pub fn dkim_record(key: &DkimKey) -> Suggested {
    Suggested::new(
        tern_smtp::dkim::record_name(key),
        Kind::Txt,
        tern_smtp::dkim::record_value(key),
        "DKIM: the key Tern signs outgoing mail with",
        true,
    )
}

/// The PTR records the host's addresses should have (set where the address is
/// hosted, not in the domain's zone).
pub fn reverse(plan: &DomainPlan) -> Vec<Suggested> {
    plan.addresses
        .iter()
        .map(|ip| {
            Suggested::new(
                crate::resolve::reverse_name(*ip),
                Kind::Ptr,
                fq(&plan.endpoints.hostname),
                "reverse DNS: receivers trust mail from a host whose address names it",
                false,
            )
        })
        .collect()
}

/// The zone-file snippet `tern dns records` prints.
pub fn zone_snippet(plan: &DomainPlan) -> String {
    let mut out = format!(
        "; DNS records for {} on Tern ({}). Generated {}.\n",
        plan.domain,
        plan.endpoints.hostname,
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let mut last_purpose = String::new();
    for r in suggested(plan) {
        if r.purpose != last_purpose {
            out.push_str(&format!(
                "\n; {}{}\n",
                r.purpose,
                if r.required { "" } else { " (recommended)" }
            ));
            last_purpose = r.purpose.clone();
        }
        out.push_str(&r.zone_line());
        out.push('\n');
    }
    if plan.addresses.is_empty() {
        out.push_str(&format!(
            "\n; {} needs A (and AAAA) records with this server's public addresses: set\n; [dns] public_addresses in tern.toml and run this again to have them listed.\n",
            plan.endpoints.hostname
        ));
    }
    let reverse = reverse(plan);
    if !reverse.is_empty() {
        out.push_str("\n; reverse DNS (set by whoever hosts the address, not in this zone)\n");
        for r in reverse {
            out.push_str(&format!("; {}\n", r.zone_line()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DomainPlan {
        DomainPlan {
            domain: "example.test".into(),
            endpoints: ClientEndpoints {
                hostname: "mail.example.test".into(),
                imaps: Some(993),
                imap: Some(143),
                submissions: Some(465),
                submission: Some(587),
                https: Some(443),
                ..Default::default()
            },
            dkim: vec![],
            addresses: vec!["192.0.2.10".parse().unwrap()],
        }
    }

    #[test]
    fn srv_records_name_ports_and_mark_services_not_offered() {
        let records = suggested(&plan());
        let srv = |name: &str| {
            records
                .iter()
                .find(|r| r.name == format!("{name}.example.test"))
                .map(|r| r.value.clone())
        };
        assert_eq!(srv("_imaps._tcp").as_deref(), Some("0 1 993 mail.example.test."));
        assert_eq!(srv("_pop3s._tcp").as_deref(), Some("0 0 0 ."));
        assert_eq!(srv("_autodiscover._tcp").as_deref(), Some("0 1 443 mail.example.test."));
    }

    #[test]
    fn spf_gains_this_host_before_its_all_term() {
        assert_eq!(
            spf_with_this_host("v=spf1 include:_spf.old.example -all", "mail.example.test"),
            "v=spf1 include:_spf.old.example a:mail.example.test -all"
        );
        assert_eq!(
            spf_with_this_host("v=spf1 redirect=_spf.old.example", "mail.example.test"),
            "v=spf1 a:mail.example.test redirect=_spf.old.example"
        );
        assert_eq!(spf_record(&plan()), "v=spf1 mx a:mail.example.test ~all");
    }

    #[test]
    fn long_txt_values_are_split_into_strings() {
        let r = Suggested::new("x.example.test", Kind::Txt, "a".repeat(300), "", true);
        assert_eq!(
            r.zone_line(),
            format!(
                "x.example.test. 3600 IN TXT ( \"{}\" \"{}\" )",
                "a".repeat(255),
                "a".repeat(45)
            )
        );
    }

    #[test]
    fn the_snippet_lists_every_purpose() {
        let text = zone_snippet(&plan());
        for needle in [
            "example.test. 3600 IN MX 10 mail.example.test.",
            "mail.example.test. 3600 IN A 192.0.2.10",
            "_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=none",
            "autoconfig.example.test. 3600 IN CNAME mail.example.test.",
            "_mta-sts.example.test. 3600 IN TXT \"v=STSv1; id=",
            "; 10.2.0.192.in-addr.arpa. 3600 IN PTR mail.example.test.",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
