//! Outlook's Autodiscover for internet mail accounts ([MS-OXDSCLI], the "POX" protocol):
//! Outlook 2010 and later, and the Microsoft 365 apps, POST the address to
//! `https://DOMAIN/autodiscover/autodiscover.xml`, then to `https://autodiscover.DOMAIN/
//! autodiscover/autodiscover.xml` (or wherever the `_autodiscover._tcp` SRV record
//! points), and take the IMAP, POP3 and SMTP settings from the answer.
//!
//! Newer Outlooks first ask Autodiscover v2 (`GET /autodiscover/autodiscover.json?Email=
//! …&Protocol=AutodiscoverV1`, a JSON pointer to the POX service); it is answered here
//! for `AutodiscoverV1` only: Tern speaks no Exchange protocol (ActiveSync, EWS, REST).
//!
//! The request is parsed with quick-xml, which expands no external entities and reads no
//! DTD. A request that is not the POX schema's `Autodiscover/Request/EMailAddress` gets
//! the POX `Error` answer (code 600), never a server error.

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, Event};
use quick_xml::reader::Reader;
use tern_net::endpoints::{ClientEndpoints, Endpoint, Protocol, Security};

use crate::AppState;
use crate::autoconfig::{Target, TargetError, target, text_element};

/// The POX response schema Outlook asks for and Tern answers in.
pub const OUTLOOK_RESPONSE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
/// The namespace of the answer's outer element.
const RESPONSE_NAMESPACE: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";

/// The POX service's paths (Outlook capitalises it; the lower-case form is what the
/// SRV-record path and most documentation use).
pub const POX_PATHS: [&str; 2] = ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"];
/// Autodiscover v2.
pub const JSON_PATH: &str = "/autodiscover/autodiscover.json";

/// A request body larger than this is not an Autodiscover request (a real one is a few
/// hundred bytes).
const MAX_REQUEST: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for path in POX_PATHS {
        router = router.route(path, get(pox_get).post(pox));
    }
    // Read no more than a request can be (the web listeners' own limit is for uploads).
    router = router.route_layer(DefaultBodyLimit::max(MAX_REQUEST));
    router
        .route(JSON_PATH, get(json))
        .route("/Autodiscover/Autodiscover.json", get(json))
        // Outlook's own form: the address in the path.
        .route("/autodiscover/autodiscover.json/v1.0/{email}", get(json_in_path))
        .route("/Autodiscover/Autodiscover.json/v1.0/{email}", get(json_in_path))
}

/// Whether a request is a POST to the POX service: Outlook sends no `Origin` and no
/// cookie, so the CSRF guard lets it through. Nothing is changed by it and nothing
/// private is answered.
pub fn is_pox_post(method: &Method, path: &str) -> bool {
    *method == Method::POST && POX_PATHS.contains(&path)
}

// --- POX ---------------------------------------------------------------------------------

/// [MS-OXDSCLI] §2.2.4.1.1.3.1's error codes this service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoxError {
    /// 500: the address's domain is not served here.
    UnknownAddress,
    /// 600: the request is not well-formed XML of the request schema.
    InvalidRequest,
    /// 601: another response schema was asked for (ActiveSync's mobilesync schema).
    UnsupportedSchema,
}

impl PoxError {
    pub fn code(self) -> u16 {
        match self {
            PoxError::UnknownAddress => 500,
            PoxError::InvalidRequest => 600,
            PoxError::UnsupportedSchema => 601,
        }
    }

    fn message(self) -> &'static str {
        match self {
            PoxError::UnknownAddress => "The email address cannot be found",
            PoxError::InvalidRequest => "Invalid Request",
            PoxError::UnsupportedSchema => "The requested response schema is not available",
        }
    }
}

/// What the request asked: the address, and the response schema if it named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoxRequest {
    pub email: String,
    pub schema: Option<String>,
}

