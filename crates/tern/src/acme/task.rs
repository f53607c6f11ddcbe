//! The background task of `tern serve`: checks at start and twice a day, orders, writes
//! and swaps in the new certificate, and backs off after failures.

use super::*;

/// The running task and the switch that stops it.
pub type TaskHandle = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The certificate may stay.
    Current,
    /// A new certificate is in use.
    Issued(CertificateInfo),
}

/// Gets and renews the certificate while `tern serve` runs; see the module's text.
pub struct AcmeTask {
    pub(super) hostname: String,
    pub(super) acme: AcmeSection,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_path: PathBuf,
    pub(super) key_path: PathBuf,
    pub(super) files: AcmeFiles,
    pub(super) store: Arc<dyn Store>,
    pub(super) lookups: Vec<Lookup>,
    /// `[dns] public_addresses`: what "points at this server" means when given.
    pub(super) public_addresses: Vec<IpAddr>,
    pub(super) certificate: Arc<SwappableCertificate>,
    pub(super) challenges: Http01Challenges,
    pub(super) trust: CertificateTrust,
    pub(super) account: Option<Account>,
    /// A certificate issued but not yet written to `[tls]`'s files (the disk refused):
    /// written before anything else at the next check.
    pub(super) unsaved: Option<(String, String)>,
}

impl AcmeTask {
    pub fn new(
        data_dir: &Path,
        config: &Config,
        store: Arc<dyn Store>,
        certificate: Arc<SwappableCertificate>,
        challenges: Http01Challenges,
        trust: CertificateTrust,
    ) -> AcmeTask {
        let lookups = lookups(config).unwrap_or_else(|e| {
            // The host name is still ordered; the per-domain names wait for DNS.
            warn!(error = %e, "no DNS resolver for ACME's name checks; set [dns] nameservers");
            Vec::new()
        });
        AcmeTask {
            hostname: config.hostname.to_ascii_lowercase(),
            acme: config.acme.clone(),
            ca_file: config.acme.ca_file_path(data_dir),
            cert_path: config.tls.certificate_path(data_dir),
            key_path: config.tls.private_key_path(data_dir),
            files: AcmeFiles::new(data_dir),
            store,
            lookups,
            public_addresses: config.dns.public_addresses.clone(),
            certificate,
            challenges,
            trust,
            account: None,
            unsaved: None,
        }
    }

