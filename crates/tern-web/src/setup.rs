//! The setup page (`/setup`, no login needed): a user enters their address, picks their
//! mail app and gets numbered steps with this server's exact names, ports and security
//! settings, or the one-click way where the app has one (an Apple profile with a QR code
//! for the phone; Thunderbird and Outlook find everything from the address). It explains
//! setting the account up before the switch to Tern, and says when the move is under
//! way. An optional password check tells "works" or "wrong password" (over TLS only,
//! through the shared `Authenticator`, so its limits apply; the password is never
//! logged). Outlook 2007, which has no autodiscover for IMAP, gets a profile file
//! (`/setup/outlook.prf`, imported with `outlook.exe /importprf`).
//!
//! Server-rendered, no script: the address and the app are a GET form, so every state
//! of the page is a link.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tern_net::auth::LoginError;
use tern_net::endpoints::{ClientEndpoints, Endpoint, Protocol, Security};

use crate::autoconfig::{Target, TargetError, plain, target};
use crate::mail::{field, form_pairs};
use crate::page::{render, url_encode};
use crate::{AppState, Client};

pub const PATH: &str = "/setup";
pub const PRF_PATH: &str = "/setup/outlook.prf";
/// The connection check page (tern doctor in the browser), built elsewhere.
pub const CHECK_PATH: &str = "/setup/check";
/// The largest password-check form taken.
const MAX_FORM: usize = 16 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(page).post(check_password))
        .route(PRF_PATH, get(outlook_prf))
        // The password form is a few hundred bytes.
        .route_layer(DefaultBodyLimit::max(MAX_FORM))
}

/// The mail apps the page has steps for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailApp {
    Outlook,
    Outlook2007,
    Thunderbird,
    AppleMail,
    IPhone,
    AndroidGmail,
    AndroidThunderbird,
    WindowsMail,
    Other,
}

impl MailApp {
    pub const ALL: [MailApp; 9] = [
        MailApp::Outlook,
        MailApp::Outlook2007,
        MailApp::Thunderbird,
        MailApp::AppleMail,
        MailApp::IPhone,
        MailApp::AndroidGmail,
        MailApp::AndroidThunderbird,
        MailApp::WindowsMail,
        MailApp::Other,
    ];

    /// Its name in URLs (`?client=`).
    pub fn slug(self) -> &'static str {
        match self {
            MailApp::Outlook => "outlook",
            MailApp::Outlook2007 => "outlook-2007",
            MailApp::Thunderbird => "thunderbird",
            MailApp::AppleMail => "apple-mail",
            MailApp::IPhone => "iphone",
            MailApp::AndroidGmail => "android-gmail",
            MailApp::AndroidThunderbird => "android-thunderbird",
            MailApp::WindowsMail => "windows-mail",
            MailApp::Other => "other",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MailApp::Outlook => "Outlook 2010 and later, Microsoft 365",
            MailApp::Outlook2007 => "Outlook 2007",
            MailApp::Thunderbird => "Thunderbird",
            MailApp::AppleMail => "Apple Mail (Mac)",
            MailApp::IPhone => "iPhone, iPad",
            MailApp::AndroidGmail => "Android: Gmail app",
            MailApp::AndroidThunderbird => "Android: Thunderbird, K-9 Mail",
            MailApp::WindowsMail => "Windows Mail",
            MailApp::Other => "Another app",
        }
    }

    pub fn from_slug(slug: &str) -> Option<MailApp> {
        MailApp::ALL.into_iter().find(|a| a.slug() == slug)
    }
}

/// One server setting as the page shows it.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// "IMAP", "POP3", "SMTP".
    pub kind: &'static str,
    pub host: String,
    pub port: u16,
    /// "SSL/TLS" or "STARTTLS".
    pub security: &'static str,
    /// TLS from the first byte (rather than STARTTLS).
    pub implicit: bool,
}

impl ServerView {
    fn new(host: &str, e: Endpoint) -> ServerView {
        ServerView {
            kind: e.protocol.label(),
            host: host.to_string(),
            port: e.port,
            security: e.security.label(),
            implicit: e.security == Security::Tls,
        }
    }
}

/// A row of the settings table.
#[derive(Debug, Clone)]
pub struct SettingRow {
    pub role: &'static str,
    pub server: ServerView,
    pub recommended: bool,
}

