//! The MTA-STS policy of each hosted domain (RFC 8461), served at
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (§3.3): sending servers that support
//! MTA-STS read it and then deliver to the domain only over TLS to this host with a
//! valid certificate. The policy itself (mode, max_age) is tern-dns's, the same one
//! `tern dns records` tells the administrator to announce in the `_mta-sts` TXT record.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::autoconfig::{MTA_STS_PATH, host_name, plain};

pub fn routes() -> Router<AppState> {
    Router::new().route(MTA_STS_PATH, get(policy))
}

/// The policy for `mta-sts.DOMAIN` when DOMAIN is hosted here; 404 on any other name
/// (RFC 8461 §3.3: the policy host is `mta-sts` plus the Policy Domain, and nothing else
/// answers for it).
async fn policy(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let host = host_name(&headers).unwrap_or_default();
    let Some(domain) = host.strip_prefix("mta-sts.") else {
        return plain(
            StatusCode::NOT_FOUND,
            "MTA-STS policies are served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt\n".into(),
        );
    };
    match app.store.domain_receiving(domain).await {
        Ok(Some(_)) => {}
        Ok(None) => return plain(StatusCode::NOT_FOUND, format!("{domain} is not a domain hosted here\n")),
        Err(e) => {
            tracing::warn!(error = %e, "MTA-STS: cannot look up a domain");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the mail store could not answer; try again in a moment\n".into(),
            );
        }
    }
    // RFC 8461 §3.2: the policy body; §3.3: media type text/plain. Its max_age tells
    // senders how long to keep it, so HTTP caching adds nothing but staleness.
    let mut response = (StatusCode::OK, tern_dns::records::mta_sts_policy(&app.config.hostname)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