    /// Checks at once, then every [`CHECK_INTERVAL`] (sooner after a failure, at once
    /// on `tern cert renew`), until `stop` turns true. An order in progress is
    /// abandoned at shutdown; the certificate in use is never touched by a failure.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut status = match self.files.read_status() {
            Ok(status) => status.unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "starting ACME with a fresh status");
                Status::default()
            }
        };
        status.pid = std::process::id();
        status.checks = 0;
        status.next_check = Some(unix_now());
        status.directory = self.acme.directory.clone();
        // At once, so `tern cert renew` knows a server runs while a first order is
        // still under way.
        if let Err(e) = self.files.write_status(&status) {
            warn!(error = %e, "cannot save the ACME status");
        }
        // Certificates are checked at start, whatever the last run planned.
        let mut next_check = tokio::time::Instant::now();
        loop {
            let request = self.files.take_request();
            if request.is_some() || tokio::time::Instant::now() >= next_check {
                let now = unix_now();
                let checked = tokio::select! {
                    checked = self.check(request.is_some(), &mut status) => checked,
                    _ = stop.changed() => break,
                };
                let wait = match checked {
                    Ok(outcome) => {
                        if let Outcome::Issued(info) = outcome {
                            status.last_issued = Some(unix_now());
                            status.issued_sha256 = Some(info.sha256);
                        }
                        status.failures = 0;
                        CHECK_INTERVAL
                    }
                    Err(e) => {
                        status.failures += 1;
                        let wait = retry_delay(status.failures);
                        warn!(
                            error = %e,
                            retry_in_minutes = wait.as_secs() / 60,
                            "could not get a certificate; the current one stays in use"
                        );
                        status.last_error = Some(StatusError {
                            at: now,
                            message: e.to_string(),
                        });
                        wait
                    }
                };
                status.last_check = Some(now);
                status.checks += 1;
                status.next_check = Some(unix_now() + wait.as_secs() as i64);
                if request.is_some() {
                    status.handled_request = request;
                }
                next_check = tokio::time::Instant::now() + wait;
                if let Err(e) = self.files.write_status(&status) {
                    warn!(error = %e, "cannot save the ACME status");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(REQUEST_POLL) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
    }

    /// One check: renew if the certificate in use needs it (or `force`).
    pub async fn check(&mut self, force: bool, status: &mut Status) -> Result<Outcome, AcmeError> {
        if let Some((chain, key)) = self.unsaved.take() {
            self.save(&chain, &key)?;
        }
        let domains: Vec<String> = self.store.domains().await?.into_iter().map(|d| d.name).collect();
        let wanted = wanted_names(&self.hostname, &self.public_addresses, &domains, &self.lookups).await;
        for left_out in &wanted.left_out {
            info!(name = %left_out.name, reason = %left_out.reason, "left out of the certificate");
        }
        status.wanted = wanted.names.clone();
        status.left_out = wanted.left_out.clone();

        let current = inspect(&self.certificate.current().cert).ok();
        let reason = if force {
            Some("a renewal was asked for (tern cert renew)".to_string())
        } else {
            renewal_reason(current.as_ref(), &wanted.names, unix_now(), self.acme.renew_before_days)
        };
        let Some(reason) = reason else {
            return Ok(Outcome::Current);
        };
        info!(reason = %reason, names = %wanted.names.join(", "), "ordering a certificate");
        let (chain, key) = tokio::time::timeout(ORDER_TIMEOUT, self.order(&wanted.names))
            .await
            .map_err(|_| AcmeError::Timeout)??;

        let certified = tls::certified_key_from_pem(&chain, &key)?;
        let info = inspect(&certified.cert)?;
        let lacking: Vec<&str> = wanted
            .names
            .iter()
            .filter(|n| !info.names.contains(n))
            .map(String::as_str)
            .collect();
        if !lacking.is_empty() {
            return Err(AcmeError::Incomplete(lacking.join(", ")));
        }
        // In use first: a certificate the disk refused still serves until restart, and
        // is written at the next check.
        self.certificate.replace(certified);
        self.trust.set(true);
        status.issued_sha256 = Some(info.sha256.clone());
        if let Err(e) = self.save(&chain, &key) {
            self.unsaved = Some((chain, key));
            return Err(e);
        }
        info!(
            names = %info.names.join(", "),
            expires = %date(info.not_after),
            serial = %info.serial,
            "new certificate in use"
        );
        Ok(Outcome::Issued(info))
    }

    pub(super) fn save(&self, chain: &str, key: &str) -> Result<(), AcmeError> {
        tls::write_certificate_files(&self.cert_path, &self.key_path, chain, key)?;
        Ok(())
    }

    /// The ACME account: loaded from `account.json`, or created (RFC 8555 §7.3) and
    /// saved there.
    pub(super) async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let directory = self.acme.directory.clone();
        let http = || AcmeHttp::new(self.ca_file.as_deref()).map(Box::new);
        let saved = self.files.read_account()?;
        let account = match saved {
            Some(saved) if saved.directory == directory => {
                let account = Account::builder_with_http(http()?)
                    .from_credentials(saved.credentials)
                    .await
                    .map_err(AcmeError::server(&directory, "refused the saved account"))?;
                if saved.contact != self.acme.contact {
                    // RFC 8555 §7.3.2: the contact is updated in place.
                    let contact = mailto(&self.acme.contact);
                    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                    account
                        .update_contacts(&contacts)
                        .await
                        .map_err(AcmeError::server(&directory, "refused the new contact"))?;
                    self.files.write_account(&SavedAccount {
                        directory: directory.clone(),
                        contact: self.acme.contact.clone(),
                        credentials: saved_credentials(&self.files)?,
                    })?;
                }
                account
            }
            _ => {
                let contact = mailto(&self.acme.contact);
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = Account::builder_with_http(http()?)
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.clone(),
                        None,
                    )
                    .await
                    .map_err(AcmeError::server(&directory, "refused a new account"))?;
                self.files.write_account(&SavedAccount {
                    directory: directory.clone(),
                    contact: self.acme.contact.clone(),
                    credentials,
                })?;
                info!(directory = %directory, "ACME account created");
                account
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order (RFC 8555 §7.4): HTTP-01 for each name not yet authorized, then a CSR
    /// with a new key. Returns the PEM chain and the PEM key.
    pub(super) async fn order(&mut self, names: &[String]) -> Result<(String, String), AcmeError> {
        let account = self.account().await?;
        let directory = self.acme.directory.clone();
        let server = |doing| AcmeError::server(&directory, doing);
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(server("refused the order"))?;

        let mut published = Published {
            challenges: &self.challenges,
            tokens: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(server("did not send an authorization"))?;
            let name = authorization.identifier().to_string();
            match authorization.status {
                // Validated for an earlier order of this account, still fresh.
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::Authorization {
                        name,
                        status: format!("{other:?}").to_lowercase(),
                    });
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::NoHttp01(name.clone()))?;
            // RFC 8555 §8.3: served at /.well-known/acme-challenge/TOKEN.
            let key_authorization = challenge.key_authorization();
            published.insert(&challenge.token, key_authorization.as_str());
            challenge.set_ready().await.map_err(server("refused a challenge"))?;
        }

        let polling = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .backoff(1.5)
            .timeout(Duration::from_secs(180));
        match order.poll_ready(&polling).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) | Err(instant_acme::Error::Api(_)) => {
                return Err(AcmeError::Validation(failed_names(&mut order).await));
            }
            Err(e) => return Err(server("did not finish validating")(e)),
        }
        drop(published);

        // A new key for every certificate: ECDSA P-256 (rcgen's default).
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(server("refused to finalize the order"))?;
        let chain = order
            .poll_certificate(&polling)
            .await
            .map_err(server("did not issue the certificate"))?;
        Ok((chain, key.serialize_pem()))
    }
}