/// Everything the page says about one address.
pub struct AccountView {
    pub address: String,
    pub domain: String,
    /// The domain's mail still goes to the old provider (a move before its switch).
    pub moving: bool,
    /// The recommended incoming server: IMAP, or POP3 where there is no IMAP.
    pub incoming: Option<ServerView>,
    pub smtp: Option<ServerView>,
    pub rows: Vec<SettingRow>,
    pub profile_url: String,
    /// The profile's absolute https URL, for the phone (QR code); `None` without an
    /// https listener.
    pub profile_https_url: Option<String>,
    /// The QR code of `profile_https_url`, as inline SVG markup.
    pub qr_svg: String,
    pub prf_url: String,
    pub check_url: String,
}

pub struct AppChoice {
    pub slug: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The password check's outcome.
pub struct PasswordResult {
    pub ok: bool,
    pub message: String,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    hostname: String,
    email: String,
    app: &'static str,
    apps: Vec<AppChoice>,
    error: Option<String>,
    account: Option<AccountView>,
    csrf: String,
    password: Option<PasswordResult>,
    insecure: bool,
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    email: Option<String>,
    client: Option<String>,
}

/// The settings the page shows, from the bound endpoints.
pub fn account_view(endpoints: &ClientEndpoints, target: &Target, address: &str) -> AccountView {
    let host = &endpoints.hostname;
    let incoming = endpoints
        .preferred(Protocol::Imap)
        .or_else(|| endpoints.preferred(Protocol::Pop3))
        .map(|e| ServerView::new(host, e));
    let smtp = endpoints
        .preferred(Protocol::Submission)
        .map(|e| ServerView::new(host, e));
    let mut rows = Vec::new();
    for (protocol, role) in [
        (Protocol::Imap, "Incoming mail (IMAP)"),
        (Protocol::Pop3, "Incoming mail (POP3)"),
        (Protocol::Submission, "Outgoing mail (SMTP)"),
    ] {
        for (i, e) in endpoints.of(protocol).into_iter().enumerate() {
            rows.push(SettingRow {
                role,
                server: ServerView::new(host, e),
                recommended: i == 0,
            });
        }
    }
    let email = url_encode(address);
    let profile_url = format!("{}?email={email}", crate::mobileconfig::PATH);
    let profile_https_url = endpoints.https.map(|port| {
        let port = if port == 443 { String::new() } else { format!(":{port}") };
        format!("https://{host}{port}{profile_url}")
    });
    let qr_svg = profile_https_url.as_deref().map(qr_svg).unwrap_or_default();
    AccountView {
        address: address.to_string(),
        domain: target.domain.clone(),
        moving: !target.receiving,
        incoming,
        smtp,
        rows,
        profile_url,
        profile_https_url,
        qr_svg,
        prf_url: format!("{PRF_PATH}?email={email}"),
        check_url: format!("{CHECK_PATH}?email={email}"),
    }
}

/// A QR code of `url` as inline SVG (no request leaves the page; the page's CSP allows
/// no outside images anyway). Empty if the URL is too long for a QR code.
pub fn qr_svg(url: &str) -> String {
    let Ok(code) = qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M) else {
        return String::new();
    };
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // The renderer writes a whole document; inside HTML only the <svg> element goes.
    let svg = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
    svg.replacen(
        "<svg ",
        "<svg class=\"qr\" role=\"img\" aria-label=\"QR code: open the profile on your phone\" ",
        1,
    )
}

fn apps(selected: Option<MailApp>) -> Vec<AppChoice> {
    MailApp::ALL
        .into_iter()
        .map(|a| AppChoice {
            slug: a.slug(),
            label: a.label(),
            selected: Some(a) == selected,
        })
        .collect()
}

/// The page for an address (if any) and an app (if any).
async fn build(
    app: &AppState,
    client: &Client,
    headers: &HeaderMap,
    email: &str,
    mail_app: Option<MailApp>,
    password: Option<PasswordResult>,
) -> (StatusCode, SetupPage) {
    let mut page = SetupPage {
        hostname: app.config.hostname.clone(),
        email: email.to_string(),
        app: mail_app.map_or("", MailApp::slug),
        apps: apps(mail_app),
        error: None,
        account: None,
        csrf: app.sessions.csrf_of(headers).unwrap_or_default(),
        password,
        insecure: !app.auth.plaintext_allowed(client.peer.ip(), client.tls),
    };
    let email = email.trim();
    if email.is_empty() {
        return (StatusCode::OK, page);
    }
    // The address decides the domain here, whatever name the page was opened by.
    match target_of_address(app, email).await {
        Ok(target) => {
            let address = target.address.clone().unwrap_or_else(|| email.to_string());
            page.email = address.clone();
            page.account = Some(account_view(&app.endpoints(), &target, &address));
            (StatusCode::OK, page)
        }
        Err(e) => {
            let status = e.status();
            page.error = Some(match e {
                TargetError::BadAddress(_) => format!("“{email}” is not an email address. Check how it is written."),
                TargetError::NotHosted(domain) => format!(
                    "Mail for {domain} is not handled by this server. Check the address, or ask whoever runs your mail."
                ),
                other => capitalise(&other.to_string()),
            });
            (status, page)
        }
    }
}

