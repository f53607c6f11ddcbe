//! `tern doctor`: what a user's mail client would hit, checked from here
//! (tern_dns::doctor), printed as one line per finding and what to do, or as JSON.
//!
//! It reads only tern.toml (host name, `[listen]`, `[dns] nameservers`), never the
//! store, so it runs beside a serving Tern and from a copy of its configuration.

use anyhow::{Context, Result, bail};
use tern_dns::doctor::{Doctor, Password, Report, Status};
use tern_dns::resolve::Lookup;
use tern_net::endpoints::ClientEndpoints;

use crate::cli::DoctorArgs;
use crate::commands::{DataDir, password_from_stdin, print_table};

pub async fn run(data: DataDir<'_>, args: DoctorArgs) -> Result<()> {
    let (host, endpoints, nameservers) = settings(&data, args.host.as_deref())?;
    let lookup = match &args.resolver {
        Some(text) => Lookup::server(Lookup::parse_server(text).map_err(|e| anyhow::anyhow!("--resolver {e}"))?),
        // The first of [dns] nameservers, as the server's own lookups start with it.
        None => match nameservers.first() {
            Some(addr) => Lookup::server(*addr),
            None => Lookup::system(),
        },
    }
    .map_err(anyhow::Error::msg)?;
    if let Some(file) = &args.ca_file
        && !file.is_file()
    {
        bail!("--ca-file {}: no such file", file.display());
    }
    let password = if args.password_stdin {
        Some(Password::new(password_from_stdin()?))
    } else {
        None
    };
    let report = tern_dns::doctor::run(Doctor {
        email: args.email.clone(),
        password,
        host,
        endpoints,
        lookup,
        extra_ca: args.ca_file.clone(),
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if report.is_broken() {
        bail!(
            "{} error(s): a mail client of {} cannot connect as configured",
            report.count(Status::Error),
            report.email
        );
    }
    Ok(())
}

/// The host to check, its client ports and the configured resolvers. Without tern.toml
/// (checking another server with --host) the standard ports are assumed.
fn settings(data: &DataDir<'_>, host: Option<&str>) -> Result<(String, ClientEndpoints, Vec<std::net::SocketAddr>)> {
    if !data.config().exists() {
        let Some(host) = host else {
            bail!(
                "{} is not a Tern data folder (no tern.toml); pass --data, or --host HOST to check another server \
                 on the standard ports",
                data.0.display()
            );
        };
        let endpoints = ClientEndpoints {
            hostname: host.to_string(),
            imaps: Some(993),
            imap: Some(143),
            pop3s: Some(995),
            pop3: Some(110),
            submissions: Some(465),
            submission: Some(587),
            ..Default::default()
        };
        return Ok((host.to_string(), endpoints, Vec::new()));
    }
    let config = tern::config::Config::load_settings(&data.config())
        .with_context(|| "tern doctor needs the server's tern.toml".to_string())?;
    let host = host.unwrap_or(&config.hostname).to_string();
    let endpoints = ClientEndpoints::from_services(
        &host,
        config.listen.services().iter().map(|(name, _, addrs)| (*name, *addrs)),
    );
    Ok((host, endpoints, config.dns.nameservers.clone()))
}

/// One line per finding (status, check, what, what was seen), then what to do.
fn print_report(report: &Report) {
    println!(
        "Checking what a mail client of {} meets at {} (DNS: {})",
        report.email, report.host, report.resolver
    );
    println!();
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                f.status.label().to_string(),
                f.check.label().to_string(),
                f.subject.clone(),
                f.detail.clone(),
            ]
        })
        .collect();
    print_table(&["STATUS", "CHECK", "WHAT", "SEEN"], &rows);
    let todo = report.to_do();
    if !todo.is_empty() {
        println!();
        println!("What to do:");
        for f in todo {
            let advice = f.advice.as_deref().unwrap_or_default();
            println!("  {} {} ({}): {advice}", f.status.label(), f.subject, f.check.label());
        }
    }
    println!();
    let (errors, warnings) = (report.count(Status::Error), report.count(Status::Warning));
    let logins = if !report.logins_checked {
        "logins not checked (give the password with --password-stdin)"
    } else if report.logins_work() {
        "logins work"
    } else {
        "see the login findings"
    };
    if errors == 0 {
        println!("A mail client can connect: {warnings} warning(s); {logins}.");
    } else {
        println!("{errors} error(s), {warnings} warning(s): a mail client cannot connect as configured; {logins}.");
    }
}
