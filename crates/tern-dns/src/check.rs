//! `tern dns check`: what a domain publishes compared with what Tern needs
//! ([`crate::records`]), one [`Finding`] per record: ok, warning or error, what is
//! published, and the exact record to publish when it is not right.
//!
//! With several resolvers ([`check_with`]) each one's answers are checked, then
//! compared: an internal resolver that still answers the old provider's MX or
//! autodiscover name sends mail or clients to the wrong place (split-horizon DNS).

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};
use serde::Serialize;

use crate::records::{self, DomainPlan, Kind, Suggested};
use crate::resolve::{Answer, Lookup, Mx, normalize};

/// How a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Error,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked: "MX", "SPF", "DKIM tern202611r", "SRV _imaps._tcp", …
    pub check: String,
    pub status: Status,
    /// What the DNS answered.
    pub published: String,
    /// What it means, and what to do.
    pub detail: String,
    /// The records to publish (zone-file lines) when the finding is not ok.
    pub publish: Vec<String>,
}

impl Finding {
    fn new(check: impl Into<String>, status: Status, published: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            status,
            published: published.into(),
            detail: detail.into(),
            publish: Vec::new(),
        }
    }

    fn publishing(mut self, records: impl IntoIterator<Item = String>) -> Self {
        if self.status != Status::Ok {
            self.publish = records.into_iter().collect();
        }
        self
    }
}

/// One resolver's findings.
#[derive(Debug, Clone, Serialize)]
pub struct ResolverReport {
    pub resolver: String,
    pub findings: Vec<Finding>,
}

/// The whole check of a domain.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub domain: String,
    pub hostname: String,
    pub reports: Vec<ResolverReport>,
    /// Where the resolvers' answers differ (only with more than one).
    pub differences: Vec<Finding>,
}

impl Report {
    /// Every finding: each resolver's, then the differences between them.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.reports.iter().flat_map(|r| &r.findings).chain(&self.differences)
    }

    /// The worst status of any finding.
    pub fn worst(&self) -> Status {
        self.findings().map(|f| f.status).max().unwrap_or(Status::Ok)
    }

    /// How many findings have this status.
    pub fn count(&self, status: Status) -> usize {
        self.findings().filter(|f| f.status == status).count()
    }
}

/// Where a domain's MX records point, as the go-live watch and the MX check see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxState {
    pub answer: Answer<Mx>,
    /// The exchanges that are this server (by name or address).
    pub here: Vec<String>,
    /// The exchanges that are not.
    pub elsewhere: Vec<String>,
}

impl MxState {
    /// Every MX record names this server.
    pub fn all_here(&self) -> bool {
        !self.here.is_empty() && self.elsewhere.is_empty()
    }
}

/// Looks up the domain's MX records and sorts their exchanges into this server's and
/// others'. An exchange is this server when it is the host name or resolves to one of
/// `addresses`.
pub async fn mx_state(lookup: &Lookup, domain: &str, hostname: &str, addresses: &[IpAddr]) -> MxState {
    let answer = lookup.mx(domain).await;
    let mut here = Vec::new();
    let mut elsewhere = Vec::new();
    for mx in answer.records() {
        let is_here = mx.exchange == normalize(hostname)
            || (!addresses.is_empty()
                && lookup
                    .addresses(&mx.exchange)
                    .await
                    .records()
                    .iter()
                    .any(|ip| addresses.contains(ip)));
        if is_here {
            here.push(mx.exchange.clone());
        } else {
            elsewhere.push(mx.exchange.clone());
        }
    }
    MxState {
        answer,
        here,
        elsewhere,
    }
}

