//! Thunderbird's autoconfig (also read by Thunderbird for Android / K-9 Mail, Evolution,
//! KMail and others): the `clientConfig` document telling a client the servers, ports and
//! TLS modes of a domain's mail, so the user types only an address and a password.
//!
//! Clients look for it, in order, at `https://autoconfig.DOMAIN/mail/config-v1.1.xml?
//! emailaddress=ADDRESS`, at `https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml`,
//! then the same over plain `http://`. The document holds no secret and no account data
//! (it is the same for every address of a domain, so it tells nobody which accounts
//! exist), which is why it is one of the few documents served over plain HTTP
//! ([`served_over_plain_http`]).
//!
//! This module also decides which hosted domain a client-configuration request is about
//! ([`target`]), for autodiscover, the Apple profile, the setup page and MTA-STS too.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use serde::Deserialize;
use tern_net::endpoints::{ClientEndpoints, Endpoint, Protocol, Security};
use tern_store::EmailAddress;
use tracing::warn;

use crate::AppState;

/// The path Thunderbird asks `autoconfig.DOMAIN` for.
pub const AUTOCONFIG_PATH: &str = "/mail/config-v1.1.xml";
/// The path Thunderbird asks the domain itself for.
pub const WELL_KNOWN_AUTOCONFIG_PATH: &str = "/.well-known/autoconfig/mail/config-v1.1.xml";
/// Where MTA-STS policies live (RFC 8461 §3.3).
pub const MTA_STS_PATH: &str = "/.well-known/mta-sts.txt";
/// Where an ACME server fetches HTTP-01 challenges (RFC 8555 §8.3): served over plain
/// HTTP by definition.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(AUTOCONFIG_PATH, get(autoconfig))
        .route(WELL_KNOWN_AUTOCONFIG_PATH, get(autoconfig))
}

/// Whether a request may be answered over plain HTTP from anywhere: only the public,
/// password-free documents clients and other servers fetch that way: Thunderbird's
/// autoconfig (it tries `http://` when `https://` fails), the MTA-STS policy, and ACME
/// HTTP-01 challenges. Everything else (webmail, the setup page, autodiscover, which
/// carries an address in a POST) is sent to HTTPS by `session::require_tls`.
pub fn served_over_plain_http(method: &Method, path: &str) -> bool {
    (*method == Method::GET || *method == Method::HEAD)
        && (path == AUTOCONFIG_PATH
            || path == WELL_KNOWN_AUTOCONFIG_PATH
            || path == MTA_STS_PATH
            || path.starts_with(ACME_CHALLENGE_PREFIX))
}

// --- Which domain a request is about ----------------------------------------------------

/// The hosted domain a client-configuration request is about, and the address it names.
#[derive(Debug, Clone)]
pub struct Target {
    pub domain: String,
    /// The address, normalised (domain lower-cased), when the request carried one.
    pub address: Option<String>,
    /// `false` while the domain's mail still goes to the old provider (a migration
    /// before its switch): `Store::domain_receiving`.
    pub receiving: bool,
}

/// Why a request names no hosted domain.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?} is not an email address")]
    BadAddress(String),
    #[error("an email address is needed (?emailaddress=you@example.org)")]
    NoAddress,
    #[error("{0} is not a domain hosted here")]
    NotHosted(String),
    #[error("{address} does not belong to {domain}, the domain this address serves")]
    OtherDomain { address: String, domain: String },
    #[error("the mail store could not answer; try again in a moment")]
    Store,
}

