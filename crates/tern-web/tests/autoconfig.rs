//! Client auto-configuration without a socket: Thunderbird's autoconfig, Outlook's
//! Autodiscover (POX and v2 JSON), Apple profiles (unsigned, and signed with a trusted
//! certificate: checked by `openssl cms -verify`), the MTA-STS policy, the Outlook 2007
//! profile file, the setup page and its password check, and which of these plain HTTP
//! may reach. Answers are parsed back with real parsers (roxmltree, plist, serde_json)
//! and checked field by field, for two hosted domains, a domain being moved, the three
//! Host header forms, and a server with only some services configured.

use std::collections::HashMap;
use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use tern_net::endpoints::ClientEndpoints;
use tern_web::WebConfig;

mod common;

use common::{HOST, PASSWORD, Site};

const REMOTE: &str = "203.0.113.9:50000";
const ORIGIN: &str = "https://mail.example.test";

/// Every client port, as `tern init` configures them.
fn all_endpoints() -> ClientEndpoints {
    ClientEndpoints {
        hostname: HOST.into(),
        imap: Some(143),
        imaps: Some(993),
        pop3: Some(110),
        pop3s: Some(995),
        submission: Some(587),
        submissions: Some(465),
        smtp: Some(25),
        http: Some(80),
        https: Some(443),
    }
}

/// IMAP with STARTTLS and submission on 587 only, HTTPS on 8443: no implicit TLS, no POP3.
fn some_endpoints() -> ClientEndpoints {
    ClientEndpoints {
        hostname: HOST.into(),
        imap: Some(143),
        submission: Some(587),
        https: Some(8443),
        ..Default::default()
    }
}

async fn serve(endpoints: ClientEndpoints) -> Site {
    site_with(endpoints, |_| {}).await
}

