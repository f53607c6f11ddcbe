//! `tern cert status` and `tern cert renew`: the TLS certificate and its ACME renewals.
//!
//! Both read what `tern serve`'s ACME task keeps in `DATA/acme/` (tern::acme). A
//! renewal is ordered by the running server, which holds the http listener the CA
//! validates against: `renew` leaves it a request and waits for its answer.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tern::acme::{self, AcmeFiles, CertificateInfo, Status};
use tern::config::Config;

use super::DataDir;
use crate::cli::CertCommand;

/// How long a running server gets to notice a renewal request (it looks every second).
const PICKUP_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn run(data: DataDir<'_>, cmd: CertCommand) -> Result<()> {
    let path = data.config();
    if !path.exists() {
        bail!(
            "no configuration at {}; run `tern quickstart` or `tern init` first, or pass --data",
            path.display()
        );
    }
    // Every check but that the certificate files exist: looking at them is the point.
    let config = Config::load_settings(&path)?;
    match cmd {
        CertCommand::Status(flag) => status(&data, &config, flag.json),
        CertCommand::Renew { no_wait, timeout } => renew(&data, &config, no_wait, Duration::from_secs(timeout)).await,
    }
}

fn status(data: &DataDir<'_>, config: &Config, as_json: bool) -> Result<()> {
    let cert_path = config.tls.certificate_path(data.0);
    let certificate = acme::inspect_file(&cert_path)?;
    let files = AcmeFiles::new(data.0);
    let status = files.read_status()?;
    let running = status.as_ref().is_some_and(server_running);
    let next_renewal = next_renewal(config, certificate.as_ref(), status.as_ref());
    if as_json {
        let value = json!({
            "certificate": {
                "path": cert_path,
                "present": certificate.is_some(),
                "details": certificate,
            },
            "acme": {
                "enabled": config.acme.enabled,
                "directory": config.acme.directory,
                "contact": config.acme.contact,
                "renew_before_days": config.acme.renew_before_days,
                "next_renewal": next_renewal,
                "server_running": running,
                "status": status,
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }

    let mut rows: Vec<(&str, String)> = vec![("Certificate", cert_path.display().to_string())];
    match &certificate {
        None => rows.push((
            "",
            if config.acme.enabled {
                "not there yet: `tern serve` gets it from the ACME CA".into()
            } else {
                "missing: put the PEM chain there, or turn [acme] on".into()
            },
        )),
        Some(cert) => {
            rows.push(("Names", cert.names.join(", ")));
            rows.push((
                "Issuer",
                if cert.self_signed {
                    format!("{} (self-signed)", cert.issuer)
                } else {
                    cert.issuer.clone()
                },
            ));
            let days_left = (cert.not_after - acme::unix_now()) / 86_400;
            rows.push((
                "Valid",
                format!(
                    "{} to {} ({})",
                    acme::date(cert.not_before),
                    acme::date(cert.not_after),
                    if days_left < 0 {
                        "EXPIRED".to_string()
                    } else {
                        format!("{days_left} days left")
                    }
                ),
            ));
            rows.push(("Serial", cert.serial.clone()));
        }
    }
    if config.acme.enabled {
        rows.push((
            "ACME",
            format!(
                "on, {}{}",
                config.acme.directory,
                if config.acme.contact.is_empty() {
                    String::new()
                } else {
                    format!(", contact {}", config.acme.contact)
                }
            ),
        ));
        rows.push(("Next renewal", next_renewal.unwrap_or_default()));
        match &status {
            None => rows.push(("Last check", "none yet (start `tern serve`)".into())),
            Some(status) => {
                rows.push((
                    "Last check",
                    status.last_check.map(acme::date).unwrap_or_else(|| "none yet".into()),
                ));
                if let Some(next) = status.next_check.filter(|_| running) {
                    rows.push(("Next check", acme::date(next)));
                }
                rows.push((
                    "Last issued",
                    status.last_issued.map(acme::date).unwrap_or_else(|| "never".into()),
                ));
                rows.push((
                    "Last error",
                    match &status.last_error {
                        Some(e) => format!("{} at {}", e.message, acme::date(e.at)),
                        None => "none".into(),
                    },
                ));
                for left in &status.left_out {
                    rows.push(("Left out", format!("{}: {}", left.name, left.reason)));
                }
            }
        }
        if !running {
            rows.push(("Server", "`tern serve` is not running: nothing is renewed".into()));
        }
    } else {
        rows.push(("ACME", "off: renew the certificate yourself and restart Tern".into()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
    Ok(())
}

/// When the certificate will be replaced, in words.
fn next_renewal(config: &Config, cert: Option<&CertificateInfo>, status: Option<&Status>) -> Option<String> {
    if !config.acme.enabled {
        return None;
    }
    let wanted = status.map(|s| s.wanted.clone()).unwrap_or_default();
    let reason = acme::renewal_reason(cert, &wanted, acme::unix_now(), config.acme.renew_before_days);
    Some(match (reason, cert) {
        (Some(reason), _) => format!("at the next check: {reason}"),
        (None, Some(cert)) => format!(
            "{} ({} days before expiry)",
            acme::date(acme::renewal_due(cert, config.acme.renew_before_days)),
            config.acme.renew_before_days
        ),
        (None, None) => "at the next check".into(),
    })
}

/// Whether the `tern serve` that wrote `status` still runs.
fn server_running(status: &Status) -> bool {
    let Ok(pid) = libc::pid_t::try_from(status.pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

async fn renew(data: &DataDir<'_>, config: &Config, no_wait: bool, timeout: Duration) -> Result<()> {
    if !config.acme.enabled {
        bail!(
            "ACME is off ([acme] enabled = false in {}): Tern does not renew this certificate; \
             turn it on, or renew the certificate yourself and restart Tern",
            data.config().display()
        );
    }
    let files = AcmeFiles::new(data.0);
    let before = files.read_status()?;
    if !before.as_ref().is_some_and(server_running) {
        bail!(
            "no `tern serve` is running on {}; start it: it checks the certificate at start and \
             orders one when needed (a renewal needs the running server's http listener)",
            data.0.display()
        );
    }
    let id = files.request_renewal().context("cannot leave the renewal request")?;
    if no_wait {
        println!("Asked the running server for a new certificate; see `tern cert status`.");
        return Ok(());
    }
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let status = files.read_status()?.unwrap_or_default();
        if status.handled_request.as_deref() == Some(id.as_str()) {
            let before_sha = before.as_ref().and_then(|b| b.issued_sha256.clone());
            let new_certificate = status.issued_sha256.is_some() && status.issued_sha256 != before_sha;
            // The check that handled the request failed when its error is stamped with
            // that check's time.
            let failure = status.last_error.filter(|e| Some(e.at) == status.last_check);
            match (new_certificate, failure) {
                (false, Some(e)) => bail!("no new certificate: {}", e.message),
                (true, Some(e)) => bail!(
                    "a new certificate is in use, but it could not be saved ({}); it is saved at the next check",
                    e.message
                ),
                (false, None) => bail!("the server ordered no certificate"),
                (true, None) => {}
            }
            let cert = acme::inspect_file(&config.tls.certificate_path(data.0))?
                .context("the server reported a new certificate, but its file is missing")?;
            println!("New certificate in use (no restart needed):");
            println!("  names    {}", cert.names.join(", "));
            println!("  issuer   {}", cert.issuer);
            println!("  expires  {}", acme::date(cert.not_after));
            println!("  serial   {}", cert.serial);
            for left in &status.left_out {
                println!("  left out {}: {}", left.name, left.reason);
            }
            return Ok(());
        }
        if files.renewal_requested() && started.elapsed() > PICKUP_TIMEOUT {
            bail!(
                "the running server did not pick up the request within {} s; is it running with [acme] on?",
                PICKUP_TIMEOUT.as_secs()
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "no answer from the running server within {} s; it may still be ordering: see `tern cert status`",
                timeout.as_secs()
            );
        }
    }
}