impl TargetError {
    pub fn status(&self) -> StatusCode {
        match self {
            TargetError::BadAddress(_) | TargetError::NoAddress => StatusCode::BAD_REQUEST,
            TargetError::NotHosted(_) | TargetError::OtherDomain { .. } => StatusCode::NOT_FOUND,
            TargetError::Store => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for TargetError {
    fn into_response(self) -> Response {
        plain(self.status(), format!("{self}\n"))
    }
}

/// A `text/plain` answer.
pub(crate) fn plain(status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The Host header's name: lower-case, without port or trailing dot.
pub fn host_name(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?.trim();
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// The names clients put in front of a mail domain to find its configuration.
const SERVICE_PREFIXES: [&str; 3] = ["autoconfig.", "autodiscover.", "mta-sts."];

/// Whether a domain is hosted here: `Some(receiving)`, or `None`.
async fn hosted(app: &AppState, domain: &str) -> Result<Option<bool>, TargetError> {
    app.store.domain_receiving(domain).await.map_err(|e| {
        warn!(error = %e, "client configuration: cannot look up a domain");
        TargetError::Store
    })
}

/// Which hosted domain a request is about. The Host header decides when it is
/// `autoconfig.DOMAIN`, `autodiscover.DOMAIN`, `mta-sts.DOMAIN` or a hosted domain itself
/// (Thunderbird's `.well-known` lookup); on any other name (the mail host name, an IP
/// address) the address decides. An address, when given, must be well-formed, of a
/// hosted domain, and of the Host's domain when the Host names one. Whether the account
/// exists is not looked at: the answer is the same for every address of a domain.
pub async fn target(app: &AppState, headers: &HeaderMap, address: Option<&str>) -> Result<Target, TargetError> {
    let host = host_name(headers).unwrap_or_default();
    let mut host_domain = None;
    if let Some(rest) = SERVICE_PREFIXES.iter().find_map(|p| host.strip_prefix(p)) {
        match hosted(app, rest).await? {
            Some(receiving) => host_domain = Some((rest.to_string(), receiving)),
            None => return Err(TargetError::NotHosted(rest.to_string())),
        }
    } else if tern_store::normalise_domain(&host).as_deref() == Some(host.as_str())
        && let Some(receiving) = hosted(app, &host).await?
    {
        host_domain = Some((host.clone(), receiving));
    }
    let address = address.map(str::trim).filter(|a| !a.is_empty());
    match (address, host_domain) {
        (None, Some((domain, receiving))) => Ok(Target {
            domain,
            address: None,
            receiving,
        }),
        (None, None) => Err(TargetError::NoAddress),
        (Some(raw), host_domain) => {
            let parsed = EmailAddress::parse(raw).map_err(|_| TargetError::BadAddress(raw.to_string()))?;
            let address = parsed.to_string();
            if let Some((domain, _)) = &host_domain
                && *domain != parsed.domain
            {
                return Err(TargetError::OtherDomain {
                    address,
                    domain: domain.clone(),
                });
            }
            match hosted(app, &parsed.domain).await? {
                Some(receiving) => Ok(Target {
                    domain: parsed.domain,
                    address: Some(address),
                    receiving,
                }),
                None => Err(TargetError::NotHosted(parsed.domain)),
            }
        }
    }
}

// --- The document ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct AutoconfigParams {
    emailaddress: Option<String>,
}

async fn autoconfig(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<AutoconfigParams>,
) -> Response {
    let target = match target(&app, &headers, params.emailaddress.as_deref()).await {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let endpoints = app.endpoints();
    if endpoints.of(Protocol::Imap).is_empty() && endpoints.of(Protocol::Pop3).is_empty() {
        return no_client_ports();
    }
    xml_response(StatusCode::OK, client_config(&endpoints, &target.domain))
}

/// The answer when no IMAP or POP3 port is configured: nothing a client could use.
pub(crate) fn no_client_ports() -> Response {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "this server has no IMAP or POP3 port configured, so there is nothing to set a mail client up with\n".into(),
    )
}

/// An XML document as a response, never cached by proxies (it follows the config).
pub(crate) fn xml_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    response
}

/// Thunderbird's `socketType` for a TLS mode.
fn socket_type(security: Security) -> &'static str {
    match security {
        Security::Tls => "SSL",
        Security::StartTls => "STARTTLS",
    }
}

/// The `clientConfig` document (Thunderbird's "Autoconfig file format", version 1.1): one
/// `incomingServer` per IMAP and POP3 endpoint, IMAP first and implicit TLS before
/// STARTTLS (the order clients try them in), one `outgoingServer` per submission endpoint.
/// The user name is the whole address (`%EMAILADDRESS%`, filled in by the client);
/// passwords go in clear inside TLS (`password-cleartext`, SASL PLAIN or LOGIN).
pub fn client_config(endpoints: &ClientEndpoints, domain: &str) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail; the results are still checked, not unwrapped.
    let result: std::io::Result<()> = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("clientConfig")
            .with_attribute(("version", "1.1"))
            .write_inner_content(|w| {
                w.create_element("emailProvider")
                    .with_attribute(("id", domain))
                    .write_inner_content(|w| {
                        text_element(w, "domain", domain)?;
                        text_element(w, "displayName", &format!("{domain} mail"))?;
                        text_element(w, "displayShortName", domain.split('.').next().unwrap_or(domain))?;
                        let incoming = endpoints
                            .of(Protocol::Imap)
                            .into_iter()
                            .chain(endpoints.of(Protocol::Pop3));
                        for e in incoming {
                            let kind = if e.protocol == Protocol::Imap { "imap" } else { "pop3" };
                            server(w, "incomingServer", kind, &endpoints.hostname, e)?;
                        }
                        for e in endpoints.of(Protocol::Submission) {
                            server(w, "outgoingServer", "smtp", &endpoints.hostname, e)?;
                        }
                        Ok(())
                    })?;
                Ok(())
            })?;
        Ok(())
    })();
    if let Err(e) = result {
        warn!(error = %e, "autoconfig: cannot write the document");
    }
    let mut out = w.into_inner();
    out.push(b'\n');
    out
}

fn server(w: &mut Writer<Vec<u8>>, element: &str, kind: &str, host: &str, e: Endpoint) -> std::io::Result<()> {
    w.create_element(element)
        .with_attribute(("type", kind))
        .write_inner_content(|w| {
            text_element(w, "hostname", host)?;
            text_element(w, "port", &e.port.to_string())?;
            text_element(w, "socketType", socket_type(e.security))?;
            text_element(w, "authentication", "password-cleartext")?;
            text_element(w, "username", "%EMAILADDRESS%")?;
            Ok(())
        })?;
    Ok(())
}

/// `<name>text</name>`, the text escaped.
pub(crate) fn text_element(w: &mut Writer<Vec<u8>>, name: &str, text: &str) -> std::io::Result<()> {
    w.create_element(name).write_text_content(BytesText::new(text))?;
    Ok(())
}