/// Parses `<Autodiscover><Request><EMailAddress>…</EMailAddress>
/// <AcceptableResponseSchema>…</AcceptableResponseSchema></Request></Autodiscover>`
/// ([MS-OXDSCLI] §2.2.4.1). Elements are matched by local name (clients differ in how
/// they spell the namespace); exactly one `Request` with one `EMailAddress` is required.
pub fn parse_request(body: &[u8]) -> Result<PoxRequest, PoxError> {
    let text = std::str::from_utf8(body).map_err(|_| PoxError::InvalidRequest)?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut requests = 0;
    let mut email: Option<String> = None;
    let mut schema: Option<String> = None;
    let mut text_buf = String::new();
    loop {
        match reader.read_event().map_err(|_| PoxError::InvalidRequest)? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_string();
                let depth = path.len();
                let ok = match depth {
                    0 => name == "Autodiscover",
                    _ => true,
                };
                if !ok {
                    return Err(PoxError::InvalidRequest);
                }
                if depth == 1 && name == "Request" {
                    requests += 1;
                }
                path.push(name);
                text_buf.clear();
            }
            Event::Empty(e) => {
                if path.is_empty() {
                    return Err(PoxError::InvalidRequest);
                }
                if path.len() == 1 && e.local_name().as_ref() == "Request" {
                    requests += 1;
                }
            }
            Event::Text(t) => text_buf.push_str(&t.xml10_content()),
            Event::CData(t) => text_buf.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                // Character references and the five predefined entities only: no DTD
                // is read, so any other entity is undefined (XML 1.0 §4.1, WFC: Entity
                // Declared).
                if let Some(c) = r.resolve_char_ref().map_err(|_| PoxError::InvalidRequest)? {
                    text_buf.push(c);
                } else {
                    let name = r.xml10_content();
                    let value = quick_xml::escape::resolve_predefined_entity(&name).ok_or(PoxError::InvalidRequest)?;
                    text_buf.push_str(value);
                }
            }
            Event::End(_) => {
                let in_request = path.len() == 3 && path[0] == "Autodiscover" && path[1] == "Request";
                if in_request {
                    let slot = match path[2].as_str() {
                        "EMailAddress" => Some(&mut email),
                        "AcceptableResponseSchema" => Some(&mut schema),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        if slot.is_some() {
                            return Err(PoxError::InvalidRequest);
                        }
                        *slot = Some(text_buf.trim().to_string());
                    }
                }
                path.pop();
                text_buf.clear();
            }
            Event::DocType(_) => return Err(PoxError::InvalidRequest),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !path.is_empty() || requests != 1 {
        return Err(PoxError::InvalidRequest);
    }
    match email {
        Some(email) if !email.is_empty() => Ok(PoxRequest { email, schema }),
        _ => Err(PoxError::InvalidRequest),
    }
}

/// GET of the POX service: not an Autodiscover request (Exchange answers it the same).
async fn pox_get() -> Response {
    pox_error_response(StatusCode::BAD_REQUEST, PoxError::InvalidRequest)
}

async fn pox(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(e) => return pox_error_response(StatusCode::BAD_REQUEST, e),
    };
    if let Some(schema) = &request.schema
        && schema != OUTLOOK_RESPONSE_SCHEMA
    {
        return pox_error_response(StatusCode::OK, PoxError::UnsupportedSchema);
    }
    let target = match target(&app, &headers, Some(&request.email)).await {
        Ok(target) => target,
        Err(TargetError::BadAddress(_)) => {
            return pox_error_response(StatusCode::BAD_REQUEST, PoxError::InvalidRequest);
        }
        Err(e @ TargetError::Store) => return e.into_response(),
        Err(_) => return pox_error_response(StatusCode::NOT_FOUND, PoxError::UnknownAddress),
    };
    let endpoints = app.endpoints();
    if endpoints.of(Protocol::Imap).is_empty() && endpoints.of(Protocol::Pop3).is_empty() {
        return crate::autoconfig::no_client_ports();
    }
    crate::autoconfig::xml_response(StatusCode::OK, pox_settings(&endpoints, &target))
}

fn pox_error_response(status: StatusCode, error: PoxError) -> Response {
    crate::autoconfig::xml_response(status, pox_error(error))
}

/// `on` / `off`, POX's booleans.
fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The settings answer ([MS-OXDSCLI] §2.2.4.2.1.1): `Account` of type `email` with
/// action `settings`, then one `Protocol` per kind: IMAP, POP3 (Outlook takes the first
/// incoming protocol it knows, so IMAP leads) and SMTP, each with the recommended
/// endpoint (implicit TLS where offered, RFC 8314 §3). `SSL` is on for both TLS modes and
/// `Encryption` says which (`SSL`: TLS from the first byte, `TLS`: STARTTLS); it takes
/// precedence over `SSL` in the Outlooks that know it. Logins are the whole address, in
/// clear inside TLS (`SPA` off), and SMTP needs one (`AuthRequired`, `UsePOPAuth`: the
/// same credentials).
pub fn pox_settings(endpoints: &ClientEndpoints, target: &Target) -> Vec<u8> {
    let login = target.address.clone().unwrap_or_default();
    pox_answer("settings", |w| {
        w.create_element("Response")
            .with_attribute(("xmlns", OUTLOOK_RESPONSE_SCHEMA))
            .write_inner_content(|w| {
                w.create_element("Account").write_inner_content(|w| {
                    text_element(w, "AccountType", "email")?;
                    text_element(w, "Action", "settings")?;
                    for protocol in [Protocol::Imap, Protocol::Pop3, Protocol::Submission] {
                        if let Some(e) = endpoints.preferred(protocol) {
                            pox_protocol(w, &endpoints.hostname, e, &login)?;
                        }
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
        Ok(())
    })
}

/// A POX answer: the XML declaration and the `Autodiscover` root of the response
/// namespace around what `body` writes. (Writing to memory cannot fail; a failure is
/// logged and the answer is what was written.)
fn pox_answer(what: &str, body: impl FnOnce(&mut Writer<Vec<u8>>) -> std::io::Result<()>) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let result: std::io::Result<()> = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))?;
        w.create_element("Autodiscover")
            .with_attribute(("xmlns", RESPONSE_NAMESPACE))
            .write_inner_content(body)?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, answer = what, "autodiscover: cannot write the answer");
    }
    w.into_inner()
}

