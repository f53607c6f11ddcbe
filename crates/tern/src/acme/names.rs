//! Which names to order: the host name, and each hosted domain's autoconfig,
//! autodiscover and mta-sts names that resolve to this host (the others are left
//! out with the reason, since one name the CA cannot reach fails the whole order).

use super::*;

/// The names to ask for, and those left out with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedNames {
    pub names: Vec<String>,
    pub left_out: Vec<LeftOut>,
}

/// The DNS servers to ask: `[dns] nameservers` in order, or the system's.
pub fn lookups(config: &Config) -> Result<Vec<Lookup>, String> {
    if config.dns.nameservers.is_empty() {
        return Ok(vec![Lookup::system()?]);
    }
    config.dns.nameservers.iter().map(|a| Lookup::server(*a)).collect()
}

/// A name's addresses from the first server that answers.
pub(super) async fn addresses(lookups: &[Lookup], name: &str) -> Answer<IpAddr> {
    let mut last = Answer::Failed("no DNS server configured".into());
    for lookup in lookups {
        last = lookup.addresses(name).await;
        if !matches!(last, Answer::Failed(_)) {
            break;
        }
    }
    last
}

/// This host's name always (Tern cannot work without it; if its DNS is wrong the order
/// fails and says so); each hosted domain's autoconfig, autodiscover and mta-sts names
/// only when every address they resolve to is one of this server's, since the CA must
/// reach Tern at each name and one name it cannot reach fails the whole order. This
/// server's addresses are `public` (`[dns] public_addresses`) when given, else what the
/// host name resolves to.
pub async fn wanted_names(hostname: &str, public: &[IpAddr], domains: &[String], lookups: &[Lookup]) -> WantedNames {
    let hostname = hostname.to_ascii_lowercase();
    let (host, whose): (BTreeSet<IpAddr>, String) = if public.is_empty() {
        let resolved = addresses(lookups, &hostname).await.records().iter().copied().collect();
        (resolved, format!("{hostname}'s"))
    } else {
        (public.iter().copied().collect(), "this server's".to_string())
    };
    let mut names = vec![hostname.clone()];
    let mut left_out = Vec::new();
    let mut seen: BTreeSet<String> = names.iter().cloned().collect();
    for domain in domains {
        for prefix in DOMAIN_NAME_PREFIXES {
            let name = format!("{prefix}.{}", domain.to_ascii_lowercase());
            if !seen.insert(name.clone()) {
                continue;
            }
            let answer = addresses(lookups, &name).await;
            let reason = match &answer {
                Answer::Records(ips, _) if host.is_empty() => Some(format!(
                    "resolves to {}, but {hostname} itself does not resolve, so it cannot be compared",
                    list(ips)
                )),
                Answer::Records(ips, _) if ips.iter().all(|ip| host.contains(ip)) => None,
                Answer::Records(ips, _) => Some(format!(
                    "resolves to {}, not to {whose} {}",
                    list(ips),
                    list(&host.iter().copied().collect::<Vec<_>>())
                )),
                Answer::NxDomain => Some("does not exist in DNS".into()),
                Answer::NoData => Some("has no A or AAAA record".into()),
                Answer::Failed(e) => Some(format!("DNS lookup failed ({e})")),
            };
            match reason {
                None if names.len() >= MAX_NAMES => left_out.push(LeftOut {
                    name,
                    reason: format!("a certificate carries at most {MAX_NAMES} names"),
                }),
                None => names.push(name),
                Some(reason) => left_out.push(LeftOut { name, reason }),
            }
        }
    }
    WantedNames { names, left_out }
}

pub(super) fn list(ips: &[IpAddr]) -> String {
    ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
