//! What the web crate's route tests share: a whole web face over a fresh store,
//! called through its router without a socket.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use tern_net::auth::{AuthLimits, Authenticator, PlaintextPolicy};
use tern_net::listeners::{ShutdownSignal, ShutdownTrigger};
use tern_store::{EmbeddedStore, NewAccount, Store};
use tern_web::{Client, WebConfig, WebServer};
use tower::ServiceExt;

pub const HOST: &str = "mail.example.test";
/// Every account's password.
pub const PASSWORD: &str = "correct horse battery";

/// The web face of mail.example.test with HTTPS on 8443, as most tests serve it.
pub fn config() -> WebConfig {
    WebConfig {
        hostname: HOST.into(),
        endpoints: tern_net::endpoints::ClientEndpoints {
            hostname: HOST.into(),
            https: Some(8443),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The web face of a fresh store, its router, and what keeps them alive.
pub struct Site {
    pub router: axum::Router,
    pub store: Arc<dyn Store>,
    pub _dir: tempfile::TempDir,
    pub _trigger: ShutdownTrigger,
    pub shutdown: ShutdownSignal,
}

impl Site {
    /// `domains` hosted, `users` with [`PASSWORD`], login failures delayed only 10 ms and
    /// limited to 5 per address; SMTP's resolver points nowhere (loopback's discard port).
    pub async fn build(domains: &[&str], users: &[&str], config: WebConfig) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store")).unwrap());
        for domain in domains {
            store.create_domain(domain).await.unwrap();
        }
        for user in users {
            store
                .create_account(NewAccount {
                    address: user.to_string(),
                    password_hash: Some(tern_store::password::hash(PASSWORD).unwrap()),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let limits = AuthLimits {
            failure_delay: std::time::Duration::from_millis(10),
            max_failures_per_ip: 5,
            ..Default::default()
        };
        let auth = Arc::new(Authenticator::new(store.clone(), PlaintextPolicy::Loopback, limits));
        let resolver = Arc::new(tern_smtp::verify::resolver(&["127.0.0.1:9".parse().unwrap()]).unwrap());
        let smtp = tern_smtp::SmtpServer::new(
            tern_smtp::SmtpConfig::default(),
            auth.clone(),
            resolver,
            tern_smtp::queue::Queue::new(store.clone()),
        );
        let web = WebServer::new(config, auth, smtp);
        let (trigger, shutdown) = ShutdownSignal::channel();
        Site {
            router: web.router(),
            store,
            _dir: dir,
            _trigger: trigger,
            shutdown,
        }
    }
}

impl Site {
    /// A request to HOST as a client at `peer` sends it, over TLS or not.
    pub fn request(&self, method: &str, uri: &str, peer: &str, tls: bool) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, HOST)
            .extension(Client {
                peer: peer.parse::<SocketAddr>().unwrap(),
                tls,
                shutdown: self.shutdown.clone(),
            })
    }

    /// Runs a request through the router: the status, headers and body (10 MiB at most).
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 10 << 20)
            .await
            .unwrap()
            .to_vec();
        (status, headers, body)
    }
}
