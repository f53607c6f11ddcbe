//! OAuth 2.0 for XOAUTH2 sources (Gmail, Microsoft 365): turning a mailbox's refresh
//! token into access tokens at the provider's token endpoint (RFC 6749 §6), as often as
//! they expire. Providers that rotate refresh tokens (Microsoft does) hand back a new
//! one with each access token; it is kept so the worker can store it sealed, since the
//! old one may stop working.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::MigrateError;

/// The provider's OAuth client that the administrator registered for the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthClient {
    /// e.g. https://oauth2.googleapis.com/token
    pub token_endpoint: String,
    pub client_id: String,
}

/// Renew this long before the provider's `expires_in` runs out.
const MARGIN: Duration = Duration::from_secs(120);
/// Assumed lifetime when the provider does not say (RFC 6749 §5.1 makes it optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// The token endpoint's answer (RFC 6749 §5.1), or its error (§5.2).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// One mailbox's refresh token and the access token it last gave.
pub struct OAuthSession {
    client: OAuthClient,
    client_secret: Option<String>,
    refresh_token: Mutex<String>,
    /// A refresh token the provider rotated to, not yet stored.
    rotated: Mutex<Option<String>>,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OAuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and the client secret stay out of logs.
        f.debug_struct("OAuthSession").field("client", &self.client).finish()
    }
}

impl OAuthSession {
    pub fn new(
        client: OAuthClient,
        client_secret: Option<String>,
        refresh_token: String,
        tls: rustls::ClientConfig,
    ) -> Result<OAuthSession, MigrateError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| MigrateError::Config(format!("cannot set up the OAuth client: {e}")))?;
        Ok(OAuthSession {
            client,
            client_secret,
            refresh_token: Mutex::new(refresh_token),
            rotated: Mutex::new(None),
            cached: tokio::sync::Mutex::new(None),
            http,
        })
    }

    /// A valid access token, renewed when the last one is about to expire.
    pub async fn access_token(&self) -> Result<String, MigrateError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let refresh = self.refresh_token.lock().map(|r| r.clone()).unwrap_or_default();
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh),
            ("client_id", self.client.client_id.clone()),
        ];
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.clone()));
        }
        let endpoint = &self.client.token_endpoint;
        let fail = |reason: String| MigrateError::Login {
            host: endpoint.clone(),
            reason,
        };
        let response = self
            .http
            .post(endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| fail(format!("the token endpoint cannot be reached: {e}")))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| fail(e.to_string()))?;
        let parsed: TokenResponse = serde_json::from_str(&body).map_err(|_| {
            fail(format!(
                "the token endpoint answered {status} without a JSON token response"
            ))
        })?;
        let Some(access) = parsed.access_token.filter(|_| status.is_success()) else {
            return Err(fail(format!(
                "the refresh token was refused ({}{}); add a new one with tern migrate add --refresh-token-stdin",
                parsed.error.unwrap_or_else(|| status.to_string()),
                parsed.error_description.map(|d| format!(": {d}")).unwrap_or_default()
            )));
        };
        if let Some(new) = parsed.refresh_token {
            if let Ok(mut r) = self.refresh_token.lock() {
                *r = new.clone();
            }
            if let Ok(mut r) = self.rotated.lock() {
                *r = Some(new);
            }
        }
        let lifetime = parsed.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_LIFETIME);
        *cached = Some((access.clone(), Instant::now() + lifetime.saturating_sub(MARGIN)));
        Ok(access)
    }

    /// The refresh token the provider rotated to, if it did, once.
    pub fn take_rotated(&self) -> Option<String> {
        self.rotated.lock().ok().and_then(|mut r| r.take())
    }
}
