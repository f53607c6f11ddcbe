//! Running Tern: opens the store, loads TLS, starts a listener for every configured
//! service this build serves, and shuts down gracefully on SIGTERM or Ctrl-C (stop
//! accepting, let sessions finish within the grace period, flush the store).
//!
//! The protocol servers plug in through [`services`]: each later protocol (IMAP, POP3,
//! SMTP, HTTP) adds itself there.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tern_store::{EmbeddedStore, Store};

use tern_net::auth::{AuthLimits, Authenticator, PlaintextPolicy};

use crate::config::{Config, PlaintextAuth};
use crate::listeners::{Limits, ListenError, ListenerSpec, Listeners, Service, ShutdownSignals, TlsMode};

/// Why Tern could not start or stop cleanly. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    MigrationKey(tern_migrate::secrets::SecretError),
    #[error("cannot open the mail store in {path}: {source}")]
    Store {
        path: String,
        source: tern_store::StoreError,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("{0}")]
    Config(String),
}

/// The protocol servers of this build, built once and shared by their listeners.
pub struct Services {
    imap: Arc<tern_imap::ImapServer>,
    pop3: Arc<tern_pop3::Pop3Server>,
    smtp: Arc<tern_smtp::SmtpServer>,
    web: Arc<tern_web::WebServer>,
}

/// What SMTP needs besides its listeners: the queue and the DNS resolver the delivery
/// worker shares with the inbound checks.
pub struct MailParts {
    pub config: tern_smtp::SmtpConfig,
    pub queue: tern_smtp::queue::Queue,
    pub resolver: Arc<mail_auth::MessageAuthenticator>,
}

impl MailParts {
    pub fn new(data_dir: &Path, config: &Config, store: &Arc<dyn Store>) -> Result<MailParts, ServeError> {
        let smtp = config.smtp_config(data_dir).map_err(|kind| {
            ServeError::Config(
                crate::config::ConfigError::in_file(&data_dir.join(crate::config::FILE_NAME), kind).to_string(),
            )
        })?;
        let resolver = tern_smtp::verify::resolver(&smtp.nameservers).map_err(ServeError::Config)?;
        Ok(MailParts {
            config: smtp,
            queue: tern_smtp::queue::Queue::new(store.clone()),
            resolver: Arc::new(resolver),
        })
    }
}

impl Services {
    pub fn new(data_dir: &Path, config: &Config, store: &Arc<dyn Store>, mail: &MailParts) -> Services {
        let plaintext = match config.auth.allow_plaintext {
            PlaintextAuth::Never => PlaintextPolicy::Never,
            PlaintextAuth::Loopback => PlaintextPolicy::Loopback,
            PlaintextAuth::Always => PlaintextPolicy::Always,
        };
        // One authenticator for every protocol, so failed logins over IMAP and POP3 count
        // against the same limits.
        let auth = Arc::new(Authenticator::new(store.clone(), plaintext, AuthLimits::default()));
        let imap = tern_imap::ImapServer::new(
            tern_imap::ImapConfig {
                hostname: config.hostname.clone(),
                max_message_size: config.limits.max_message_size,
                ..Default::default()
            },
            auth.clone(),
        );
        let pop3 = tern_pop3::Pop3Server::new(
            tern_pop3::Pop3Config {
                hostname: config.hostname.clone(),
                ..Default::default()
            },
            auth.clone(),
        );
        let smtp = tern_smtp::SmtpServer::new(
            mail.config.clone(),
            auth.clone(),
            mail.resolver.clone(),
            mail.queue.clone(),
        );
        let certificate_trust = tern_web::acme::CertificateTrust::default();
        let web = tern_web::WebServer::new(
            tern_web::WebConfig {
                server: Arc::new(server_facts(data_dir, config, certificate_trust.clone())),
                certificate_trust,
                hostname: config.hostname.clone(),
                // Attachments grow by a third in base64; what is left must still fit
                // the message size limit.
                max_upload: (config.limits.max_message_size * 7 / 10) as usize,
                endpoints: client_endpoints(config, config.listen.services().iter().map(|(n, _, a)| (*n, *a))),
                nameservers: config.dns.nameservers.clone(),
                public_addresses: config.dns.public_addresses.clone(),
                golive: config.golive.config(),
                // Apple profiles are signed with the https certificate when it is trusted.
                tls_certificate: Some(config.tls.certificate_path(data_dir)),
                tls_private_key: Some(config.tls.private_key_path(data_dir)),
                ..Default::default()
            },
            auth,
            smtp.clone(),
        );
        Services { imap, pop3, smtp, web }
    }

    /// The server for a service key of `[listen]` ("imap", "smtp", …), if this build
    /// has one. A configured service without one is reported as "not served by this
    /// build yet" and its port stays closed.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Service>> {
        match name {
            "imap" | "imaps" => Some(self.imap.clone()),
            "pop3" | "pop3s" => Some(self.pop3.clone()),
            "smtp" | "submission" | "submissions" => Some(self.smtp.clone()),
            "http" | "https" => Some(self.web.clone()),
            _ => None,
        }
    }
}

