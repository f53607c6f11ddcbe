//! The web face's part in getting a certificate over ACME (RFC 8555), and what follows
//! from having one:
//!
//! - [`Http01Challenges`]: the key authorizations of the HTTP-01 challenges an ACME
//!   order is waiting on, filled by Tern's ACME task and answered here at
//!   `GET /.well-known/acme-challenge/{token}` (RFC 8555 §8.3) on every web listener,
//!   plain HTTP included (the CA always asks on port 80; `session::require_tls` lets
//!   the path through, see `autoconfig::served_over_plain_http`);
//! - [`CertificateTrust`]: whether the certificate the listeners present is one
//!   browsers trust (issued over ACME, or chaining to the system's CAs), and
//!   [`strict_transport_security`], which then adds HSTS (RFC 6797) to HTTPS
//!   responses. Never with a self-signed certificate: a browser that remembered HSTS
//!   for it could not be told to accept the certificate any more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Client;

/// Where the CA fetches a challenge's key authorization (RFC 8555 §8.3).
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// HSTS for a year (RFC 6797 §6.1.1), for this host name only: other names under the
/// mail domains may be other people's plain-HTTP sites, so no includeSubDomains.
const HSTS: &str = "max-age=31536000";

/// The pending HTTP-01 challenges: token → key authorization. Cheap to clone; clones
/// share the map.
#[derive(Clone, Default)]
pub struct Http01Challenges(Arc<RwLock<HashMap<String, String>>>);

impl std::fmt::Debug for Http01Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http01Challenges")
            .field("pending", &self.len())
            .finish()
    }
}

impl Http01Challenges {
    /// Answers `token` with `key_authorization` until [`Http01Challenges::remove`].
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).remove(token);
    }

    /// The key authorization of a pending challenge.
    pub fn get(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether the certificate in use is trusted by browsers; shared by the ACME task
/// (which sets it) and the web face (which reads it for HSTS).
#[derive(Clone, Default)]
pub struct CertificateTrust(Arc<AtomicBool>);

impl std::fmt::Debug for CertificateTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CertificateTrust").field(&self.is_trusted()).finish()
    }
}

impl CertificateTrust {
    pub fn set(&self, trusted: bool) {
        self.0.store(trusted, Ordering::Relaxed);
    }