/// The target of an address alone (the setup page is not a client-configuration host:
/// whatever Host it was opened by, the address decides).
async fn target_of_address(app: &AppState, email: &str) -> Result<Target, TargetError> {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("setup.invalid"));
    target(app, &headers, Some(email)).await
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

async fn page(
    State(app): State<AppState>,
    client: axum::Extension<Client>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let mail_app = params.client.as_deref().and_then(MailApp::from_slug);
    let (status, page) = build(
        &app,
        &client,
        &headers,
        params.email.as_deref().unwrap_or(""),
        mail_app,
        None,
    )
    .await;
    let mut response = render(&page);
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    response
}

/// The optional password check: over TLS only (or where `[auth] allow_plaintext` lets
/// passwords travel), through the shared `Authenticator` so failures count against the
/// same limits as every other login. Nothing about the password is logged.
async fn check_password(
    State(app): State<AppState>,
    client: axum::Extension<Client>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = form_pairs(&body);
    let email = field(&pairs, "email").trim().to_string();
    let password = field(&pairs, "password");
    let mail_app = MailApp::from_slug(field(&pairs, "client"));
    let insecure = !app.auth.plaintext_allowed(client.peer.ip(), client.tls);
    let mut status = StatusCode::OK;
    let result = if insecure {
        status = StatusCode::FORBIDDEN;
        PasswordResult {
            ok: false,
            message: "This connection is not encrypted, so the password was not checked. Open this page with an https:// address.".into(),
        }
    } else if password.is_empty() {
        status = StatusCode::BAD_REQUEST;
        PasswordResult {
            ok: false,
            message: "Enter your password to check it.".into(),
        }
    } else if target_of_address(&app, &email).await.is_err() {
        // The page below says what is wrong with the address.
        status = StatusCode::BAD_REQUEST;
        PasswordResult {
            ok: false,
            message: "The password was not checked: the address is not one of this server's.".into(),
        }
    } else {
        match app.auth.login("setup", client.peer.ip(), &email, password).await {
            Ok(_) => PasswordResult {
                ok: true,
                message: "Your password works. Use it in your mail app.".into(),
            },
            Err(LoginError::Invalid) => {
                status = StatusCode::UNAUTHORIZED;
                PasswordResult {
                    ok: false,
                    message: "Wrong password (or this address has no mailbox here). Check it and try again; \
                              your mail app would be refused the same way."
                        .into(),
                }
            }
            Err(e @ LoginError::Throttled { .. }) => {
                status = StatusCode::TOO_MANY_REQUESTS;
                PasswordResult {
                    ok: false,
                    message: capitalise(&e.to_string()),
                }
            }
            Err(e) => {
                status = StatusCode::SERVICE_UNAVAILABLE;
                PasswordResult {
                    ok: false,
                    message: capitalise(&e.to_string()),
                }
            }
        }
    };
    let (page_status, page) = build(&app, &client, &headers, &email, mail_app, Some(result)).await;
    let mut response = render(&page);
    if response.status() == StatusCode::OK {
        *response.status_mut() = if page_status == StatusCode::OK {
            status
        } else {
            page_status
        };
    }
    response
}

// --- Outlook 2007's profile file ---------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct PrfParams {
    email: Option<String>,
}

