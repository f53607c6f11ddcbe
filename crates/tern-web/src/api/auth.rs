//! Who calls the API: the API token in `Authorization: Bearer tern_...` (RFC 6750 §2.1),
//! checked against the stored tokens' hashes by tern-admin. An expired token is
//! answered like a wrong one (401 `invalid_token`, §3.1) but says it expired; a
//! read-only token is answered 403 `insufficient_scope` (§3.1) for anything but GET.
//!
//! A token cannot be guessed (256 random bits), but each wrong one still costs the
//! store a settings read; so the failures of each client address are counted, and an
//! address with too many within the window is answered 429 without a look at the store
//! until the window has passed. IPv6 clients are counted per /64, the smallest network
//! one client is usually given.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use tern_admin::tokens::{Access, Checked, Token};

use super::ApiError;
use crate::{AppState, Client};

/// Failed attempts from one address within [`WINDOW`] before it is refused.
pub const MAX_FAILURES: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Bound on remembered addresses; expired windows are dropped beyond it.
const MAX_TRACKED: usize = 100_000;

/// The failed attempts per client address.
#[derive(Default)]
pub struct Failures {
    by_client: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// The address failures are counted under: IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Failures {
    /// How long `ip` must still wait, if it has failed too often.
    pub fn refused_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let map = self.by_client.lock().unwrap_or_else(PoisonError::into_inner);
        let (started, count) = *map.get(&client_key(ip))?;
        let age = now.duration_since(started);
        (age < WINDOW && count >= MAX_FAILURES).then(|| WINDOW - age)
    }

    pub fn record(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.by_client.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(client_key(ip)).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if map.len() > MAX_TRACKED {
            map.retain(|_, (started, _)| now.duration_since(*started) < WINDOW);
        }
    }
}

/// Keeps the failure count of one router's API (so of one web server) in the requests'
/// extensions, for [`ApiToken`].
pub fn failure_count(router: axum::Router<AppState>) -> axum::Router<AppState> {
    router.layer(axum::Extension(Arc::new(Failures::default())))
}

/// A request carrying a live API token that may make this request: every API handler
/// takes one first, so none runs without it. Holds the token's name.
pub struct ApiToken(pub String);

impl FromRequestParts<AppState> for ApiToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<ApiToken, Response> {
        let Some(failures) = parts.extensions.get::<Arc<Failures>>().cloned() else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the API's failure count is not set up",
            )
            .into_response());
        };
        let ip = parts
            .extensions
            .get::<Client>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.peer.ip());
        let token = check(app, &failures, ip, &parts.headers).await?;
        if token.access == Access::ReadOnly && !matches!(parts.method, Method::GET | Method::HEAD) {
            tracing::info!(peer = %ip, token = %token.name, method = %parts.method, "API change refused: read-only token");
            return Err(challenged(
                StatusCode::FORBIDDEN,
                r#"Bearer realm="tern", error="insufficient_scope", error_description="the token is read-only""#,
                &format!(
                    "the API token {} is read-only: it may only read (GET); make a token with full access to change \
                     anything",
                    token.name
                ),
            ));
        }
        Ok(ApiToken(token.name))
    }
}

/// The token of an `Authorization: Bearer` header. The scheme is case-insensitive
/// (RFC 9110 §11.1); the token is the rest, without surrounding spaces.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The challenge of RFC 6750 §3 when the request carried no token: no error code (§3.1).
const NO_TOKEN: &str = r#"Bearer realm="tern""#;
const UNKNOWN_TOKEN: &str =
    r#"Bearer realm="tern", error="invalid_token", error_description="the token is unknown or revoked""#;
const EXPIRED_TOKEN: &str = r#"Bearer realm="tern", error="invalid_token", error_description="the token expired""#;

/// An error answer with its `WWW-Authenticate` challenge.
fn challenged(status: StatusCode, challenge: &'static str, message: &str) -> Response {
    let mut response = ApiError::new(status, message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

async fn check(app: &AppState, failures: &Failures, ip: IpAddr, headers: &HeaderMap) -> Result<Token, Response> {
    if let Some(wait) = failures.refused_for(ip) {
        let seconds = wait.as_secs().max(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests with a wrong API token from this address; try again in {seconds} seconds"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Err(response);
    }
    let Some(secret) = bearer(headers) else {
        return Err(challenged(
            StatusCode::UNAUTHORIZED,
            NO_TOKEN,
            "send an API token as `Authorization: Bearer TOKEN` (make one with `tern admin token create NAME`)",
        ));
    };
    match tern_admin::tokens::authenticate(app.store.as_ref(), secret).await {
        Ok(Checked::Valid(token)) => Ok(token),
        // Not counted as a failure: the script once had a good token, it is not guessing.
        Ok(Checked::Expired(token)) => {
            tracing::info!(peer = %ip, token = %token.name, "API request with an expired token refused");
            Err(challenged(
                StatusCode::UNAUTHORIZED,
                EXPIRED_TOKEN,
                &format!(
                    "the API token {} expired on {}; make a new one with `tern admin token create NAME`",
                    token.name,
                    tern_migrate::report::timestamp(token.expires.unwrap_or_default())
                ),
            ))
        }
        Ok(Checked::Unknown) => {
            failures.record(ip);
            tracing::info!(peer = %ip, "API request with an unknown or revoked token refused");
            Err(challenged(
                StatusCode::UNAUTHORIZED,
                UNKNOWN_TOKEN,
                "the API token is unknown or revoked; make a new one with `tern admin token create NAME`",
            ))
        }
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_address_and_per_ipv6_network() {
        let f = Failures::default();
        let a: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2::99".parse().unwrap();
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            f.record(a);
        }
        assert_eq!(f.refused_for(same_net), None);
        f.record(same_net);
        let wait = f.refused_for(a).expect("refused after the limit");
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(60));
        assert_eq!(f.refused_for(other), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_others_are_not_bearer() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  tern_abc "));
        assert_eq!(bearer(&h), Some("tern_abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
        assert_eq!(bearer(&h), None);
    }
}