/// Checks one domain with each resolver, and compares their answers when there are
/// several. `migrating`: the domain's mail still goes to the old provider until
/// go-live (its MX not pointing here yet is expected, not an error).
pub async fn check_with(plan: &DomainPlan, migrating: bool, lookups: &[Lookup]) -> Report {
    let mut reports = Vec::new();
    for lookup in lookups {
        reports.push(ResolverReport {
            resolver: lookup.name().to_string(),
            findings: check(plan, migrating, lookup).await,
        });
    }
    let differences = compare(&reports);
    Report {
        domain: plan.domain.clone(),
        hostname: plan.endpoints.hostname.clone(),
        reports,
        differences,
    }
}

/// Checks a hosted domain as `tern dns check`, the console and the API do: its plan
/// from the store (addresses looked up through the first resolver when none are
/// configured), its MX judged by whether the domain is still migrating (its mail not
/// accepted here yet), then every resolver asked. An error only when the domain is not
/// hosted here or the store fails.
pub async fn check_hosted(
    store: &dyn tern_store::Store,
    domain: &str,
    endpoints: tern_net::endpoints::ClientEndpoints,
    public_addresses: &[IpAddr],
    lookups: &[Lookup],
) -> Result<Report, tern_store::StoreError> {
    let plan = DomainPlan::load(store, domain, endpoints, public_addresses, lookups.first()).await?;
    let migrating = store.domain_receiving(&plan.domain).await? == Some(false);
    Ok(check_with(&plan, migrating, lookups).await)
}

/// Checks that send mail or clients somewhere when resolvers disagree.
fn steers_traffic(check: &str) -> bool {
    check == "MX" || check.starts_with("A/AAAA ") || check.starts_with("SRV ") || check.starts_with("name ")
}

/// Split-horizon DNS: a finding whose published answer differs between resolvers.
fn compare(reports: &[ResolverReport]) -> Vec<Finding> {
    if reports.len() < 2 {
        return Vec::new();
    }
    let mut by_check: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for r in reports {
        for f in &r.findings {
            by_check
                .entry(f.check.as_str())
                .or_default()
                .push((r.resolver.as_str(), f.published.as_str()));
        }
    }
    let mut out = Vec::new();
    for (check, answers) in by_check {
        let first = answers[0].1;
        if answers.iter().all(|(_, a)| *a == first) {
            continue;
        }
        let said: Vec<String> = answers.iter().map(|(r, a)| format!("{r}: {a}")).collect();
        let (status, consequence) = if steers_traffic(check) {
            (
                Status::Error,
                "clients or mail asking one resolver go somewhere else than those asking another; make the internal zone match the public one",
            )
        } else {
            (
                Status::Warning,
                "the resolvers disagree; make the internal zone match the public one",
            )
        };
        out.push(Finding::new(
            format!("{check} (split-horizon)"),
            status,
            said.join("; "),
            consequence,
        ));
    }
    out
}

