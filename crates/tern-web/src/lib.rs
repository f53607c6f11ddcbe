//! Tern's web face. Today: webmail, a complete mail client in the browser for every
//! mailbox from the minute it exists, and everything that sets mail apps up: client
//! auto-configuration, Apple profiles, the setup page and the MTA-STS policy; and the
//! admin console with its JSON API, on the same listeners.
//!
//! Pages are rendered on the server (askama templates compiled into the binary); a
//! small script (`assets/app.js`, also in the binary) adds live updates, keyboard
//! shortcuts, drag and drop and draft saving, and everything works without it.
//!
//! Modules, each with one job:
//! - [`session`]: login sessions, their cookie and the CSRF token of each;
//! - [`login`]: the login and logout pages, with the shared login rate limits;
//! - [`mail`]: the folder tree and the message list (sort, paging, conversations,
//!   search), and actions on selected messages (flag, move, delete, junk);
//! - [`read`]: one message: headers, sanitised body, attachments, raw source;
//! - [`compose`]: writing, replying, forwarding, drafts and sending through submission;
//! - [`folders`]: creating, renaming, deleting and emptying folders;
//! - [`settings`]: display name, signature, vacation reply, forwarding, password;
//! - [`events`]: server-sent events from the store's change bus;
//! - [`autoconfig`]: Thunderbird's autoconfig document, and which hosted domain a
//!   client-configuration request is about (Host header or address);
//! - [`autodiscover`]: Outlook's Autodiscover (POX XML, and v2's JSON pointer to it);
//! - [`mobileconfig`]: Apple configuration profiles, signed with the TLS certificate
//!   when it is trusted;
//! - [`setup`]: the setup page (step-by-step instructions per mail app, a QR code for
//!   phones, an optional password check) and the Outlook 2007 profile file;
//! - [`mta_sts`]: each hosted domain's MTA-STS policy (RFC 8461);
//! - [`acme`]: the ACME HTTP-01 challenges Tern's certificate task answers here, and
//!   HSTS once the certificate is trusted;
//! - [`check`]: the connection check page (`tern doctor` in the browser);
//! - [`console`]: the admin console under `/admin` (administrators log in with their
//!   own account);
//! - [`api`]: the JSON API under `/admin/api/v1`, for scripts with an API token, and its
//!   OpenAPI description;
//! - [`sanitize`]: HTML from an email made safe to show;
//! - [`mime`]: a stored message taken apart for display;
//! - [`assets`], [`page`]: the embedded static files and the shared page pieces.

pub mod acme;
pub mod api;
pub mod assets;
pub mod autoconfig;
pub mod autodiscover;
pub mod check;
pub mod compose;
pub mod console;
pub mod events;
pub mod folders;
pub mod login;
pub mod mail;
pub mod mime;
pub mod mobileconfig;
pub mod mta_sts;
pub mod page;
pub mod read;
pub mod sanitize;
pub mod session;
pub mod settings;
pub mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tern_net::auth::Authenticator;
use tern_net::endpoints::ClientEndpoints;
use tern_net::listeners::{BoxFuture, ConnContext, Connection, Service, ShutdownSignal};
use tern_smtp::SmtpServer;
use tern_store::Store;
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::debug;

/// Settings of the web listeners.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// This host's name, shown on the login page and in the title.
    pub hostname: String,
    /// The largest attachment upload (all files of one message together), in bytes.
    pub max_upload: usize,
    /// A login session ends after this long without a request.
    pub session_idle: Duration,
    /// ... and after this long in any case.
    pub session_lifetime: Duration,
    /// Where clients reach this server (host name, client ports), for autoconfig and
    /// the setup page; its HTTPS port is where plain-HTTP requests from where passwords
    /// may not travel unencrypted are sent. [`WebServer::set_endpoints`] updates it
    /// once the listeners are bound.
    pub endpoints: ClientEndpoints,
    /// The DNS servers the connection check and the console's DNS check ask
    /// (`[dns] nameservers`); empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// This server's public addresses (`[dns] public_addresses`), for the DNS records
    /// the console suggests; empty: what the host name resolves to.
    pub public_addresses: Vec<std::net::IpAddr>,
    /// How going live proceeds (`[golive]`), for a cutover declared in the console.
    pub golive: tern_dns::golive::GoLiveConfig,
    /// The pending ACME HTTP-01 challenges, filled by Tern's certificate task.
    pub acme_challenges: acme::Http01Challenges,
    /// Whether the certificate presented is trusted (then HTTPS responses carry HSTS).
    pub certificate_trust: acme::CertificateTrust,
    /// The certificate chain (PEM) the https listener serves, and its key: Apple
    /// profiles are signed with them when the chain is trusted. `None`: never signed.
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// The CA bundle a certificate must chain to before profiles are signed with it.
    pub trusted_cas: PathBuf,
    /// What the running server knows of itself (version, listeners, certificate), for
    /// the console's health page and the API.
    pub server: Arc<tern_admin::health::ServerFacts>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            hostname: "localhost".into(),
            max_upload: 25 * 1024 * 1024,
            session_idle: Duration::from_secs(12 * 3600),
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            endpoints: ClientEndpoints::default(),
            nameservers: Vec::new(),
            public_addresses: Vec::new(),
            golive: tern_dns::golive::GoLiveConfig::default(),
            acme_challenges: acme::Http01Challenges::default(),
            certificate_trust: acme::CertificateTrust::default(),
            tls_certificate: None,
            tls_private_key: None,
            trusted_cas: PathBuf::from(tern_net::tls::SYSTEM_CAS),
            server: Arc::default(),
        }
    }
}