/// Two hosted domains (example.test, second.test) and one being moved (moving.test:
/// not receiving yet), each with an account.
async fn site_with(endpoints: ClientEndpoints, adjust: impl FnOnce(&mut WebConfig)) -> Site {
    let mut config = WebConfig {
        hostname: HOST.into(),
        endpoints,
        ..Default::default()
    };
    adjust(&mut config);
    let site = Site::build(
        &["example.test", "second.test", "moving.test"],
        &["alice@example.test", "bob@second.test", "carol@moving.test"],
        config,
    )
    .await;
    site.store.set_domain_receiving("moving.test", false).await.unwrap();
    site
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
    fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(&name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// A request from `peer` over TLS (or not) to `host`.
async fn call(
    site: &Site,
    method: &str,
    host: &str,
    uri: &str,
    (peer, tls): (&str, bool),
    extra: &[(header::HeaderName, &str)],
    body: Body,
) -> Answer {
    let mut builder = site.request(method, uri, peer, tls);
    // Autoconfig answers by the name asked for, not only the mail host's.
    builder
        .headers_mut()
        .unwrap()
        .insert(header::HOST, header::HeaderValue::from_str(host).unwrap());
    for (name, value) in extra {
        builder = builder.header(name, *value);
    }
    let (status, headers, body) = site.send(builder.body(body).unwrap()).await;
    Answer { status, headers, body }
}

async fn get(site: &Site, host: &str, uri: &str) -> Answer {
    call(site, "GET", host, uri, (REMOTE, true), &[], Body::empty()).await
}

// --- Thunderbird ---------------------------------------------------------------------------

/// One `incomingServer` / `outgoingServer` of a clientConfig.
#[derive(Debug, PartialEq, Eq)]
struct TbServer {
    kind: String,
    hostname: String,
    port: u16,
    socket_type: String,
    username: String,
    authentication: String,
}

struct ClientConfig {
    id: String,
    domain: String,
    display_name: String,
    incoming: Vec<TbServer>,
    outgoing: Vec<TbServer>,
}

fn child_text(node: roxmltree::Node, name: &str) -> String {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .unwrap_or_else(|| panic!("no <{name}> in <{}>", node.tag_name().name()))
        .to_string()
}

fn parse_client_config(xml: &str) -> ClientConfig {
    let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "clientConfig");
    assert_eq!(root.attribute("version"), Some("1.1"));
    let provider = root
        .children()
        .find(|c| c.has_tag_name("emailProvider"))
        .expect("emailProvider");
    let servers = |element: &str| {
        provider
            .children()
            .filter(|c| c.has_tag_name(element))
            .map(|s| TbServer {
                kind: s.attribute("type").unwrap().to_string(),
                hostname: child_text(s, "hostname"),
                port: child_text(s, "port").parse().unwrap(),
                socket_type: child_text(s, "socketType"),
                username: child_text(s, "username"),
                authentication: child_text(s, "authentication"),
            })
            .collect::<Vec<_>>()
    };
    ClientConfig {
        id: provider.attribute("id").unwrap().to_string(),
        domain: child_text(provider, "domain"),
        display_name: child_text(provider, "displayName"),
        incoming: servers("incomingServer"),
        outgoing: servers("outgoingServer"),
    }
}

fn tb(kind: &str, port: u16, socket_type: &str) -> TbServer {
    TbServer {
        kind: kind.into(),
        hostname: HOST.into(),
        port,
        socket_type: socket_type.into(),
        username: "%EMAILADDRESS%".into(),
        authentication: "password-cleartext".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thunderbird_autoconfig_for_each_host_form_and_domain() {
    let site = serve(all_endpoints()).await;
    let cases = [
        // autoconfig.DOMAIN, with and without the address.
        (
            "autoconfig.example.test",
            "/mail/config-v1.1.xml?emailaddress=alice%40example.test",
            "example.test",
        ),
        ("autoconfig.second.test", "/mail/config-v1.1.xml", "second.test"),
        // The domain itself (the .well-known lookup), with a port in the Host header.
        (
            "second.test:443",
            "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=bob%40second.test",
            "second.test",
        ),
        (
            "example.test",
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            "example.test",
        ),
        // The mail host name: the address decides (any hosted domain, any case).
        (
            HOST,
            "/mail/config-v1.1.xml?emailaddress=Bob%40Second.TEST",
            "second.test",
        ),
        (
            "autoconfig.moving.test",
            "/mail/config-v1.1.xml?emailaddress=carol%40moving.test",
            "moving.test",
        ),
    ];
    for (host, uri, domain) in cases {
        let answer = get(&site, host, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}{uri}: {}", answer.text());
        assert_eq!(answer.header(header::CONTENT_TYPE), "application/xml; charset=utf-8");
        let config = parse_client_config(&answer.text());
        assert_eq!(config.id, domain, "{host}{uri}");
        assert_eq!(config.domain, domain);
        assert_eq!(config.display_name, format!("{domain} mail"));
        assert_eq!(
            config.incoming,
            [
                tb("imap", 993, "SSL"),
                tb("imap", 143, "STARTTLS"),
                tb("pop3", 995, "SSL"),
                tb("pop3", 110, "STARTTLS"),
            ],
            "IMAP first, implicit TLS before STARTTLS"
        );
        assert_eq!(config.outgoing, [tb("smtp", 465, "SSL"), tb("smtp", 587, "STARTTLS")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thunderbird_autoconfig_lists_only_the_configured_services() {
    let site = serve(some_endpoints()).await;
    let answer = get(
        &site,
        "autoconfig.example.test",
        "/mail/config-v1.1.xml?emailaddress=alice%40example.test",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let config = parse_client_config(&answer.text());
    assert_eq!(config.incoming, [tb("imap", 143, "STARTTLS")]);
    assert_eq!(config.outgoing, [tb("smtp", 587, "STARTTLS")]);

    // No incoming port at all: nothing to configure, said so.
    let site = serve(ClientEndpoints {
        hostname: HOST.into(),
        submission: Some(587),
        ..Default::default()
    })
    .await;
    let answer = get(&site, "autoconfig.example.test", "/mail/config-v1.1.xml").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.text().contains("no IMAP or POP3 port"), "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhosted_domains_are_not_found_and_bad_addresses_are_refused() {
    let site = serve(all_endpoints()).await;
    let cases = [
        (
            "autoconfig.elsewhere.test",
            "/mail/config-v1.1.xml",
            StatusCode::NOT_FOUND,
        ),
        (
            HOST,
            "/mail/config-v1.1.xml?emailaddress=eve%40elsewhere.test",
            StatusCode::NOT_FOUND,
        ),
        // An address of another (hosted) domain than the one the Host names.
        (
            "autoconfig.example.test",
            "/mail/config-v1.1.xml?emailaddress=bob%40second.test",
            StatusCode::NOT_FOUND,
        ),
        (
            HOST,
            "/mail/config-v1.1.xml?emailaddress=not-an-address",
            StatusCode::BAD_REQUEST,
        ),
        (
            HOST,
            "/mail/config-v1.1.xml?emailaddress=two%20words%40example.test",
            StatusCode::BAD_REQUEST,
        ),
        // The mail host name without an address names no domain.
        (HOST, "/mail/config-v1.1.xml", StatusCode::BAD_REQUEST),
        ("127.0.0.1:8443", "/mail/config-v1.1.xml", StatusCode::BAD_REQUEST),
    ];
    for (host, uri, status) in cases {
        let answer = get(&site, host, uri).await;
        assert_eq!(answer.status, status, "{host}{uri}: {}", answer.text());
        assert!(
            roxmltree::Document::parse(&answer.text()).is_err(),
            "no configuration in a refusal"
        );
    }
}

// --- Outlook ---------------------------------------------------------------------------------

const REQUEST_SCHEMA: &str = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
const RESPONSE_SCHEMA: &str = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const OUTER_SCHEMA: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";

fn pox_request(email: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<Autodiscover xmlns=\"{REQUEST_SCHEMA}\">\
         <Request><EMailAddress>{email}</EMailAddress>\
         <AcceptableResponseSchema>{RESPONSE_SCHEMA}</AcceptableResponseSchema></Request></Autodiscover>"
    )
}

async fn post_pox(site: &Site, host: &str, path: &str, body: &str) -> Answer {
    // As Outlook sends it: no Origin, no cookie.
    call(
        site,
        "POST",
        host,
        path,
        (REMOTE, true),
        &[(header::CONTENT_TYPE, "text/xml")],
        Body::from(body.to_string()),
    )
    .await
}

/// A `Protocol` of the answer, as (element → text).
fn pox_protocols(xml: &str) -> (String, String, Vec<HashMap<String, String>>) {
    let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Autodiscover");
    assert_eq!(root.tag_name().namespace(), Some(OUTER_SCHEMA));
    let response = root.children().find(|c| c.has_tag_name("Response")).unwrap();
    assert_eq!(response.tag_name().namespace(), Some(RESPONSE_SCHEMA));
    let account = response.children().find(|c| c.has_tag_name("Account")).unwrap();
    let protocols = account
        .children()
        .filter(|c| c.has_tag_name("Protocol"))
        .map(|p| {
            p.children()
                .filter(|c| c.is_element())
                .map(|c| (c.tag_name().name().to_string(), c.text().unwrap_or("").to_string()))
                .collect()
        })
        .collect();
    (
        child_text(account, "AccountType"),
        child_text(account, "Action"),
        protocols,
    )
}

fn pox_error_code(xml: &str) -> String {
    let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().namespace(), Some(OUTER_SCHEMA));
    let error = root.descendants().find(|n| n.has_tag_name("Error")).expect("an Error");
    assert!(error.attribute("Time").is_some() && error.attribute("Id").is_some());
    assert!(!child_text(error, "Message").is_empty());
    child_text(error, "ErrorCode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlook_autodiscover_answers_imap_pop3_and_smtp() {
    let site = serve(all_endpoints()).await;
    for (host, path, email) in [
        (
            "autodiscover.example.test",
            "/autodiscover/autodiscover.xml",
            "alice@example.test",
        ),
        ("second.test", "/Autodiscover/Autodiscover.xml", "bob@second.test"),
        // The SRV record's target: the mail host name.
        (HOST, "/Autodiscover/Autodiscover.xml", "carol@moving.test"),
    ] {
        let answer = post_pox(&site, host, path, &pox_request(email)).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}{path}: {}", answer.text());
        let (kind, action, protocols) = pox_protocols(&answer.text());
        assert_eq!((kind.as_str(), action.as_str()), ("email", "settings"));
        let field = |p: &HashMap<String, String>, k: &str| p.get(k).cloned().unwrap_or_default();
        let summary: Vec<(String, String, String, String, String)> = protocols
            .iter()
            .map(|p| {
                (
                    field(p, "Type"),
                    field(p, "Server"),
                    field(p, "Port"),
                    field(p, "SSL"),
                    field(p, "Encryption"),
                )
            })
            .collect();
        let row = |t: &str, port: &str| (t.into(), HOST.into(), port.into(), "on".into(), "SSL".into());
        assert_eq!(summary, [row("IMAP", "993"), row("POP3", "995"), row("SMTP", "465")]);
        for p in &protocols {
            assert_eq!(field(p, "LoginName"), email);
            assert_eq!(field(p, "SPA"), "off");
            assert_eq!(field(p, "AuthRequired"), "on");
            assert_eq!(field(p, "DomainRequired"), "off");
        }
    }

    // STARTTLS only: SSL on, Encryption TLS; no POP3.
    let site = serve(some_endpoints()).await;
    let answer = post_pox(
        &site,
        "autodiscover.example.test",
        "/autodiscover/autodiscover.xml",
        &pox_request("alice@example.test"),
    )
    .await;
    let (_, _, protocols) = pox_protocols(&answer.text());
    let summary: Vec<(&str, &str, &str)> = protocols
        .iter()
        .map(|p| (p["Type"].as_str(), p["Port"].as_str(), p["Encryption"].as_str()))
        .collect();
    assert_eq!(summary, [("IMAP", "143", "TLS"), ("SMTP", "587", "TLS")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_autodiscover_requests_get_the_pox_error() {
    let site = serve(all_endpoints()).await;
    let path = "/autodiscover/autodiscover.xml";
    let host = "autodiscover.example.test";
    let cases: [(&str, String, StatusCode, &str); 8] = [
        ("not XML", "this is not xml".into(), StatusCode::BAD_REQUEST, "600"),
        (
            "unclosed",
            pox_request("alice@example.test").replace("</Autodiscover>", ""),
            StatusCode::BAD_REQUEST,
            "600",
        ),
        (
            "no address",
            pox_request("alice@example.test").replace("<EMailAddress>alice@example.test</EMailAddress>", ""),
            StatusCode::BAD_REQUEST,
            "600",
        ),
        (
            "another root",
            "<Discover><Request><EMailAddress>alice@example.test</EMailAddress></Request></Discover>".into(),
            StatusCode::BAD_REQUEST,
            "600",
        ),
        (
            "an entity from a DTD",
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
                pox_request("&x;").trim_start_matches("<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n")
            ),
            StatusCode::BAD_REQUEST,
            "600",
        ),
        ("not an address", pox_request("alice"), StatusCode::BAD_REQUEST, "600"),
        (
            "a domain not hosted here",
            pox_request("eve@elsewhere.test"),
            StatusCode::NOT_FOUND,
            "500",
        ),
        (
            "ActiveSync's schema",
            pox_request("alice@example.test").replace(
                RESPONSE_SCHEMA,
                "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006",
            ),
            StatusCode::OK,
            "601",
        ),
    ];
    for (what, body, status, code) in cases {
        let answer = post_pox(&site, host, path, &body).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert_eq!(pox_error_code(&answer.text()), code, "{what}");
    }
    // Entities that need no DTD are read.
    let answer = post_pox(
        &site,
        host,
        path,
        &pox_request("alice@exam&#112;le.test").replace("alice@", "al&#105;ce@"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(answer.text().contains("<LoginName>alice@example.test</LoginName>"));
    // A body larger than any request is not read (413).
    let huge =
        pox_request("alice@example.test").replace("<Request>", &format!("<!--{}--><Request>", "x".repeat(64 * 1024)));
    assert_eq!(
        post_pox(&site, host, path, &huge).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // A GET is no Autodiscover request.
    let answer = get(&site, host, path).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(pox_error_code(&answer.text()), "600");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autodiscover_v2_points_at_the_pox_service_only() {
    let site = serve(all_endpoints()).await;
    let json = |a: &Answer| serde_json::from_slice::<serde_json::Value>(&a.body).expect("JSON");
    for (host, uri) in [
        (
            "autodiscover.example.test",
            "/autodiscover/autodiscover.json?Email=alice%40example.test&Protocol=AutodiscoverV1",
        ),
        (
            HOST,
            "/autodiscover/autodiscover.json/v1.0/alice@example.test?Protocol=autodiscoverv1&RedirectCount=1",
        ),
    ] {
        let answer = get(&site, host, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.text());
        assert!(answer.header(header::CONTENT_TYPE).starts_with("application/json"));
        assert_eq!(
            json(&answer),
            serde_json::json!({
                "Protocol": "AutodiscoverV1",
                "Url": "https://autodiscover.example.test/autodiscover/autodiscover.xml",
            })
        );
    }
    for (uri, status, code) in [
        (
            "/autodiscover/autodiscover.json?Email=alice%40example.test&Protocol=ActiveSync",
            StatusCode::BAD_REQUEST,
            "InvalidProtocol",
        ),
        (
            "/autodiscover/autodiscover.json?Email=alice%40example.test&Protocol=Ews",
            StatusCode::BAD_REQUEST,
            "InvalidProtocol",
        ),
        (
            "/autodiscover/autodiscover.json?Email=alice%40example.test",
            StatusCode::BAD_REQUEST,
            "InvalidProtocol",
        ),
        (
            "/autodiscover/autodiscover.json?Email=eve%40elsewhere.test&Protocol=AutodiscoverV1",
            StatusCode::NOT_FOUND,
            "UserNotFound",
        ),
        (
            "/autodiscover/autodiscover.json?Email=nobody&Protocol=AutodiscoverV1",
            StatusCode::BAD_REQUEST,
            "InvalidUser",
        ),
    ] {
        let answer = get(&site, HOST, uri).await;
        assert_eq!(answer.status, status, "{uri}: {}", answer.text());
        let body = json(&answer);
        assert_eq!(body["ErrorCode"], code, "{uri}");
        assert!(body["ErrorMessage"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A port other than 443 is kept in the URL.
    let site = serve(some_endpoints()).await;
    let answer = get(
        &site,
        HOST,
        "/autodiscover/autodiscover.json?Email=bob%40second.test&Protocol=AutodiscoverV1",
    )
    .await;
    assert_eq!(
        json(&answer)["Url"],
        "https://autodiscover.second.test:8443/autodiscover/autodiscover.xml"
    );
}

// --- Apple ---------------------------------------------------------------------------------

fn dict(value: &plist::Value) -> &plist::Dictionary {
    value.as_dictionary().expect("a dictionary")
}

fn string<'a>(d: &'a plist::Dictionary, key: &str) -> &'a str {
    d.get(key)
        .and_then(plist::Value::as_string)
        .unwrap_or_else(|| panic!("no string {key}"))
}

fn boolean(d: &plist::Dictionary, key: &str) -> bool {
    d.get(key)
        .and_then(plist::Value::as_boolean)
        .unwrap_or_else(|| panic!("no boolean {key}"))
}

fn integer(d: &plist::Dictionary, key: &str) -> i64 {
    d.get(key)
        .and_then(plist::Value::as_signed_integer)
        .unwrap_or_else(|| panic!("no integer {key}"))
}

/// The profile's top dictionary and its one mail payload.
fn read_profile(bytes: &[u8]) -> (plist::Dictionary, plist::Dictionary) {
    let value = plist::Value::from_reader(std::io::Cursor::new(bytes)).expect("a property list");
    let top = dict(&value).clone();
    let content = top
        .get("PayloadContent")
        .and_then(plist::Value::as_array)
        .expect("PayloadContent");
    assert_eq!(content.len(), 1);
    (top.clone(), dict(&content[0]).clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apple_profiles_carry_the_settings_and_no_password() {
    let site = serve(all_endpoints()).await;
    let uri = "/setup/apple.mobileconfig?email=alice%40example.test";
    let first = get(&site, HOST, uri).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.header(header::CONTENT_TYPE), "application/x-apple-aspen-config");
    assert_eq!(
        first.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"example.test.mobileconfig\""
    );
    assert!(first.body.starts_with(b"<?xml"), "no trusted certificate: unsigned");
    let (top, mail) = read_profile(&first.body);
    assert_eq!(string(&top, "PayloadType"), "Configuration");
    assert_eq!(integer(&top, "PayloadVersion"), 1);
    assert_eq!(string(&mail, "PayloadType"), "com.apple.mail.managed");
    assert_eq!(string(&mail, "EmailAccountType"), "EmailTypeIMAP");
    assert_eq!(string(&mail, "EmailAddress"), "alice@example.test");
    assert_eq!(string(&mail, "IncomingMailServerHostName"), HOST);
    assert_eq!(integer(&mail, "IncomingMailServerPortNumber"), 993);
    assert!(boolean(&mail, "IncomingMailServerUseSSL"));
    assert_eq!(string(&mail, "IncomingMailServerUsername"), "alice@example.test");
    assert_eq!(string(&mail, "IncomingMailServerAuthentication"), "EmailAuthPassword");
    assert_eq!(string(&mail, "OutgoingMailServerHostName"), HOST);
    assert_eq!(integer(&mail, "OutgoingMailServerPortNumber"), 465);
    assert!(boolean(&mail, "OutgoingMailServerUseSSL"));
    assert_eq!(string(&mail, "OutgoingMailServerUsername"), "alice@example.test");
    assert!(boolean(&mail, "OutgoingPasswordSameAsIncomingPassword"));
    for d in [&top, &mail] {
        assert!(
            d.keys()
                .all(|k| !k.to_lowercase().contains("password") || k.starts_with("OutgoingPasswordSame")),
            "no password in the profile: {:?}",
            d.keys().collect::<Vec<_>>()
        );
    }
    // The identifier is stable per address and host; the UUIDs are new each time.
    let (top2, mail2) = read_profile(&get(&site, HOST, uri).await.body);
    assert_eq!(string(&top, "PayloadIdentifier"), string(&top2, "PayloadIdentifier"));
    assert!(string(&top, "PayloadIdentifier").starts_with("test.example.mail.tern.mail."));
    assert_eq!(string(&mail, "PayloadIdentifier"), string(&mail2, "PayloadIdentifier"));
    assert_ne!(string(&top, "PayloadUUID"), string(&top2, "PayloadUUID"));
    let (bob, _) = read_profile(
        &get(&site, HOST, "/setup/apple.mobileconfig?email=bob%40second.test")
            .await
            .body,
    );
    assert_ne!(string(&top, "PayloadIdentifier"), string(&bob, "PayloadIdentifier"));

    // STARTTLS ports only: still TLS (Apple's Mail uses STARTTLS there).
    let site = serve(some_endpoints()).await;
    let (_, mail) = read_profile(&get(&site, HOST, uri).await.body);
    assert_eq!(integer(&mail, "IncomingMailServerPortNumber"), 143);
    assert!(boolean(&mail, "IncomingMailServerUseSSL"));
    assert_eq!(integer(&mail, "OutgoingMailServerPortNumber"), 587);
    assert!(boolean(&mail, "OutgoingMailServerUseSSL"));

    for (uri, status) in [
        ("/setup/apple.mobileconfig", StatusCode::BAD_REQUEST),
        ("/setup/apple.mobileconfig?email=alice", StatusCode::BAD_REQUEST),
        (
            "/setup/apple.mobileconfig?email=eve%40elsewhere.test",
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(get(&site, HOST, uri).await.status, status, "{uri}");
    }
}

/// A CA, and a leaf for `HOST` signed by it with a key of `algorithm` (or an RSA key from
/// `rsa_pem`), written as PEM files into `dir`: (chain, key, CA) paths.
fn make_pki(
    dir: &Path,
    leaf_key: rcgen::KeyPair,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Tern Test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec![HOST.to_string()]).unwrap();
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, HOST);
    leaf_params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let chain = dir.join(format!("{name}-chain.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&chain, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    (chain, key, ca_file)
}

/// `openssl cms -verify` of a signed profile against `ca`: the content it signed.
fn openssl_verify(signed: &[u8], ca: &Path, dir: &Path) -> Result<Vec<u8>, String> {
    let input = dir.join("profile.der");
    std::fs::write(&input, signed).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&input)
        .arg("-CAfile")
        .arg(ca)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apple_profiles_are_signed_when_the_certificate_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("openssl genpkey");
    assert!(rsa.status.success());
    let keys = [
        (
            "p256",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        ),
        (
            "p384",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        ),
        (
            "rsa",
            rcgen::KeyPair::from_pem_and_sign_algo(&String::from_utf8(rsa.stdout).unwrap(), &rcgen::PKCS_RSA_SHA256)
                .unwrap(),
        ),
    ];
    let uri = "/setup/apple.mobileconfig?email=alice%40example.test";
    for (name, key) in keys {
        let (chain, key, ca) = make_pki(dir.path(), key, name);
        let (c, k, a) = (chain.clone(), key.clone(), ca.clone());
        let site = site_with(all_endpoints(), move |config| {
            config.tls_certificate = Some(c);
            config.tls_private_key = Some(k);
            config.trusted_cas = a;
        })
        .await;
        let answer = get(&site, HOST, uri).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body.first(), Some(&0x30), "{name}: DER SignedData, not XML");
        let content = openssl_verify(&answer.body, &ca, dir.path())
            .unwrap_or_else(|e| panic!("{name}: openssl refuses the signature: {e}"));
        let (top, mail) = read_profile(&content);
        assert_eq!(string(&top, "PayloadType"), "Configuration", "{name}");
        assert_eq!(string(&mail, "EmailAddress"), "alice@example.test");

        // The same certificate not trusted (another CA bundle): unsigned.
        let (c, k) = (chain.clone(), key.clone());
        let other_ca = dir.path().join("empty-ca.pem");
        std::fs::write(&other_ca, "").unwrap();
        let site = site_with(all_endpoints(), move |config| {
            config.tls_certificate = Some(c);
            config.tls_private_key = Some(k);
            config.trusted_cas = other_ca;
        })
        .await;
        let answer = get(&site, HOST, uri).await;
        assert!(answer.body.starts_with(b"<?xml"), "{name}: untrusted, so unsigned");
    }

    // A key that does not belong to the certificate: unsigned (and no error for the user).
    let (chain, _, ca) = make_pki(dir.path(), rcgen::KeyPair::generate().unwrap(), "mismatch");
    let stranger = dir.path().join("stranger.pem");
    std::fs::write(&stranger, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let site = site_with(all_endpoints(), move |config| {
        config.tls_certificate = Some(chain);
        config.tls_private_key = Some(stranger);
        config.trusted_cas = ca;
    })
    .await;
    let answer = get(&site, HOST, uri).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.starts_with(b"<?xml"));

    // A certificate for another name: unsigned.
    let identity = tern_web::mobileconfig::load_identity(
        &dir.path().join("p256-chain.pem"),
        &dir.path().join("p256-key.pem"),
        &dir.path().join("p256-ca.pem"),
        "other.example.test",
    );
    assert!(matches!(
        identity,
        Err(tern_web::mobileconfig::SigningError::Untrusted { .. })
    ));
}

// --- MTA-STS -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_policy_for_hosted_domains_only() {
    let site = serve(all_endpoints()).await;
    for host in ["mta-sts.example.test", "mta-sts.second.test:443", "MTA-STS.Moving.Test"] {
        let answer = get(&site, host, "/.well-known/mta-sts.txt").await;
        assert_eq!(answer.status, StatusCode::OK, "{host}");
        assert_eq!(answer.header(header::CONTENT_TYPE), "text/plain; charset=utf-8");
        assert_eq!(answer.text(), tern_dns::records::mta_sts_policy(HOST));
        // RFC 8461 §3.2: the fields a sender needs, one per CRLF-ended line.
        let text = answer.text();
        assert!(text.ends_with("\r\n"));
        let fields: HashMap<&str, &str> = text.split("\r\n").filter_map(|l| l.split_once(": ")).collect();
        assert_eq!(fields.get("version"), Some(&"STSv1"));
        assert_eq!(fields.get("mx"), Some(&HOST));
        assert!(fields.get("max_age").is_some_and(|a| a.parse::<u64>().is_ok()));
        assert!(matches!(fields.get("mode"), Some(&"testing" | &"enforce")));
    }
    for host in ["mta-sts.elsewhere.test", HOST, "example.test"] {
        let answer = get(&site, host, "/.well-known/mta-sts.txt").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{host}");
    }
}

// --- Plain HTTP --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_reaches_only_the_public_documents() {
    let site = serve(all_endpoints()).await;
    let plain = |method: &'static str, host: &'static str, uri: &'static str| {
        let site = &site;
        async move { call(site, method, host, uri, (REMOTE, false), &[], Body::empty()).await }
    };
    // Answered over plain HTTP from anywhere.
    for (host, uri) in [
        (
            "autoconfig.example.test",
            "/mail/config-v1.1.xml?emailaddress=alice%40example.test",
        ),
        ("example.test", "/.well-known/autoconfig/mail/config-v1.1.xml"),
        ("mta-sts.example.test", "/.well-known/mta-sts.txt"),
    ] {
        let answer = plain("GET", host, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}{uri}");
    }
    // ACME challenges are not redirected (nothing is published yet: 404, not 308).
    let answer = plain("GET", HOST, "/.well-known/acme-challenge/abc").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // Everything else goes to HTTPS, the method kept.
    for (method, host, uri) in [
        ("GET", HOST, "/setup"),
        ("GET", HOST, "/setup?email=alice%40example.test&client=iphone"),
        ("GET", HOST, "/setup/apple.mobileconfig?email=alice%40example.test"),
        ("GET", HOST, "/setup/outlook.prf?email=alice%40example.test"),
        ("GET", HOST, "/login"),
        ("POST", "autodiscover.example.test", "/autodiscover/autodiscover.xml"),
        (
            "GET",
            "autodiscover.example.test",
            "/autodiscover/autodiscover.json?Email=alice%40example.test&Protocol=AutodiscoverV1",
        ),
        ("POST", "autoconfig.example.test", "/mail/config-v1.1.xml"),
    ] {
        let answer = plain(method, host, uri).await;
        assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT, "{method} {host}{uri}");
        let bare = host.split(':').next().unwrap();
        assert_eq!(answer.header(header::LOCATION), format!("https://{bare}{uri}"));
    }
    // The security headers are on the public documents too.
    let answer = plain("GET", "mta-sts.example.test", "/.well-known/mta-sts.txt").await;
    assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
}

// --- Outlook 2007 ------------------------------------------------------------------------------

/// An INI file as section → key → value.
fn ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section = String::new();
    for line in text.split("\r\n") {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            out.entry(section.clone()).or_default();
        } else if let Some((k, v)) = line.split_once('=') {
            let previous = out.entry(section.clone()).or_default().insert(k.into(), v.into());
            assert!(previous.is_none(), "{k} twice in [{section}]");
        } else {
            panic!("not an INI line: {line:?}");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlook_2007_profile_file() {
    let site = serve(all_endpoints()).await;
    let answer = get(&site, HOST, "/setup/outlook.prf?email=alice%40example.test").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"example.test.prf\""
    );
    let text = answer.text();
    assert!(!text.replace("\r\n", "").contains('\n'), "CRLF line ends");
    let prf = ini(&text);
    assert_eq!(prf["General"]["Custom"], "1");
    assert_eq!(prf["General"]["OverwriteProfile"], "Append");
    assert_eq!(prf["Internet Account List"]["Account1"], "IMAP_I_Mail");
    let account = &prf["Account1"];
    for (key, value) in [
        ("EmailAddress", "alice@example.test"),
        ("IMAPServer", HOST),
        ("IMAPUserName", "alice@example.test"),
        ("IMAPPort", "993"),
        ("IMAPUseSSL", "1"),
        ("IMAPUseSPA", "0"),
        ("SMTPServer", HOST),
        ("SMTPPort", "465"),
        ("SMTPSecureConnection", "1"),
        ("SMTPUseAuth", "1"),
    ] {
        assert_eq!(account.get(key).map(String::as_str), Some(value), "{key}");
    }
    // Every value of the account has its MAPI property in section 7.
    let map = &prf["IMAP_I_Mail"];
    assert_eq!(map["AccountType"], "IMAP");
    for key in account.keys() {
        if !["UniqueService", "DefaultAccount"].contains(&key.as_str()) {
            assert!(map.contains_key(key), "{key} has no mapping");
        }
    }

    // STARTTLS only: encryption 2 ("TLS").
    let site = serve(some_endpoints()).await;
    let prf = ini(&get(&site, HOST, "/setup/outlook.prf?email=bob%40second.test")
        .await
        .text());
    assert_eq!(prf["Account1"]["IMAPPort"], "143");
    assert_eq!(prf["Account1"]["IMAPUseSSL"], "2");
    assert_eq!(prf["Account1"]["SMTPPort"], "587");
    assert_eq!(prf["Account1"]["SMTPSecureConnection"], "2");

    // POP3 only: a POP3 account.
    let site = serve(ClientEndpoints {
        hostname: HOST.into(),
        pop3s: Some(995),
        submissions: Some(465),
        ..Default::default()
    })
    .await;
    let prf = ini(&get(&site, HOST, "/setup/outlook.prf?email=alice%40example.test")
        .await
        .text());
    assert_eq!(prf["Internet Account List"]["Account1"], "I_Mail");
    assert_eq!(prf["Account1"]["POP3Port"], "995");
    assert_eq!(prf["I_Mail"]["AccountType"], "POP3");

    // A non-ASCII address: UTF-16LE with a byte-order mark.
    let answer = get(&site, HOST, "/setup/outlook.prf?email=j%C3%B6rg%40example.test").await;
    assert_eq!(&answer.body[..2], &[0xFF, 0xFE]);
    let units: Vec<u16> = answer.body[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert!(
        String::from_utf16(&units)
            .unwrap()
            .contains("EmailAddress=jörg@example.test")
    );

    assert_eq!(
        get(&site, HOST, "/setup/outlook.prf?email=eve%40elsewhere.test")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

// --- The setup page ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_page_shows_each_apps_steps_with_this_servers_settings() {
    let site = serve(all_endpoints()).await;
    let answer = get(&site, HOST, "/setup").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .header(header::CONTENT_SECURITY_POLICY)
            .contains("script-src 'self'")
    );
    let page = answer.text();
    for slug in [
        "outlook",
        "outlook-2007",
        "thunderbird",
        "apple-mail",
        "iphone",
        "android-gmail",
        "android-thunderbird",
        "windows-mail",
        "other",
    ] {
        assert!(page.contains(&format!("value=\"{slug}\"")), "{slug} offered");
        let page = get(&site, HOST, &format!("/setup?email=alice%40example.test&client={slug}"))
            .await
            .text();
        assert!(page.contains(&format!("value=\"{slug}\" checked")), "{slug} picked");
        assert!(page.contains("id=\"steps-title\""), "{slug}");
        assert!(page.contains("<code>mail.example.test</code>"), "{slug}");
        assert!(
            page.contains("<code>993</code>") && page.contains("<code>465</code>"),
            "{slug}"
        );
        assert!(
            page.contains("href=\"/setup/check?email=alice%40example.test\""),
            "{slug}"
        );
        assert!(!page.contains("id=\"setup-moving\""), "example.test is not moving");
    }
    let iphone = get(&site, HOST, "/setup?email=alice%40example.test&client=iphone")
        .await
        .text();
    assert!(iphone.contains("<svg class=\"qr\""), "a QR code, inline");
    assert!(iphone.contains("href=\"/setup/apple.mobileconfig?email=alice%40example.test\""));
    assert!(iphone.contains("https://mail.example.test/setup/apple.mobileconfig?email=alice%40example.test"));
    let outlook = get(&site, HOST, "/setup?email=alice%40example.test&client=outlook-2007")
        .await
        .text();
    assert!(outlook.contains("href=\"/setup/outlook.prf?email=alice%40example.test\""));
    assert!(outlook.contains("/importprf"));
    let thunderbird = get(&site, HOST, "/setup?email=alice%40example.test&client=thunderbird")
        .await
        .text();
    assert!(thunderbird.contains("finds the settings by itself"));

    // A domain being moved says so.
    let moving = get(&site, HOST, "/setup?email=carol%40moving.test&client=thunderbird")
        .await
        .text();
    assert!(moving.contains("id=\"setup-moving\"") && moving.contains("under way"));

    // STARTTLS only: those ports, said so.
    let site2 = serve(some_endpoints()).await;
    let page = get(&site2, HOST, "/setup?email=alice%40example.test&client=android-gmail")
        .await
        .text();
    assert!(
        page.contains("port <code>143</code>, security type <b>STARTTLS</b>"),
        "{page}"
    );
    let iphone = get(&site2, HOST, "/setup?email=alice%40example.test&client=iphone")
        .await
        .text();
    assert!(iphone.contains("https://mail.example.test:8443/setup/apple.mobileconfig"));

    // Unhosted and malformed addresses.
    let answer = get(&site, HOST, "/setup?email=eve%40elsewhere.test").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.text().contains("not handled by this server"));
    let answer = get(&site, HOST, "/setup?email=eve").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text().contains("is not an email address"));

    // The login page links here.
    let login = get(&site, HOST, "/login").await.text();
    assert!(login.contains("href=\"/setup\""));
}

async fn check(site: &Site, email: &str, password: &str, tls: bool, peer: &str) -> Answer {
    let body = format!(
        "email={}&client=thunderbird&password={}",
        tern_web::page::url_encode(email),
        tern_web::page::url_encode(password)
    );
    call(
        site,
        "POST",
        HOST,
        "/setup",
        (peer, tls),
        &[
            (header::ORIGIN, ORIGIN),
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        ],
        Body::from(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_check_works_over_tls_and_counts_against_the_login_limits() {
    let site = serve(all_endpoints()).await;
    let answer = check(&site, "alice@example.test", PASSWORD, true, REMOTE).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.text().contains("Your password works"), "{}", answer.text());
    let answer = check(&site, "alice@example.test", "wrong", true, REMOTE).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.text().contains("Wrong password"));
    assert!(!answer.text().contains("wrong\""), "the password is not echoed");

    // Plain HTTP from afar: sent to HTTPS before the password is looked at.
    let answer = check(&site, "alice@example.test", PASSWORD, false, REMOTE).await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);

    // From another site: refused.
    let body = format!(
        "email=alice%40example.test&password={}",
        tern_web::page::url_encode(PASSWORD)
    );
    let answer = call(
        &site,
        "POST",
        HOST,
        "/setup",
        (REMOTE, true),
        &[
            (header::ORIGIN, "https://evil.example"),
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        ],
        Body::from(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    // The shared limits: after five failures from one address even the right password
    // is refused for a while, here and at the webmail login.
    for _ in 0..5 {
        check(&site, "bob@second.test", "guess", true, "198.51.100.7:4000").await;
    }
    let answer = check(&site, "bob@second.test", PASSWORD, true, "198.51.100.7:4000").await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{}", answer.text());
    let login = call(
        &site,
        "POST",
        HOST,
        "/login",
        ("198.51.100.7:4000", true),
        &[
            (header::ORIGIN, ORIGIN),
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        ],
        Body::from(format!(
            "user=bob%40second.test&password={}",
            tern_web::page::url_encode(PASSWORD)
        )),
    )
    .await;
    assert_eq!(login.status, StatusCode::TOO_MANY_REQUESTS);
    // The store was not touched by any of it.
    assert!(site.store.account("bob@second.test").await.unwrap().enabled);
}