/// Every finding for one domain from one resolver.
pub async fn check(plan: &DomainPlan, migrating: bool, lookup: &Lookup) -> Vec<Finding> {
    let host = plan.endpoints.hostname.as_str();
    // A resolver that does not answer at all would make every check below wait for
    // its timeouts: one question first, and one finding if it goes unanswered.
    if let Answer::Failed(e) = lookup.mx(&plan.domain).await {
        return vec![Finding::new(
            format!("resolver {}", lookup.name()),
            Status::Error,
            format!("no answer ({e})"),
            "this DNS server did not answer; check its address (--resolver IP[:PORT]) and that it is reachable from here",
        )];
    }
    let suggested = records::suggested(plan);
    let lines = |name: &str, kind: Kind| -> Vec<String> {
        suggested
            .iter()
            .filter(|s| s.name == name && s.kind == kind)
            .map(Suggested::zone_line)
            .collect()
    };

    let (host_finding, addresses) = check_host(plan, &suggested, lookup).await;
    let mut findings = vec![host_finding];
    findings.push(
        check_mx(plan, migrating, lookup, &addresses)
            .await
            .publishing(lines(&plan.domain, Kind::Mx)),
    );
    findings.push(check_spf(plan, lookup, &addresses).await);
    findings.extend(check_dkim(plan, lookup).await);
    findings.push(
        check_txt(
            lookup,
            "DMARC",
            &format!("_dmarc.{}", plan.domain),
            "v=DMARC1",
            "receivers apply no policy and send no reports; Tern's DKIM signatures still count for them",
        )
        .await
        .publishing(lines(&format!("_dmarc.{}", plan.domain), Kind::Txt)),
    );
    findings.push(check_mta_sts(plan, lookup).await);
    findings.push(
        check_txt(
            lookup,
            "TLS-RPT",
            &format!("_smtp._tls.{}", plan.domain),
            "v=TLSRPTv1",
            "advisory: senders will not report TLS problems delivering to you",
        )
        .await
        .publishing(lines(&format!("_smtp._tls.{}", plan.domain), Kind::Txt)),
    );
    for name in ["autoconfig", "autodiscover", "mta-sts"] {
        let fqdn = format!("{name}.{}", plan.domain);
        findings.push(
            check_name(lookup, &fqdn, host, &addresses)
                .await
                .publishing(lines(&fqdn, Kind::Cname)),
        );
    }
    for (service, port) in records::srv_services(&plan.endpoints) {
        let fqdn = format!("{service}.{}", plan.domain);
        findings.push(
            check_srv(lookup, service, &fqdn, host, port)
                .await
                .publishing(lines(&fqdn, Kind::Srv)),
        );
    }
    for ip in &addresses {
        findings.push(check_ptr(lookup, *ip, host).await);
    }
    findings
}

/// The host name's addresses: they must exist, and include the configured public
/// addresses. Returns the addresses the other checks compare with.
async fn check_host(plan: &DomainPlan, suggested: &[Suggested], lookup: &Lookup) -> (Finding, Vec<IpAddr>) {
    let host = &plan.endpoints.hostname;
    let check = format!("A/AAAA {host}");
    let answer = lookup.addresses(host).await;
    let publish: Vec<String> = suggested
        .iter()
        .filter(|s| s.kind == Kind::A || s.kind == Kind::Aaaa)
        .map(Suggested::zone_line)
        .collect();
    let mut published: Vec<IpAddr> = answer.records().to_vec();
    published.sort();
    let shown = answer.describe();
    let finding = match &answer {
        Answer::Records(..) => {
            let missing: Vec<String> = plan
                .addresses
                .iter()
                .filter(|ip| !published.contains(ip))
                .map(|ip| ip.to_string())
                .collect();
            if missing.is_empty() {
                Finding::new(check, Status::Ok, shown, "the MX and clients reach this host")
            } else {
                Finding::new(
                    check,
                    Status::Error,
                    shown,
                    format!(
                        "this server's public address {} is not among them: clients and the MX would reach another machine",
                        missing.join(", ")
                    ),
                )
                .publishing(publish)
            }
        }
        _ => Finding::new(
            check,
            Status::Error,
            shown,
            if plan.addresses.is_empty() {
                "no client or sending server can reach this host by name: publish A (and AAAA) records with its public addresses ([dns] public_addresses in tern.toml lists them here)".to_string()
            } else {
                "no client or sending server can reach this host by name".to_string()
            },
        )
        .publishing(publish),
    };
    let addresses = if plan.addresses.is_empty() {
        published
    } else {
        plan.addresses.clone()
    };
    (finding, addresses)
}