/// What every handler can reach.
pub struct App {
    pub config: WebConfig,
    pub store: Arc<dyn Store>,
    pub auth: Arc<Authenticator>,
    pub smtp: Arc<SmtpServer>,
    pub sessions: session::Sessions,
    endpoints: std::sync::RwLock<ClientEndpoints>,
}

impl App {
    /// Where clients reach this server, as bound.
    pub fn endpoints(&self) -> ClientEndpoints {
        self.endpoints
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

pub type AppState = Arc<App>;

/// Who is on the other end of a request: put into every request's extensions.
#[derive(Debug, Clone)]
pub struct Client {
    pub peer: SocketAddr,
    /// Whether the connection is TLS (false behind a TLS-terminating proxy too).
    pub tls: bool,
    /// Fires when Tern shuts down, ending long-lived responses (server-sent events).
    pub shutdown: ShutdownSignal,
}

/// The HTTP service every web listener shares.
pub struct WebServer {
    app: AppState,
    router: Router,
}

impl WebServer {
    pub fn new(config: WebConfig, auth: Arc<Authenticator>, smtp: Arc<SmtpServer>) -> Arc<WebServer> {
        let app = Arc::new(App {
            sessions: session::Sessions::new(config.session_idle, config.session_lifetime),
            store: auth.store().clone(),
            endpoints: std::sync::RwLock::new(config.endpoints.clone()),
            config,
            auth,
            smtp,
        });
        Arc::new(WebServer {
            router: router(app.clone()),
            app,
        })
    }

    /// The client endpoints as actually bound (a port 0 in the config becomes the port
    /// taken).
    pub fn set_endpoints(&self, endpoints: ClientEndpoints) {
        *self
            .app
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = endpoints;
    }

    /// The settings it runs with (the ACME challenges and certificate trust are shared
    /// with the certificate task through them).
    pub fn config(&self) -> &WebConfig {
        &self.app.config
    }

    /// The routes, for tests that call them without a socket.
    pub fn router(&self) -> Router {
        self.router.clone()
    }
}

/// Every route of the web listeners.
fn router(app: AppState) -> Router {
    // Uploads are limited per message (WebConfig::max_upload) plus room for the text.
    let body_limit = app.config.max_upload + 1024 * 1024;
    Router::new()
        .merge(login::routes())
        .merge(mail::routes())
        .merge(read::routes())
        .merge(compose::routes())
        .merge(folders::routes())
        .merge(settings::routes())
        .merge(events::routes())
        .merge(assets::routes())
        .merge(check::routes())
        .merge(acme::routes(app.config.acme_challenges.clone()))
        .merge(autoconfig::routes())
        .merge(autodiscover::routes())
        .merge(mobileconfig::routes())
        .merge(setup::routes())
        .merge(mta_sts::routes())
        .merge(console::routes())
        .merge(api::routes())
        .layer(axum::middleware::from_fn_with_state(app.clone(), session::csrf_guard))
        .layer(axum::middleware::from_fn_with_state(app.clone(), session::require_tls))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            app.config.certificate_trust.clone(),
            acme::strict_transport_security,
        ))
        // Headers every response carries (pages add their own Content-Security-Policy):
        // no MIME sniffing, no framing by other sites, no referrer leaking message URLs
        // to links followed from mail. `same-origin`, not `no-referrer`: under
        // `no-referrer` a browser sends `Origin: null` on every POST of the pages (Fetch
        // standard, "append a request Origin header"), which the CSRF guard refuses.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(app)
}

impl Service for WebServer {
    fn name(&self) -> &'static str {
        "http"
    }

    fn handle(self: Arc<Self>, conn: Connection, ctx: ConnContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let client = Client {
                peer: ctx.peer,
                tls: ctx.tls_active,
                shutdown: ctx.shutdown.clone(),
            };
            let router = self.router.clone();
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(client.clone());
                router.clone().oneshot(request)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(conn), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        debug!(peer = %ctx.peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = ctx.shutdown.triggered() => {
                    // Finish the requests in flight, take no new ones.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        })
    }
}
