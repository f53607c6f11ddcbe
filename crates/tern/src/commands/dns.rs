//! `tern dns check` and `tern dns records`: a hosted domain's DNS compared with what
//! Tern needs, and the records to publish (tern_dns::check, tern_dns::records).

use anyhow::{Context, Result, bail};
use tern_dns::check::{Finding, Status};
use tern_dns::records::DomainPlan;
use tern_dns::resolve::Lookup;
use tern_store::{EmbeddedStore, Store};

use crate::cli::DnsCommand;
use crate::commands::{DataDir, with_store};

pub async fn run(data: DataDir<'_>, cmd: DnsCommand) -> Result<()> {
    let config = tern::config::Config::load_settings(&data.config())?;
    match cmd {
        DnsCommand::Records { domain } => {
            with_store(&data, |store| async move {
                let lookup = Lookup::servers(&config.dns.nameservers).ok();
                let plan = plan(&store, &config, &domain, lookup.as_ref()).await?;
                print!("{}", tern_dns::records::zone_snippet(&plan));
                Ok(())
            })
            .await
        }
        DnsCommand::Check { domain, resolver, json } => {
            let lookups = if resolver.is_empty() {
                vec![Lookup::servers(&config.dns.nameservers).map_err(anyhow::Error::msg)?]
            } else {
                Lookup::for_servers(&resolver).map_err(|e| anyhow::anyhow!("--resolver {e}"))?
            };
            let endpoints = endpoints(&config);
            let report = {
                let store = data.open_store()?;
                let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                let report =
                    tern_dns::check::check_hosted(&store, &domain, endpoints, &config.dns.public_addresses, &lookups)
                        .await
                        .with_context(|| format!("{domain} is not hosted here (tern domain add {domain})"));
                store.close().await?;
                report?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            let errors = report.count(Status::Error);
            if errors > 0 {
                bail!("{errors} error(s) in the DNS of {}", report.domain);
            }
            Ok(())
        }
    }
}

/// What the domain's records are made from: the config's host name and client ports,
/// the domain's DKIM keys, and this server's public addresses (configured, or what the
/// host name resolves to).
async fn plan(
    store: &EmbeddedStore,
    config: &tern::config::Config,
    domain: &str,
    lookup: Option<&Lookup>,
) -> Result<DomainPlan> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    DomainPlan::load(store, &domain, endpoints(config), &config.dns.public_addresses, lookup)
        .await
        .with_context(|| format!("{domain} is not hosted here (tern domain add {domain})"))
}

/// Where clients reach this server, as the config says.
fn endpoints(config: &tern::config::Config) -> tern_net::endpoints::ClientEndpoints {
    tern_net::endpoints::ClientEndpoints::from_services(
        &config.hostname,
        config.listen.services().iter().map(|(name, _, addrs)| (*name, *addrs)),
    )
}

fn print_report(report: &tern_dns::check::Report) {
    println!("DNS of {} (mail host {})", report.domain, report.hostname);
    for r in &report.reports {
        println!("\nAsking {}:", r.resolver);
        for f in &r.findings {
            print_finding(f);
        }
    }
    if !report.differences.is_empty() {
        println!("\nThe resolvers disagree:");
        for f in &report.differences {
            print_finding(f);
        }
    }
    println!(
        "\n{} ok, {} warning(s), {} error(s).",
        report.count(Status::Ok),
        report.count(Status::Warning),
        report.count(Status::Error)
    );
}

fn print_finding(f: &Finding) {
    println!("  {:<8} {:<28} {}", f.status.label(), f.check, f.published);
    if f.status != Status::Ok {
        println!("  {:<8} {:<28} {}", "", "", f.detail);
        for line in &f.publish {
            println!("  {:<8} {:<28} publish: {line}", "", "");
        }
    }
}