async fn check_mx(plan: &DomainPlan, migrating: bool, lookup: &Lookup, addresses: &[IpAddr]) -> Finding {
    let host = &plan.endpoints.hostname;
    let state = mx_state(lookup, &plan.domain, host, addresses).await;
    let shown = state.answer.describe();
    match &state.answer {
        Answer::Records(..) if state.all_here() => {
            Finding::new("MX", Status::Ok, shown, "mail for the domain comes here")
        }
        Answer::Records(..) if !state.here.is_empty() => Finding::new(
            "MX",
            Status::Warning,
            shown,
            format!(
                "some mail still goes to {}: senders pick by preference and fall back to the others; remove them once the old provider is done",
                state.elsewhere.join(", ")
            ),
        ),
        Answer::Records(..) if migrating => Finding::new(
            "MX",
            Status::Warning,
            shown,
            format!(
                "mail still goes to the old provider ({}), as expected until go-live; on the day, replace the MX records with this one (Tern notices and brings the last mail over)",
                state.elsewhere.join(", ")
            ),
        ),
        Answer::Records(..) => Finding::new(
            "MX",
            Status::Error,
            shown,
            format!(
                "mail for the domain goes to {}, not to this server",
                state.elsewhere.join(", ")
            ),
        ),
        Answer::Failed(_) => Finding::new(
            "MX",
            Status::Error,
            shown,
            "the DNS did not answer; try again or ask another resolver",
        ),
        _ => Finding::new(
            "MX",
            Status::Error,
            shown,
            "without an MX record senders try the domain's own address (RFC 5321 §5.1), which is rarely a mail server",
        ),
    }
}

async fn check_spf(plan: &DomainPlan, lookup: &Lookup, addresses: &[IpAddr]) -> Finding {
    let host = &plan.endpoints.hostname;
    let zone = |value: String| {
        Suggested {
            name: plan.domain.clone(),
            kind: Kind::Txt,
            value,
            purpose: String::new(),
            required: true,
        }
        .zone_line()
    };
    let answer = lookup.txt(&plan.domain).await;
    if let Answer::Failed(e) = &answer {
        return Finding::new(
            "SPF",
            Status::Error,
            format!("no answer ({e})"),
            "the DNS did not answer",
        );
    }
    let spf: Vec<&String> = answer
        .records()
        .iter()
        .filter(|t| t.to_ascii_lowercase().starts_with("v=spf1"))
        .collect();
    match spf.as_slice() {
        [] => Finding::new(
            "SPF",
            Status::Warning,
            "no SPF record",
            "receivers cannot tell that Tern may send for the domain (DKIM still vouches for its mail)",
        )
        .publishing([zone(records::spf_record(plan))]),
        [one] => {
            let published = one.to_string();
            if addresses.is_empty() {
                return Finding::new(
                    "SPF",
                    Status::Warning,
                    published,
                    "cannot evaluate it without this host's addresses",
                );
            }
            // Evaluate the record as a receiver would (RFC 7208 §4), for each of this
            // host's addresses, with the same resolver.
            let auth = MessageAuthenticator(lookup.resolver().clone());
            let sender = format!("postmaster@{}", plan.domain);
            let mut refused = Vec::new();
            for ip in addresses {
                let out = auth
                    .verify_spf(SpfParameters::verify_mail_from(*ip, host, host, &sender))
                    .await;
                if out.result() != SpfResult::Pass {
                    refused.push(format!("{ip} ({})", spf_result_name(out.result())));
                }
            }
            if refused.is_empty() {
                Finding::new("SPF", Status::Ok, published, "Tern's addresses pass")
            } else {
                Finding::new(
                    "SPF",
                    Status::Error,
                    published,
                    format!(
                        "mail Tern sends fails SPF from {}: add this host to the record (keep what the old provider needs until go-live)",
                        refused.join(", ")
                    ),
                )
                .publishing([zone(records::spf_with_this_host(one, host))])
            }
        }
        many => Finding::new(
            "SPF",
            Status::Error,
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" | "),
            "more than one SPF record is a permanent error for every receiver (RFC 7208 §4.5): merge them into one",
        ),
    }
}

