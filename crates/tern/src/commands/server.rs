//! `tern quickstart`, `tern init` and `tern serve`: creating a data folder and running
//! Tern from it.

use anyhow::{Context, Result, bail};
use tern::config::{Config, LogLevel};
use tern::server::{self, Running};
use tern_store::Store;

use super::DataDir;
use crate::cli::{InitArgs, QuickstartArgs};

/// Logs go to stderr; `RUST_LOG` overrides the configured level.
fn init_logging(level: LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn load_config(data: &DataDir<'_>) -> Result<Config> {
    let path = data.config();
    if !path.exists() {
        bail!(
            "no configuration at {}; run `tern quickstart` or `tern init` first, or pass --data",
            path.display()
        );
    }
    Ok(Config::load(&path)?)
}

fn write_config(data: &DataDir<'_>, config: &Config) -> Result<()> {
    std::fs::create_dir_all(data.0).with_context(|| format!("cannot create the data folder {}", data.0.display()))?;
    let path = data.config();
    std::fs::write(&path, config.to_toml_string()).with_context(|| format!("cannot write {}", path.display()))
}

pub async fn quickstart(data: DataDir<'_>, args: QuickstartArgs) -> Result<()> {
    let mut first_login = None;
    if data.config().exists() {
        println!(
            "Using the existing data folder {} (delete it to start afresh).",
            data.0.display()
        );
        if args.port_offset != 0 {
            println!(
                "Note: --port-offset applies when the folder is created; the ports are in {}.",
                data.config().display()
            );
        }
    } else {
        let domain = tern_store::normalise_domain(&args.domain).with_context(|| {
            format!(
                "{:?} is not a domain name; pass --domain like example.test",
                args.domain
            )
        })?;
        let config = Config::quickstart(&format!("mail.{domain}"), args.port_offset)?;
        write_config(&data, &config)?;
        tern::tls::generate_self_signed(
            &config.hostname,
            &config.tls.certificate_path(data.0),
            &config.tls.private_key_path(data.0),
        )?;
        let store = data.open_store()?;
        tern_admin::domains::add(&store, &domain).await?;
        // The first user gets postmaster@ and abuse@ (RFC 5321 §4.5.1, RFC 2142) and
        // runs the admin console.
        let created = tern_admin::users::add(
            &store,
            tern_admin::users::NewUser {
                address: format!("admin@{domain}"),
                display_name: Some("Administrator".into()),
                ..Default::default()
            },
        )
        .await?;
        let admin = tern_admin::admins::grant(&store, &created.account.address).await?;
        let secret = created.password.unwrap_or_default();
        store.close().await?;
        first_login = Some((admin, secret));
    }
    let config = load_config(&data)?;
    init_logging(config.log.level);
    let running = server::start(data.0, &config).await?;
    print_banner(&data, &running);
    if let Some(https) = running
        .states
        .iter()
        .find(|s| s.name == "https" && s.listening)
        .and_then(|s| s.addrs.first())
    {
        println!("Webmail: https://{https}/ (the certificate is self-signed: accept it once)");
        println!("Mail app setup: https://{https}/setup");
        println!("Admin console: https://{https}/admin");
    }
    match first_login {
        Some((user, secret)) => {
            println!("Log in as {user} with password {secret}");
            println!("(shown only now; change it with `tern user passwd {user}`)");
        }
        None => println!("Log in with an account from `tern user list`; reset a password with `tern user passwd`."),
    }
    println!("Stop with Ctrl-C.");
    running.serve_until_signal().await?;
    Ok(())
}

pub async fn init(data: DataDir<'_>, args: InitArgs) -> Result<()> {
    if data.config().exists() && !args.force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            data.config().display()
        );
    }
    let domain = tern_store::normalise_domain(&args.domain)
        .with_context(|| format!("{:?} is not a domain name", args.domain))?;
    let mut config = Config::production(&args.hostname)?;
    // The CA's notices about the account go to the domain's postmaster (RFC 5321 §4.5.1
    // requires that address anyway).
    config.acme.contact = format!("postmaster@{domain}");
    write_config(&data, &config)?;
    let store = data.open_store()?;
    // `init --force` keeps a domain made before, and its keys.
    if store.domain(&domain).await.is_err() {
        tern_admin::domains::add(&store, &domain).await?;
    }
    store.close().await?;
    println!(
        "Wrote {} for {} (mail domain {domain}).",
        data.config().display(),
        args.hostname
    );
    println!("Next:");
    println!(
        "  1. Point {}'s A/AAAA records at this machine and let port 80 reach it: `tern serve`",
        args.hostname
    );
    println!("     gets the TLS certificate from Let's Encrypt and renews it ([acme]; `tern cert status`).");
    println!(
        "     To use your own instead, set [acme] enabled = false and put the chain at {}",
        config.tls.certificate_path(data.0).display()
    );
    println!(
        "     and its private key at {}",
        config.tls.private_key_path(data.0).display()
    );
    println!(
        "  2. Create accounts: tern --data {} user add someone@{domain}",
        data.0.display()
    );
    println!(
        "     and let one of them run the admin console (https://{}/admin): tern --data {} admin grant someone@{domain}",
        args.hostname,
        data.0.display()
    );
    println!("  3. Start: tern --data {} serve", data.0.display());
    println!(
        "  4. Publish the DNS records for sending (MX, SPF, DKIM, DMARC): tern --data {} domain dkim {domain}",
        data.0.display()
    );
    println!("     and docs/sending.md");
    Ok(())
}

pub async fn serve(data: DataDir<'_>) -> Result<()> {
    let config = load_config(&data)?;
    init_logging(config.log.level);
    let running = server::start(data.0, &config).await?;
    print_banner(&data, &running);
    running.serve_until_signal().await?;
    Ok(())
}

/// The table of what listens where.
fn print_banner(data: &DataDir<'_>, running: &Running) {
    println!(
        "Tern {} is running with data folder {}.",
        env!("CARGO_PKG_VERSION"),
        data.0.display()
    );
    println!();
    let rows: Vec<Vec<String>> = running
        .states
        .iter()
        .map(|s| {
            vec![
                s.name.to_string(),
                s.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                s.tls.to_string(),
                if s.listening {
                    "listening".into()
                } else {
                    "configured; not served by this build yet".into()
                },
            ]
        })
        .collect();
    super::print_table(&["SERVICE", "ADDRESS", "TLS", "STATE"], &rows);
    println!();
}