/// What the console's health page and the API say of this server; the listeners are
/// filled in once bound.
fn server_facts(
    data_dir: &Path,
    config: &Config,
    trust: tern_web::acme::CertificateTrust,
) -> tern_admin::health::ServerFacts {
    let path = config.tls.certificate_path(data_dir);
    // Read at each look: ACME replaces the file (atomically) when it renews.
    let probe: tern_admin::health::CertificateProbe = Arc::new(move || {
        let info = crate::acme::inspect_file(&path).ok().flatten()?;
        Some(tern_admin::health::Certificate {
            names: info.names,
            issuer: info.issuer,
            not_after: info.not_after,
            self_signed: info.self_signed,
            trusted: trust.is_trusted(),
        })
    });
    tern_admin::health::ServerFacts {
        version: env!("CARGO_PKG_VERSION").to_string(),
        node: config.hostname.clone(),
        started: chrono::Utc::now().timestamp(),
        data_dir: Some(data_dir.to_path_buf()),
        listeners: Default::default(),
        certificate: config.listen.first_tls_service().is_some().then_some(probe),
        acme: config.acme.enabled,
        golive_watch: config.golive.watch && tern_dns::resolve::Lookup::servers(&config.dns.nameservers).is_ok(),
    }
}

/// Where clients reach this server, from `[listen]` (or, once bound, the bound
/// addresses).
fn client_endpoints<'a>(
    config: &Config,
    services: impl IntoIterator<Item = (&'a str, &'a [SocketAddr])>,
) -> tern_net::endpoints::ClientEndpoints {
    tern_net::endpoints::ClientEndpoints::from_services(&config.hostname, services)
}

/// One row of the start-up table.
pub struct ServiceState {
    pub name: &'static str,
    pub tls: TlsMode,
    pub addrs: Vec<SocketAddr>,
    /// Listening, or configured but not served by this build.
    pub listening: bool,
}

/// A started Tern: listeners bound, store open.
pub struct Running {
    pub store: EmbeddedStore,
    listeners: Listeners,
    /// The migration worker pool (tern-migrate) and the switch that stops it.
    migrations: (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>),
    /// The outbound delivery worker (tern-smtp) and the switch that stops it.
    deliveries: (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>),
    /// The ACME certificate task (crate::acme), when `[acme]` is on.
    acme: Option<crate::acme::TaskHandle>,
    /// The go-live watch (tern-dns) and the switch that stops it.
    golive: (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>),
    pub states: Vec<ServiceState>,
    grace: std::time::Duration,
    signals: ShutdownSignals,
}

/// Opens the store and binds every served listener. Fails before accepting anything if
/// a port is taken or the certificate is unusable.
pub async fn start(data_dir: &Path, config: &Config) -> Result<Running, ServeError> {
    // Before anything else: a SIGTERM during start-up then still means "shut down
    // gracefully", not "die".
    let signals = ShutdownSignals::install();
    let store_path = data_dir.join("store");
    let store = EmbeddedStore::open(&store_path).map_err(|source| ServeError::Store {
        path: store_path.display().to_string(),
        source,
    })?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    // One certificate for every port and STARTTLS, replaceable while serving (ACME
    // renewals swap it in; see crate::acme).
    let certificate = match (config.listen.first_tls_service(), config.acme.enabled) {
        (None, false) => None,
        _ => Some(crate::acme::initial_certificate(data_dir, config)?),
    };
    let tls = certificate.clone().map(crate::tls::server_config).transpose()?;
    let mail = MailParts::new(data_dir, config, &shared)?;
    let services = Services::new(data_dir, config, &shared, &mail);
    let mut specs = Vec::new();
    let mut states = Vec::new();
    for (name, tls_mode, addrs) in config.listen.services() {
        if addrs.is_empty() {
            continue;
        }
        let service = services.get(name);
        states.push(ServiceState {
            name,
            tls: tls_mode,
            addrs: addrs.to_vec(),
            listening: service.is_some(),
        });
        if let Some(service) = service {
            specs.push(ListenerSpec {
                name,
                addrs: addrs.to_vec(),
                tls_mode,
                service,
            });
        }
    }
    let listeners = Listeners::bind(specs, tls, Limits::from(&config.limits)).await?;
    let migrations = start_migrations(data_dir, config, &shared)?;
    let deliveries = start_deliveries(config, mail);
    let acme = start_acme(data_dir, config, &shared, certificate, services.web.config())?;
    let golive = start_golive(config, &shared);
    // Report the addresses actually bound (port 0 in a config means "any free port").
    for state in &mut states {
        let bound: Vec<SocketAddr> = listeners
            .local_addrs()
            .iter()
            .filter(|(n, _)| *n == state.name)
            .map(|(_, a)| *a)
            .collect();
        if !bound.is_empty() {
            state.addrs = bound;
        }
    }
    services.web.set_endpoints(client_endpoints(
        config,
        states.iter().map(|s| (s.name, s.addrs.as_slice())),
    ));
    *services
        .web
        .config()
        .server
        .listeners
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = states
        .iter()
        .filter(|s| s.listening)
        .flat_map(|s| {
            s.addrs.iter().map(|a| tern_admin::health::Listener {
                service: s.name.to_string(),
                address: a.to_string(),
                tls: match s.tls {
                    TlsMode::Plain => "none",
                    TlsMode::StartTls => "starttls",
                    TlsMode::Implicit => "implicit",
                }
                .to_string(),
            })
        })
        .collect();
    Ok(Running {
        store,
        listeners,
        migrations,
        deliveries,
        acme,
        golive,
        states,
        grace: config.shutdown.grace(),
        signals,
    })
}