fn spf_result_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// Each active DKIM key must be published as Tern signs with it.
async fn check_dkim(plan: &DomainPlan, lookup: &Lookup) -> Vec<Finding> {
    let active: Vec<_> = plan.dkim.iter().filter(|k| k.active).collect();
    if active.is_empty() {
        return vec![Finding::new(
            "DKIM",
            Status::Error,
            "",
            format!(
                "Tern has no active DKIM key for {0}: run `tern domain dkim {0} --rotate`",
                plan.domain
            ),
        )];
    }
    let mut out = Vec::new();
    for key in active {
        let name = tern_smtp::dkim::record_name(key);
        let check = format!("DKIM {}", key.selector);
        let answer = lookup.txt(&name).await;
        let expected = STANDARD.encode(&key.public_key);
        let record = records::dkim_record(key).zone_line();
        let published_key = answer.records().iter().find_map(|t| dkim_public_key(t));
        let finding = match (&answer, published_key) {
            (Answer::Failed(e), _) => Finding::new(
                check,
                Status::Error,
                format!("no answer ({e})"),
                "the DNS did not answer",
            ),
            (_, Some(p)) if p == expected => {
                Finding::new(check, Status::Ok, answer.describe(), "matches the key Tern signs with")
            }
            (_, Some(_)) => Finding::new(
                check,
                Status::Error,
                answer.describe(),
                "the published key is not the one Tern signs with: receivers will fail every signature; replace it",
            ),
            (_, None) => Finding::new(
                check,
                Status::Error,
                answer.describe(),
                "receivers cannot verify Tern's signatures (DMARC then rests on SPF alone)",
            ),
        };
        out.push(finding.publishing([record]));
    }
    out
}