fn pox_protocol(w: &mut Writer<Vec<u8>>, host: &str, e: Endpoint, login: &str) -> std::io::Result<()> {
    w.create_element("Protocol").write_inner_content(|w| {
        let kind = match e.protocol {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
            Protocol::Submission => "SMTP",
        };
        text_element(w, "Type", kind)?;
        text_element(w, "Server", host)?;
        text_element(w, "Port", &e.port.to_string())?;
        text_element(w, "DomainRequired", "off")?;
        if !login.is_empty() {
            text_element(w, "LoginName", login)?;
        }
        text_element(w, "SPA", "off")?;
        text_element(w, "SSL", on(true))?;
        let encryption = match e.security {
            Security::Tls => "SSL",
            Security::StartTls => "TLS",
        };
        text_element(w, "Encryption", encryption)?;
        text_element(w, "AuthRequired", on(true))?;
        if e.protocol == Protocol::Submission {
            text_element(w, "UsePOPAuth", on(true))?;
            text_element(w, "SMTPLast", on(false))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The POX `Error` answer ([MS-OXDSCLI] §2.2.4.2.1.2): the time of day and an id (a
/// hash of nothing secret: the code), a code and a message.
pub fn pox_error(error: PoxError) -> Vec<u8> {
    let now = chrono::Utc::now().format("%H:%M:%S%.6f").to_string();
    pox_answer("error", |w| {
        w.create_element("Response").write_inner_content(|w| {
            w.create_element("Error")
                .with_attribute(("Time", now.as_str()))
                .with_attribute(("Id", error.code().to_string().as_str()))
                .write_inner_content(|w| {
                    text_element(w, "ErrorCode", &error.code().to_string())?;
                    text_element(w, "Message", error.message())?;
                    w.create_element("DebugData").write_empty()?;
                    Ok(())
                })?;
            Ok(())
        })?;
        Ok(())
    })
}

// --- Autodiscover v2 (JSON) ------------------------------------------------------------------

/// The one protocol v2 points at here.
const AUTODISCOVER_V1: &str = "AutodiscoverV1";

/// A query parameter by name, matched case-insensitively (Outlook writes `Email` and
/// `Protocol`, scripts often `email` and `protocol`).
fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<Cow<'a, str>> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key.eq_ignore_ascii_case(name)
            .then(|| Cow::Owned(crate::page::form_decode(value.as_bytes())))
    })
}

async fn json(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let email = query_param(&uri, "Email").map(Cow::into_owned);
    v2(&app, &headers, &uri, email).await
}

async fn json_in_path(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(email): Path<String>,
) -> Response {
    v2(&app, &headers, &uri, Some(email)).await
}

fn v2_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({ "ErrorCode": code, "ErrorMessage": message });
    json_response(status, body)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Autodiscover v2: `{"Protocol":"AutodiscoverV1","Url":…}` pointing at this domain's
/// POX service. Any other protocol is refused as Exchange Online refuses an unknown one:
/// HTTP 400, `InvalidProtocol`. An address that is not of a hosted domain: 404.
async fn v2(app: &AppState, headers: &HeaderMap, uri: &Uri, email: Option<String>) -> Response {
    let protocol = query_param(uri, "Protocol").map(Cow::into_owned).unwrap_or_default();
    if !protocol.eq_ignore_ascii_case(AUTODISCOVER_V1) {
        // Echo only what is safe to show: letters and digits.
        let shown: String = protocol.chars().filter(char::is_ascii_alphanumeric).take(64).collect();
        return v2_error(
            StatusCode::BAD_REQUEST,
            "InvalidProtocol",
            format!("The given protocol value '{shown}' is invalid. Supported values are '{AUTODISCOVER_V1}'"),
        );
    }
    let Some(email) = email.filter(|e| !e.trim().is_empty()) else {
        return v2_error(
            StatusCode::BAD_REQUEST,
            "InvalidUser",
            "An email address is needed (Email=…)".into(),
        );
    };
    let target = match target(app, headers, Some(&email)).await {
        Ok(target) => target,
        Err(e @ TargetError::BadAddress(_)) => return v2_error(e.status(), "InvalidUser", e.to_string()),
        Err(e @ TargetError::Store) => return v2_error(e.status(), "InternalServerError", e.to_string()),
        Err(e) => return v2_error(StatusCode::NOT_FOUND, "UserNotFound", e.to_string()),
    };
    let endpoints = app.endpoints();
    let port = match endpoints.https {
        Some(443) | None => String::new(),
        Some(port) => format!(":{port}"),
    };
    json_response(
        StatusCode::OK,
        serde_json::json!({
            "Protocol": AUTODISCOVER_V1,
            "Url": format!("https://autodiscover.{}{port}/autodiscover/autodiscover.xml", target.domain),
        }),
    )
}