/// The migration worker: runs the passes `tern migrate` asks for, in the background.
fn start_migrations(
    data_dir: &Path,
    config: &Config,
    store: &Arc<dyn Store>,
) -> Result<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>), ServeError> {
    let secrets =
        tern_migrate::secrets::SecretBox::open_or_create(&data_dir.join(tern_migrate::secrets::SecretBox::FILE))
            .map_err(ServeError::MigrationKey)?;
    let worker = tern_migrate::worker::Worker::new(
        store.clone(),
        tern_migrate::worker::WorkerConfig {
            secrets: Arc::new(secrets),
            max_message_size: config.limits.max_message_size,
        },
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok((stop, tokio::spawn(worker.run(stopped))))
}

/// The go-live watch: notices a migrating domain's MX moving here and drives the last
/// passes (tern_dns::golive).
fn start_golive(
    config: &Config,
    store: &Arc<dyn Store>,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let lookup = match tern_dns::resolve::Lookup::servers(&config.dns.nameservers) {
        Ok(lookup) => lookup,
        Err(e) => {
            // No resolver (no /etc/resolv.conf): Tern still serves; cutovers are
            // declared by hand until the DNS configuration is fixed.
            tracing::warn!(error = %e, "the go-live MX watch is off: no DNS resolver; set [dns] nameservers");
            return (stop, tokio::spawn(async {}));
        }
    };
    let watch = tern_dns::golive::Watch::new(
        store.clone(),
        lookup,
        &config.hostname,
        config.dns.public_addresses.clone(),
        config.golive.config(),
    );
    (stop, tokio::spawn(watch.run(stopped)))
}

/// Whether browsers trust the certificate (for HSTS), and, with `[acme]` on, the task
/// that gets and renews it.
fn start_acme(
    data_dir: &Path,
    config: &Config,
    store: &Arc<dyn Store>,
    certificate: Option<Arc<crate::tls::SwappableCertificate>>,
    web: &tern_web::WebConfig,
) -> Result<Option<crate::acme::TaskHandle>, ServeError> {
    let Some(certificate) = certificate else {
        return Ok(None);
    };
    let files = crate::acme::AcmeFiles::new(data_dir);
    let status = files.read_status().ok().flatten();
    web.certificate_trust.set(crate::acme::is_trusted(
        &certificate.current().cert,
        &config.hostname,
        status.as_ref().filter(|_| config.acme.enabled),
    ));
    if !config.acme.enabled {
        return Ok(None);
    }
    let task = crate::acme::AcmeTask::new(
        data_dir,
        config,
        store.clone(),
        certificate,
        web.acme_challenges.clone(),
        web.certificate_trust.clone(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok(Some((stop, tokio::spawn(task.run(stopped)))))
}

/// The outbound queue's delivery worker.
fn start_deliveries(
    config: &Config,
    mail: MailParts,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let deliverer = tern_smtp::outbound::Deliverer::new(
        mail.config,
        mail.queue,
        mail.resolver,
        std::time::Duration::from_secs(config.queue.first_retry_seconds),
        &[],
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    (stop, tokio::spawn(deliverer.run(stopped)))
}

impl Running {
    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn serve_until_signal(mut self) -> Result<(), ServeError> {
        self.signals.recv().await;
        self.shutdown().await
    }

    /// Stops accepting, lets sessions finish within the grace period, flushes the store.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        // An ACME order in progress is abandoned; the next start checks again.
        if let Some((stop, task)) = self.acme {
            let _ = stop.send(true);
            let _ = task.await;
        }
        // Running passes stop between batches and resume at the next start.
        let (stop, worker) = self.migrations;
        let _ = stop.send(true);
        let _ = worker.await;
        // A delivery round in progress finishes; what it did not get to stays queued.
        let (stop, worker) = self.deliveries;
        let _ = stop.send(true);
        let _ = worker.await;
        let (stop, watch) = self.golive;
        let _ = stop.send(true);
        let _ = watch.await;
        let report = self.listeners.shutdown(self.grace).await;
        if report.aborted > 0 {
            tracing::warn!(
                finished = report.finished,
                cut = report.aborted,
                "sessions still open after the grace period were cut"
            );
        }
        self.store.close().await.map_err(|source| ServeError::Store {
            path: "the data folder".into(),
            source,
        })?;
        tracing::info!("stopped");
        Ok(())
    }
}