/// The `p=` tag of a DKIM key record, whitespace removed (RFC 6376 §3.6.1).
fn dkim_public_key(record: &str) -> Option<String> {
    record.split(';').find_map(|tag| {
        let (name, value) = tag.split_once('=')?;
        (name.trim() == "p").then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// A TXT record that must start with `prefix`.
async fn check_txt(lookup: &Lookup, check: &str, name: &str, prefix: &str, missing: &str) -> Finding {
    let answer = lookup.txt(name).await;
    let found: Vec<&String> = answer
        .records()
        .iter()
        .filter(|t| t.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()))
        .collect();
    match (&answer, found.as_slice()) {
        (Answer::Failed(e), _) => Finding::new(
            check,
            Status::Error,
            format!("no answer ({e})"),
            "the DNS did not answer",
        ),
        (_, [one]) => Finding::new(check, Status::Ok, one.as_str(), "published"),
        (_, []) => Finding::new(check, Status::Warning, answer.describe(), missing),
        (_, many) => Finding::new(
            check,
            Status::Error,
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" | "),
            "more than one record: receivers ignore them all; keep one",
        ),
    }
}

async fn check_mta_sts(plan: &DomainPlan, lookup: &Lookup) -> Finding {
    let name = format!("_mta-sts.{}", plan.domain);
    let ours = records::mta_sts_record(&plan.endpoints.hostname);
    let zone = Suggested::txt(&name, &ours).zone_line();
    let finding = check_txt(
        lookup,
        "MTA-STS",
        &name,
        "v=STSv1",
        "advisory: senders deliver over TLS when offered but do not insist on it (RFC 8461)",
    )
    .await;
    if finding.status == Status::Ok && normalize_tags(&finding.published) != normalize_tags(&ours) {
        return Finding::new(
            "MTA-STS",
            Status::Warning,
            finding.published,
            "the policy id differs from the policy Tern serves: senders keep using a cached older policy; publish this id",
        )
        .publishing([zone]);
    }
    finding.publishing([zone])
}

fn normalize_tags(record: &str) -> String {
    record
        .split(';')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A name clients use (autoconfig.DOMAIN, …) must lead to this host.
async fn check_name(lookup: &Lookup, name: &str, host: &str, addresses: &[IpAddr]) -> Finding {
    let check = format!("name {name}");
    let cname = lookup.cname(name).await;
    if let Some(target) = cname.records().first()
        && target == &normalize(host)
    {
        return Finding::new(check, Status::Ok, format!("CNAME {target}"), "leads to this host");
    }
    let answer = lookup.addresses(name).await;
    let shown = match cname.records().first() {
        Some(target) => format!("CNAME {target} → {}", answer.describe()),
        None => answer.describe(),
    };
    match &answer {
        Answer::Records(ips, _) if ips.iter().any(|ip| addresses.contains(ip)) => {
            Finding::new(check, Status::Ok, shown, "leads to this host")
        }
        Answer::Records(..) => Finding::new(
            check,
            Status::Warning,
            shown,
            "leads to another server (the old provider's?): clients that look it up are set up for that server",
        ),
        _ => Finding::new(
            check,
            Status::Warning,
            shown,
            "clients cannot find their settings from the address alone; they must be set up by hand",
        ),
    }
}

async fn check_srv(lookup: &Lookup, service: &str, name: &str, host: &str, port: Option<u16>) -> Finding {
    let check = format!("SRV {service}");
    let answer = lookup.srv(name).await;
    let shown = answer.describe();
    let host = normalize(host);
    match (&answer, port) {
        (Answer::Failed(e), _) => Finding::new(
            check,
            Status::Warning,
            format!("no answer ({e})"),
            "the DNS did not answer",
        ),
        (Answer::Records(records, _), Some(port)) if records.iter().any(|r| r.target == host && r.port == port) => {
            Finding::new(check, Status::Ok, shown, "points clients here")
        }
        (Answer::Records(records, _), None) if records.iter().all(|r| r.target == ".") => Finding::new(
            check,
            Status::Ok,
            shown,
            "says the service is not offered, as Tern does not offer it",
        ),
        (Answer::Records(..), Some(_)) => Finding::new(
            check,
            Status::Warning,
            shown,
            "points clients that use SRV records somewhere else",
        ),
        (Answer::Records(..), None) => Finding::new(
            check,
            Status::Warning,
            shown,
            "points clients at a service Tern does not offer",
        ),
        (_, _) => Finding::new(
            check,
            Status::Warning,
            shown,
            "advisory: clients that use SRV records (RFC 6186) fall back to guessing",
        ),
    }
}

/// Reverse DNS (advisory): receivers trust mail more from an address whose PTR names
/// the host that says HELO with it.
async fn check_ptr(lookup: &Lookup, ip: IpAddr, host: &str) -> Finding {
    let check = format!("PTR {ip}");
    let answer = lookup.ptr(ip).await;
    let shown = answer.describe();
    let record = format!(
        "{}. {} IN PTR {}.",
        crate::resolve::reverse_name(ip),
        records::TTL,
        normalize(host)
    );
    if answer.records().iter().any(|p| *p == normalize(host)) {
        Finding::new(check, Status::Ok, shown, "names this host")
    } else {
        Finding::new(
            check,
            Status::Warning,
            shown,
            "advisory: some receivers distrust mail from an address whose reverse DNS does not name the sending host; ask whoever hosts the address to set it",
        )
        .publishing([record])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dkim_key_tag_is_read_without_whitespace() {
        assert_eq!(
            dkim_public_key("v=DKIM1; k=ed25519; p=AbC D\tE=").as_deref(),
            Some("AbCDE=")
        );
        assert_eq!(dkim_public_key("v=DKIM1; k=rsa"), None);
    }

    #[test]
    fn resolvers_that_disagree_on_the_mx_are_an_error() {
        let finding = |published: &str| Finding::new("MX", Status::Ok, published, "");
        let reports = vec![
            ResolverReport {
                resolver: "10.0.0.53".into(),
                findings: vec![finding("10 mx.old.test"), Finding::new("DMARC", Status::Ok, "x", "")],
            },
            ResolverReport {
                resolver: "192.0.2.53".into(),
                findings: vec![
                    finding("10 mail.example.test"),
                    Finding::new("DMARC", Status::Ok, "x", ""),
                ],
            },
        ];
        let diff = compare(&reports);
        assert_eq!(diff.len(), 1);
        assert_eq!(diff[0].status, Status::Error);
        assert!(diff[0].published.contains("10.0.0.53: 10 mx.old.test"));
    }
}