/// Which names failed validation and why, from the authorizations (RFC 8555 §7.1.4:
/// an invalid authorization's challenge carries the error).
pub(super) async fn failed_names(order: &mut Order) -> String {
    let mut failures = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if state.status == AuthorizationStatus::Valid {
            continue;
        }
        let problem = state
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref())
            .and_then(|p| p.detail.clone())
            .unwrap_or_else(|| format!("{:?}", state.status).to_lowercase());
        failures.push(format!("{name} ({problem})"));
    }
    if failures.is_empty() {
        "the order's names".into()
    } else {
        failures.join("; ")
    }
}

/// The saved credentials again (instant-acme's are not Clone).
pub(super) fn saved_credentials(files: &AcmeFiles) -> Result<AccountCredentials, AcmeError> {
    files
        .read_account()?
        .map(|s| s.credentials)
        .ok_or_else(|| AcmeError::File {
            path: files.account_path(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "the account file went away"),
        })
}

/// RFC 8555 §7.3: contacts are URLs.
pub(super) fn mailto(contact: &str) -> Vec<String> {
    if contact.is_empty() {
        Vec::new()
    } else {
        vec![format!("mailto:{contact}")]
    }
}

/// How long to wait after `failures` failures in a row: 5 minutes, doubling, at most
/// [`CHECK_INTERVAL`].
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_RETRY * 2u32.pow(doublings)).min(CHECK_INTERVAL)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-11-26 14:29 UTC`.
pub fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}
