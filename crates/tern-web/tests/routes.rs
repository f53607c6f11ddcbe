//! Webmail's routes without a socket or a browser: sessions and their cookie, CSRF and
//! cross-site refusals, plain HTTP sent to HTTPS, one user never reaching another's
//! mail, downloads' headers, and redirects that never leave the site. (The browser
//! tests in crates/tern/tests/webmail.rs drive the same pages in Chromium.)

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tern_store::NewMessage;

mod common;

use common::{PASSWORD, Site};

async fn site() -> Site {
    Site::build(
        &["example.test"],
        &["alice@example.test", "bob@example.test"],
        common::config(),
    )
    .await
}

/// A request as a browser on `peer` sends it over TLS (or not).
fn request(site: &Site, method: &str, uri: &str, peer: &str, tls: bool) -> axum::http::request::Builder {
    site.request(method, uri, peer, tls)
}

async fn send(site: &Site, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    site.send(request).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", tern_web::page::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

const ORIGIN: &str = "https://mail.example.test";
const REMOTE: &str = "203.0.113.9:50000";

/// Logs in over TLS; returns the cookie and the session's CSRF token.
async fn login(site: &Site, user: &str) -> (String, String) {
    let body = form(&[("user", user), ("password", PASSWORD), ("next", "/mail")]);
    let req = request(site, "POST", "/login", REMOTE, true)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let (status, headers, _) = send(site, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = get(site, "/settings", &cookie).await;
    let text = String::from_utf8(page.2).unwrap();
    let csrf = text
        .split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();
    (cookie, csrf)
}

async fn get(site: &Site, uri: &str, cookie: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let req = request(site, "GET", uri, REMOTE, true)
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    send(site, req).await
}

async fn post(site: &Site, uri: &str, cookie: &str, origin: Option<&str>, body: String) -> StatusCode {
    let mut req = request(site, "POST", uri, REMOTE, true)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        req = req.header(header::ORIGIN, origin);
    }
    send(site, req.body(Body::from(body)).unwrap()).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_logout_ends_it() {
    let site = site().await;
    let (status, headers, _) = get(&site, "/mail?folder=INBOX", "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login?next=%2Fmail%3Ffolder%3DINBOX");

    let (cookie, csrf) = login(&site, "alice@example.test").await;
    let (status, headers, body) = get(&site, "/mail", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(String::from_utf8_lossy(&body).contains("alice@example.test"));

    assert_eq!(
        post(&site, "/logout", &cookie, Some(ORIGIN), form(&[("csrf", &csrf)])).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        get(&site, "/mail", &cookie).await.0,
        StatusCode::SEE_OTHER,
        "the session is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_token_and_this_site_as_origin() {
    let site = site().await;
    let (cookie, csrf) = login(&site, "alice@example.test").await;
    let create = |token: &str| form(&[("csrf", token), ("name", "Projects")]);
    assert_eq!(
        post(&site, "/folders/create", &cookie, Some(ORIGIN), create("wrong")).await,
        StatusCode::FORBIDDEN,
        "a wrong token"
    );
    assert_eq!(
        post(
            &site,
            "/folders/create",
            &cookie,
            Some(ORIGIN),
            form(&[("name", "Projects")])
        )
        .await,
        StatusCode::FORBIDDEN,
        "no token"
    );
    assert_eq!(
        post(
            &site,
            "/folders/create",
            &cookie,
            Some("https://evil.example"),
            create(&csrf)
        )
        .await,
        StatusCode::FORBIDDEN,
        "another site"
    );
    assert_eq!(
        post(&site, "/folders/create", &cookie, None, create(&csrf)).await,
        StatusCode::FORBIDDEN,
        "no Origin or Referer"
    );
    let alice = site.store.account("alice@example.test").await.unwrap();
    assert!(
        site.store.mailbox(alice.id, "Projects").await.is_err(),
        "nothing was created"
    );
    assert_eq!(
        post(&site, "/folders/create", &cookie, Some(ORIGIN), create(&csrf)).await,
        StatusCode::SEE_OTHER
    );
    assert!(site.store.mailbox(alice.id, "Projects").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_from_afar_goes_to_https_and_loopback_may_stay() {
    let site = site().await;
    let req = request(&site, "GET", "/login?next=%2Fmail", REMOTE, false)
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&site, req).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        headers[header::LOCATION],
        "https://mail.example.test:8443/login?next=%2Fmail"
    );
    let req = request(&site, "GET", "/login", "127.0.0.1:40000", false)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&site, req).await.0, StatusCode::OK, "a proxy on this machine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reaches_only_their_own_mail() {
    let site = site().await;
    let bob = site.store.account("bob@example.test").await.unwrap();
    let bob_inbox = site.store.mailbox(bob.id, "INBOX").await.unwrap();
    let raw = "From: carol@example.org\r\nTo: bob@example.test\r\nSubject: Bob's secret\r\n\r\nfor bob only\r\n";
    site.store
        .append(bob_inbox.id, vec![NewMessage::new(raw)])
        .await
        .unwrap();
    let (alice_cookie, _) = login(&site, "alice@example.test").await;
    // Alice's own INBOX has no UID 1; Bob's folder names mean Alice's folders to her.
    for uri in [
        "/mail/read?folder=INBOX&uid=1",
        "/mail/raw?folder=INBOX&uid=1",
        "/mail/body?folder=INBOX&uid=1",
    ] {
        let (status, _, body) = get(&site, uri, &alice_cookie).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!String::from_utf8_lossy(&body).contains("for bob only"));
    }
    let (bob_cookie, _) = login(&site, "bob@example.test").await;
    let (status, headers, body) = get(&site, "/mail/raw?folder=INBOX&uid=1", &bob_cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, raw.as_bytes(), "show original is byte-exact");
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_download_as_files_with_their_names() {
    let site = site().await;
    let alice = site.store.account("alice@example.test").await.unwrap();
    let inbox = site.store.mailbox(alice.id, "INBOX").await.unwrap();
    let raw = "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: Files\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
        --b\r\nContent-Type: text/html; name=\"page.html\"\r\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.html\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nPHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\r\n--b--\r\n";
    site.store.append(inbox.id, vec![NewMessage::new(raw)]).await.unwrap();
    let (cookie, _) = login(&site, "alice@example.test").await;
    let (_, _, page) = get(&site, "/mail/read?folder=INBOX&uid=1", &cookie).await;
    let page = String::from_utf8(page).unwrap();
    let link = page
        .split("href=\"/mail/part?")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the attachment is listed")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(page.contains("résumé.html"), "listed by its decoded name");
    let (status, headers, body) = get(&site, &format!("/mail/part?{link}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"<script>alert(1)</script>");
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''r%C3%A9sum%C3%A9.html"),
        "{disposition}"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_stay_on_this_site() {
    let site = site().await;
    let body = form(&[
        ("user", "alice@example.test"),
        ("password", PASSWORD),
        ("next", "//evil.example/x"),
    ]);
    let req = request(&site, "POST", "/login", REMOTE, true)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let (_, headers, _) = send(&site, req).await;
    assert_eq!(headers[header::LOCATION], "/mail");
    let (cookie, csrf) = login(&site, "alice@example.test").await;
    let req = request(&site, "POST", "/mail/action", REMOTE, true)
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[
            ("csrf", &csrf),
            ("folder", "Trash"),
            ("action", "empty"),
            ("back", "https://evil.example/"),
        ])))
        .unwrap();
    let (status, headers, _) = send(&site, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/mail?folder=Trash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled() {
    let site = site().await;
    let mut last = StatusCode::OK;
    let mut text = String::new();
    for _ in 0..8 {
        let body = form(&[("user", "alice@example.test"), ("password", "guess")]);
        let req = request(&site, "POST", "/login", REMOTE, true)
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = send(&site, req).await;
        last = status;
        text = String::from_utf8(body).unwrap();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(text.contains("try again in"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_migration_shows_its_progress_and_a_finished_one_does_not() {
    let site = site().await;
    let alice = site.store.account("alice@example.test").await.unwrap();
    site.store
        .put_migration_source(tern_store::MigrationSource {
            name: "old".into(),
            settings: "{}".into(),
            secret: None,
        })
        .await
        .unwrap();
    let migration = site
        .store
        .put_migration(tern_store::NewMigration {
            account: alice.id,
            source: "old".into(),
            remote_user: "alice".into(),
            secret: None,
            request: "{}".into(),
        })
        .await
        .unwrap();
    let progress = |phase: &str, copied: u64| {
        serde_json::json!({ "phase": phase, "source_messages": 12000, "copied": copied }).to_string()
    };
    site.store
        .set_migration_progress(migration.id, &progress("running", 3000))
        .await
        .unwrap();
    let (cookie, _) = login(&site, "alice@example.test").await;
    let page = String::from_utf8(get(&site, "/mail", &cookie).await.2).unwrap();
    assert!(
        page.contains("still being copied") && page.contains("3,000 of 12,000 messages so far (25%)"),
        "{page}"
    );
    site.store
        .set_migration_progress(migration.id, &progress("done", 12000))
        .await
        .unwrap();
    let page = String::from_utf8(get(&site, "/mail", &cookie).await.2).unwrap();
    assert!(!page.contains("still being copied"));
}