async fn outlook_prf(State(app): State<AppState>, Query(params): Query<PrfParams>) -> Response {
    let email = params.email.unwrap_or_default();
    if email.trim().is_empty() {
        return plain(
            StatusCode::BAD_REQUEST,
            "a profile is made for one address: add ?email=you@example.org\n".into(),
        );
    }
    let target = match target_of_address(&app, &email).await {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let address = target.address.clone().unwrap_or(email);
    let Some(text) = outlook_profile(&app.endpoints(), &address) else {
        return crate::autoconfig::no_client_ports();
    };
    let mut response = (StatusCode::OK, encode_prf(&text)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let file = format!("attachment; filename=\"{}.prf\"", target.domain);
    if let Ok(value) = HeaderValue::from_str(&file) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// A PRF file is read by Windows' INI functions: plain ASCII is read by every Outlook;
/// anything else goes as UTF-16LE with a byte-order mark, the one Unicode form they
/// read.
pub fn encode_prf(text: &str) -> Vec<u8> {
    if text.is_ascii() {
        return text.as_bytes().to_vec();
    }
    let mut out = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

/// The Outlook profile file (PRF) creating an IMAP account (POP3 where there is no IMAP)
/// for `address`: section 1 (`[General]`: append to the default profile), section 3
/// (the account list), section 5 (the account's values) and section 7 (the fixed map
/// from those names to MAPI properties, as Microsoft's Office Customization Tool
/// writes it). The user name is the whole address; the password is asked for on first
/// use. Encryption: 1 for TLS from the first byte, 2 for STARTTLS (Outlook's "SSL" and
/// "TLS"). CRLF line ends. `None` without an incoming or outgoing port.
pub fn outlook_profile(endpoints: &ClientEndpoints, address: &str) -> Option<String> {
    let imap = endpoints.preferred(Protocol::Imap);
    let incoming = imap.or_else(|| endpoints.preferred(Protocol::Pop3))?;
    let smtp = endpoints.preferred(Protocol::Submission)?;
    let host = &endpoints.hostname;
    let encryption = |e: Endpoint| match e.security {
        Security::Tls => 1,
        Security::StartTls => 2,
    };
    let (kind, section, prefix) = if incoming.protocol == Protocol::Imap {
        ("IMAP", "IMAP_I_Mail", "IMAP")
    } else {
        ("POP3", "I_Mail", "POP3")
    };
    let mut lines: Vec<String> = vec![
        format!("; Outlook profile for {address} on {host}, made by Tern's setup page."),
        "; Import: close Outlook, then run  outlook.exe /importprf \"<path to this file>\"".into(),
        String::new(),
        "[General]".into(),
        "Custom=1".into(),
        format!("ProfileName={address}"),
        "DefaultProfile=Yes".into(),
        "OverwriteProfile=Append".into(),
        "ModifyDefaultProfileIfPresent=TRUE".into(),
        String::new(),
        "[Internet Account List]".into(),
        format!("Account1={section}"),
        String::new(),
        "[Account1]".into(),
        "UniqueService=No".into(),
        format!("AccountName={address}"),
        format!("EmailAddress={address}"),
        format!("{prefix}Server={host}"),
        format!("{prefix}UserName={address}"),
        format!("{prefix}UseSPA=0"),
        format!("{prefix}Port={}", incoming.port),
        format!("{prefix}UseSSL={}", encryption(incoming)),
        format!("SMTPServer={host}"),
        "SMTPUseAuth=1".into(),
        "SMTPAuthMethod=0".into(),
        "SMTPUseSPA=0".into(),
        format!("SMTPPort={}", smtp.port),
        format!("SMTPSecureConnection={}", encryption(smtp)),
        "ConnectionType=0".into(),
        "DefaultAccount=TRUE".into(),
    ];
    if kind == "POP3" {
        lines.push("LeaveOnServer=0x1".into());
    }
    lines.push(String::new());
    lines.push(format!("[{section}]"));
    lines.push(format!("AccountType={kind}"));
    for (name, property) in [
        ("AccountName", "PT_UNICODE,0x0002"),
        ("DisplayName", "PT_UNICODE,0x000B"),
        ("EmailAddress", "PT_UNICODE,0x000C"),
    ] {
        lines.push(format!("{name}={property}"));
    }
    for (name, property) in [
        ("Server", "PT_UNICODE,0x0100"),
        ("UserName", "PT_UNICODE,0x0101"),
        ("UseSPA", "PT_LONG,0x0108"),
        ("Port", "PT_LONG,0x0104"),
        ("UseSSL", "PT_LONG,0x0105"),
    ] {
        lines.push(format!("{prefix}{name}={property}"));
    }
    for (name, property) in [
        ("SMTPServer", "PT_UNICODE,0x0200"),
        ("SMTPUseAuth", "PT_LONG,0x0203"),
        ("SMTPAuthMethod", "PT_LONG,0x0208"),
        ("SMTPUserName", "PT_UNICODE,0x0204"),
        ("SMTPUseSPA", "PT_LONG,0x0207"),
        ("ConnectionType", "PT_LONG,0x000F"),
        ("SMTPPort", "PT_LONG,0x0201"),
        ("SMTPSecureConnection", "PT_LONG,0x020A"),
        ("ServerTimeOut", "PT_LONG,0x0209"),
    ] {
        lines.push(format!("{name}={property}"));
    }
    if kind == "POP3" {
        lines.push("LeaveOnServer=PT_LONG,0x1000".into());
    } else {
        lines.push("CheckNewImap=PT_LONG,0x1100".into());
        lines.push("RootFolder=PT_UNICODE,0x1101".into());
    }
    lines.push(String::new());
    Some(lines.join("\r\n"))
}