    pub fn is_trusted(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `GET /.well-known/acme-challenge/{token}`, answered from `challenges`.
pub fn routes<S: Clone + Send + Sync + 'static>(challenges: Http01Challenges) -> Router<S> {
    Router::new().route(
        "/.well-known/acme-challenge/{token}",
        get(move |Path(token): Path<String>| {
            let challenges = challenges.clone();
            async move { challenge(&challenges, &token) }
        }),
    )
}

/// RFC 8555 §8.3: the body is the key authorization, served as
/// `application/octet-stream`. Anything but a pending token is a 404; the token is
/// checked to be base64url first (§8.3: the token holds only those characters), so
/// nothing else is looked up.
fn challenge(challenges: &Http01Challenges, token: &str) -> Response {
    let well_formed = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match well_formed.then(|| challenges.get(token)).flatten() {
        Some(key_authorization) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            key_authorization,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such ACME challenge").into_response(),
    }
}

/// Middleware: `Strict-Transport-Security` on responses sent over TLS while the
/// certificate is trusted (RFC 6797 §7.2: never over plain HTTP, where it means
/// nothing and could be forged).
pub async fn strict_transport_security(
    State(trust): State<CertificateTrust>,
    request: Request,
    next: Next,
) -> Response {
    let tls = request.extensions().get::<Client>().is_some_and(|c| c.tls);
    let mut response = next.run(request).await;
    if tls && trust.is_trusted() {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn client(tls: bool) -> Client {
        let (_trigger, shutdown) = tern_net::listeners::ShutdownSignal::channel();
        Client {
            peer: "192.0.2.7:40000".parse().expect("addr"),
            tls,
            shutdown,
        }
    }

    async fn get(router: &Router, uri: &str, tls: bool) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = axum::http::Request::get(uri)
            .header(header::HOST, "mail.example.test")
            .extension(client(tls))
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn pending_challenges_are_answered_until_removed() {
        let challenges = Http01Challenges::default();
        let router: Router = routes(challenges.clone());
        let token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
        let path = format!("{CHALLENGE_PATH}{token}");
        assert_eq!(get(&router, &path, false).await.0, StatusCode::NOT_FOUND);

        challenges.insert(token, &format!("{token}.thumbprint"));
        let (status, headers, body) = get(&router, &path, false).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("{token}.thumbprint"));
        assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
        // Another token, or one outside base64url, is not found.
        assert_eq!(
            get(&router, &format!("{CHALLENGE_PATH}other"), false).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&router, &format!("{CHALLENGE_PATH}{token}%2E"), false).await.0,
            StatusCode::NOT_FOUND
        );

        challenges.remove(token);
        assert!(challenges.is_empty());
        assert_eq!(get(&router, &path, false).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn hsts_only_over_tls_with_a_trusted_certificate() {
        let trust = CertificateTrust::default();
        let router: Router = Router::new().route("/", axum::routing::get(|| async { "page" })).layer(
            axum::middleware::from_fn_with_state(trust.clone(), strict_transport_security),
        );
        let hsts = |headers: &axum::http::HeaderMap| headers.get(header::STRICT_TRANSPORT_SECURITY).cloned();
        // Self-signed (untrusted): never.
        assert_eq!(hsts(&get(&router, "/", true).await.1), None);
        trust.set(true);
        assert_eq!(
            hsts(&get(&router, "/", true).await.1),
            Some(HeaderValue::from_static("max-age=31536000"))
        );
        // Plain HTTP: never (RFC 6797 §7.2).
        assert_eq!(hsts(&get(&router, "/", false).await.1), None);
        trust.set(false);
        assert_eq!(hsts(&get(&router, "/", true).await.1), None);
    }

    /// The whole web face, as `tern serve` builds it, with an HTTPS listener on 8443.
    async fn web_face() -> (tempfile::TempDir, Arc<crate::WebServer>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn tern_store::Store> =
            Arc::new(tern_store::EmbeddedStore::open(&dir.path().join("store")).expect("store"));
        let auth = Arc::new(tern_net::auth::Authenticator::new(
            store.clone(),
            tern_net::auth::PlaintextPolicy::Loopback,
            tern_net::auth::AuthLimits::default(),
        ));
        let resolver =
            Arc::new(tern_smtp::verify::resolver(&["127.0.0.1:9".parse().expect("addr")]).expect("resolver"));
        let smtp = tern_smtp::SmtpServer::new(
            tern_smtp::SmtpConfig::default(),
            auth.clone(),
            resolver,
            tern_smtp::queue::Queue::new(store),
        );
        let web = crate::WebServer::new(
            crate::WebConfig {
                hostname: "mail.example.test".into(),
                endpoints: tern_net::endpoints::ClientEndpoints {
                    hostname: "mail.example.test".into(),
                    https: Some(8443),
                    ..Default::default()
                },
                ..Default::default()
            },
            auth,
            smtp,
        );
        (dir, web)
    }

    #[tokio::test]
    async fn the_web_face_answers_challenges_over_plain_http_from_anywhere() {
        let (_dir, web) = web_face().await;
        let router = web.router();
        let token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
        web.config().acme_challenges.insert(token, &format!("{token}.key"));
        // A CA's validation server: not loopback, plain HTTP.
        let (status, headers, body) = get(&router, &format!("{CHALLENGE_PATH}{token}"), false).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("{token}.key"));
        // With the headers every response carries.
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        // Webmail from there still goes to HTTPS.
        let (status, headers, _) = get(&router, "/login", false).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert!(
            headers[header::LOCATION]
                .to_str()
                .expect("location")
                .starts_with("https://")
        );
        assert!(!headers.contains_key(header::STRICT_TRANSPORT_SECURITY));

        // HSTS on webmail pages over TLS once the certificate is trusted.
        let (_, headers, _) = get(&router, "/login", true).await;
        assert!(!headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
        web.config().certificate_trust.set(true);
        let (_, headers, _) = get(&router, "/login", true).await;
        assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], HSTS);
    }
}
