//! The admin console's routes without a socket or a browser: who may use it (the login
//! page without a session, a 403 page for an account that is not an administrator),
//! every page for an administrator, and every action changing what it should in the
//! store: domains, DKIM rotation, receiving and cutover, users (a generated password
//! that logs in, a reset that ends the user's sessions, disabling, a CSV import), the
//! migration requests, the outbound queue, API tokens; and a POST without the session's
//! CSRF token refused. (crates/tern/tests/console.rs drives the same pages in Chromium.)

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use tern_migrate::state::{Pass, Request as MigrationRequest};
use tern_store::{NewMigration, NewQueueEntry};
use tern_web::WebConfig;

mod common;

use common::{HOST, PASSWORD, Site, config};

const ADMIN: &str = "alice@example.test";
const USER: &str = "bob@example.test";
const ORIGIN: &str = "https://mail.example.test";
const REMOTE: &str = "203.0.113.9:50000";

async fn site_with(config: WebConfig) -> Site {
    let site = Site::build(&["example.test"], &[ADMIN, USER], config).await;
    tern_admin::admins::grant(site.store.as_ref(), ADMIN).await.unwrap();
    site
}

async fn site() -> Site {
    site_with(config()).await
}

/// What a response said.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn request(site: &Site, method: &str, uri: &str) -> axum::http::request::Builder {
    site.request(method, uri, REMOTE, true)
}

async fn send(site: &Site, request: Request<Body>) -> Answer {
    let (status, headers, body) = site.send(request).await;
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", tern_web::page::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A logged-in browser: its cookie and the session's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn login_with(site: &Site, user: &str, password: &str) -> Answer {
    let req = request(site, "POST", "/login")
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[
            ("user", user),
            ("password", password),
            ("next", "/admin"),
        ])))
        .unwrap();
    send(site, req).await
}

async fn login(site: &Site, user: &str) -> Session {
    let answer = login_with(site, user, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // Webmail's settings page carries the session's CSRF token for everyone.
    let page = get(site, "/settings", &cookie).await;
    let csrf = page
        .body
        .split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();
    Session { cookie, csrf }
}

async fn get(site: &Site, uri: &str, cookie: &str) -> Answer {
    let req = request(site, "GET", uri)
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    send(site, req).await
}

/// Posts a form as the session's page does (its CSRF token added).
async fn post(site: &Site, s: &Session, uri: &str, fields: &[(&str, &str)]) -> Answer {
    let mut pairs = vec![("csrf", s.csrf.as_str())];
    pairs.extend_from_slice(fields);
    post_raw(site, &s.cookie, uri, form(&pairs)).await
}

async fn post_raw(site: &Site, cookie: &str, uri: &str, body: String) -> Answer {
    let req = request(site, "POST", uri)
        .header(header::COOKIE, cookie)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(site, req).await
}

/// The text of the first `<code class="secret">` of a page: a password or token shown once.
fn secret(page: &str) -> String {
    let after = page
        .split("<code class=\"secret\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no secret on the page: {page}"));
    let text = after.split_once('>').unwrap().1;
    text.split("</code>").next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_the_console_sends_to_the_login_page() {
    let site = site().await;
    for (uri, next) in [
        ("/admin", "%2Fadmin"),
        (
            "/admin/users?domain=example.test",
            "%2Fadmin%2Fusers%3Fdomain%3Dexample.test",
        ),
        ("/admin/health", "%2Fadmin%2Fhealth"),
    ] {
        let answer = get(&site, uri, "").await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(answer.location(), format!("/login?next={next}"), "{uri}");
    }
    // A script (no HTML wanted) is told 401, and a POST changes nothing.
    let answer = post_raw(&site, "", "/admin/domains", form(&[("domain", "new.test")])).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(site.store.domain("new.test").await.is_err());
    // Logging in with next=/admin comes back to the console.
    let answer = login_with(&site, ADMIN, PASSWORD).await;
    assert_eq!(answer.location(), "/admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_that_is_not_an_administrator_gets_403_saying_how_to_become_one() {
    let site = site().await;
    let bob = login(&site, USER).await;
    for uri in ["/admin", "/admin/users", "/admin/tokens", "/admin/queue"] {
        let answer = get(&site, uri, &bob.cookie).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(
            answer.body.contains("is not an administrator of this server")
                && answer.body.contains("tern admin grant ADDRESS"),
            "{}",
            answer.body
        );
    }
    let answer = post(&site, &bob, "/admin/domains", &[("domain", "new.test")]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(site.store.domain("new.test").await.is_err());
    let answer = post(&site, &bob, "/admin/tokens", &[("name", "mine")]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(tern_admin::tokens::list(site.store.as_ref()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sees_every_page_in_the_frame() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    for (uri, marker) in [
        ("/admin", "All is well"),
        ("/admin/domains", "Add domain"),
        ("/admin/domains/example.test", "DNS records to publish"),
        ("/admin/users", "Import from a CSV file"),
        ("/admin/users?domain=example.test", USER),
        ("/admin/migrations", "No mailboxes are being migrated"),
        ("/admin/queue", "The queue is empty"),
        ("/admin/health", "Listeners"),
        ("/admin/tokens", "No API tokens yet"),
    ] {
        let answer = get(&site, uri, &admin.cookie).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.body);
        assert!(answer.body.contains(marker), "{uri} lacks {marker:?}: {}", answer.body);
        // The frame: navigation, the administrator, a logout form with the CSRF token.
        assert!(
            answer.body.contains(">API tokens</a>") && answer.body.contains(ADMIN),
            "{uri}"
        );
        let logout = answer.body.split("action=\"/logout\"").nth(1).unwrap_or("");
        assert!(
            logout
                .split("</form>")
                .next()
                .unwrap()
                .contains(&format!("name=\"csrf\" value=\"{}\"", admin.csrf)),
            "{uri}: the logout form carries the CSRF token"
        );
        assert_eq!(
            answer.headers[header::CONTENT_SECURITY_POLICY],
            tern_web::page::PAGE_CSP,
            "{uri}"
        );
    }
    // The domain page carries the zone snippet to publish.
    let page = get(&site, "/admin/domains/example.test", &admin.cookie).await.body;
    assert!(
        page.contains("example.test. 3600 IN MX 10 mail.example.test."),
        "{page}"
    );
    // Something not there is a 404 page, not an empty one, leading back to the console.
    let missing = get(&site, "/admin/domains/nowhere.test", &admin.cookie).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.body.contains(r#"href="/admin">Back to the console"#) && missing.body.contains("nowhere.test"),
        "{}",
        missing.body
    );
    assert_eq!(
        get(&site, "/admin/users?domain=nowhere.test", &admin.cookie)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&site, "/admin/migrations/bob@example.test", &admin.cookie)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_domain_gives_it_signing_keys_and_rotation_retires_them() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    let answer = post(&site, &admin, "/admin/domains", &[("domain", " New.Test. ")]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), "/admin/domains/new.test?done=domain-added");
    let page = get(&site, answer.location(), &admin.cookie).await.body;
    assert!(page.contains("The domain is added"), "{page}");
    let keys = site.store.dkim_keys(Some("new.test")).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(page.contains(&keys[0].selector));

    // Not a domain name; a domain hosted already.
    let answer = post(&site, &admin, "/admin/domains", &[("domain", "<script>")]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(!answer.body.contains("<script>"), "escaped: {}", answer.body);
    let answer = post(&site, &admin, "/admin/domains", &[("domain", "new.test")]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let answer = post(&site, &admin, "/admin/domains/new.test/dkim/rotate", &[]).await;
    assert_eq!(answer.location(), "/admin/domains/new.test?done=dkim-rotated");
    let keys = site.store.dkim_keys(Some("new.test")).await.unwrap();
    assert_eq!(keys.len(), 4);
    let retired = keys.iter().find(|k| !k.active).unwrap().selector.clone();
    let signing = keys.iter().find(|k| k.active).unwrap().selector.clone();
    // A key still signing is refused; a retired one asks first, then goes.
    let answer = post(
        &site,
        &admin,
        &format!("/admin/domains/new.test/dkim/{signing}/delete"),
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let uri = format!("/admin/domains/new.test/dkim/{retired}/delete");
    let answer = post(&site, &admin, &uri, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("Delete DKIM key"));
    assert_eq!(site.store.dkim_keys(Some("new.test")).await.unwrap().len(), 4);
    let answer = post(&site, &admin, &uri, &[("confirm", "yes")]).await;
    assert_eq!(answer.location(), "/admin/domains/new.test?done=dkim-deleted");
    assert_eq!(site.store.dkim_keys(Some("new.test")).await.unwrap().len(), 3);

    let answer = post(
        &site,
        &admin,
        "/admin/domains/new.test/receiving",
        &[("receiving", "no")],
    )
    .await;
    assert_eq!(answer.location(), "/admin/domains/new.test?done=receiving-off");
    assert_eq!(site.store.domain_receiving("new.test").await.unwrap(), Some(false));
    post(
        &site,
        &admin,
        "/admin/domains/new.test/receiving",
        &[("receiving", "yes")],
    )
    .await;
    assert_eq!(site.store.domain_receiving("new.test").await.unwrap(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_gets_a_generated_password_shown_once_that_logs_in() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    let answer = post(
        &site,
        &admin,
        "/admin/users",
        &[
            ("address", "carol@example.test"),
            ("name", "Carol <C>"),
            ("quota", "2GB"),
            ("password", ""),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        answer.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    let password = secret(&answer.body);
    assert!(password.len() >= 12, "{password:?}");
    let account = site.store.account("carol@example.test").await.unwrap();
    assert_eq!(account.display_name.as_deref(), Some("Carol <C>"));
    assert_eq!(account.quota, Some(2 << 30));
    assert!(tern_store::password::verify(
        &password,
        account.password_hash.as_deref().unwrap()
    ));
    assert_eq!(
        login_with(&site, "carol@example.test", &password).await.status,
        StatusCode::SEE_OTHER
    );
    // The list shows her, her name escaped.
    let page = get(&site, "/admin/users", &admin.cookie).await.body;
    assert!(
        page.contains("Carol &#60;C&#62;") || page.contains("Carol &lt;C&gt;"),
        "{page}"
    );
    assert!(!page.contains(&password), "the password is shown once only");

    // A given password is kept and not shown; a bad quota and an address in use refused.
    let answer = post(
        &site,
        &admin,
        "/admin/users",
        &[("address", "dan@example.test"), ("password", "dans-own-password")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(!answer.body.contains("dans-own-password"));
    assert_eq!(
        login_with(&site, "dan@example.test", "dans-own-password").await.status,
        StatusCode::SEE_OTHER
    );
    let answer = post(
        &site,
        &admin,
        "/admin/users",
        &[("address", "erin@example.test"), ("quota", "lots")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(site.store.account("erin@example.test").await.is_err());
    let answer = post(&site, &admin, "/admin/users", &[("address", USER)]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = post(&site, &admin, "/admin/users", &[("address", "x@nowhere.test")]).await;
    assert!(answer.status.is_client_error(), "{}", answer.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_ends_the_users_sessions_and_the_new_one_works() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    let bob = login(&site, USER).await;
    assert_eq!(get(&site, "/settings", &bob.cookie).await.status, StatusCode::OK);
    let answer = post(&site, &admin, "/admin/users/bob%40example.test/password", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let password = secret(&answer.body);
    assert_eq!(get(&site, "/settings", &bob.cookie).await.status, StatusCode::SEE_OTHER);
    assert_eq!(login_with(&site, USER, PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(login_with(&site, USER, &password).await.status, StatusCode::SEE_OTHER);
    // The administrator's own session goes on.
    assert_eq!(get(&site, "/admin", &admin.cookie).await.status, StatusCode::OK);
    let answer = post(&site, &admin, "/admin/users/nobody%40example.test/password", &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_ends_their_sessions_and_logins() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    let bob = login(&site, USER).await;
    let answer = post(
        &site,
        &admin,
        "/admin/users/bob%40example.test/enabled",
        &[("enabled", "no")],
    )
    .await;
    assert_eq!(answer.location(), "/admin/users?domain=example.test&done=user-disabled");
    assert!(!site.store.account(USER).await.unwrap().enabled);
    assert_eq!(get(&site, "/settings", &bob.cookie).await.status, StatusCode::SEE_OTHER);
    assert_ne!(login_with(&site, USER, PASSWORD).await.status, StatusCode::SEE_OTHER);
    let page = get(&site, answer.location(), &admin.cookie).await.body;
    assert!(page.contains("The account is disabled"), "{page}");

    let answer = post(
        &site,
        &admin,
        "/admin/users/bob%40example.test/enabled",
        &[("enabled", "yes")],
    )
    .await;
    assert_eq!(answer.location(), "/admin/users?domain=example.test&done=user-enabled");
    assert!(site.store.account(USER).await.unwrap().enabled);
    assert_eq!(login_with(&site, USER, PASSWORD).await.status, StatusCode::SEE_OTHER);

    // Administrators cannot lock themselves out; nonsense is refused.
    let answer = post(
        &site,
        &admin,
        "/admin/users/alice%40example.test/enabled",
        &[("enabled", "no")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(site.store.account(ADMIN).await.unwrap().enabled);
    let answer = post(
        &site,
        &admin,
        "/admin/users/bob%40example.test/enabled",
        &[("enabled", "maybe")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

/// A multipart/form-data body with a csrf field (if any) and a file.
fn multipart(csrf: Option<&str>, file: &str) -> (String, String) {
    let boundary = "----tern-console-test";
    let mut body = String::new();
    if let Some(csrf) = csrf {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"users.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{file}\r\n--{boundary}--\r\n"
    ));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn import(site: &Site, s: &Session, csrf: Option<&str>, file: &str) -> Answer {
    let (content_type, body) = multipart(csrf, file);
    let req = request(site, "POST", "/admin/users/import")
        .header(header::COOKIE, &s.cookie)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    send(site, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_creates_the_good_lines_and_lists_the_bad_ones() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    let csv = "address,name,quota\nfran@example.test,Fran,500MB\ngus@elsewhere.test,Gus,\nhal@example.test,Hal,a lot\n";
    // Without the session's token the multipart form is refused, and nothing is made.
    let answer = import(&site, &admin, None, csv).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = import(&site, &admin, Some("not-the-token"), csv).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(site.store.account("fran@example.test").await.is_err());

    let answer = import(&site, &admin, Some(&admin.csrf), csv).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        answer.body.contains("Imported 1 account(s), skipped 2 line(s)"),
        "{}",
        answer.body
    );
    let password = secret(&answer.body);
    let fran = site.store.account("fran@example.test").await.unwrap();
    assert_eq!(fran.quota, Some(500 << 20));
    assert!(tern_store::password::verify(
        &password,
        fran.password_hash.as_deref().unwrap()
    ));
    assert!(answer.body.contains("Line 3: gus@elsewhere.test"), "{}", answer.body);
    assert!(
        answer.body.contains("Line 4: hal@example.test: quota"),
        "{}",
        answer.body
    );
    assert!(site.store.account("gus@elsewhere.test").await.is_err());

    // A file without the columns line says what it needs.
    let answer = import(&site, &admin, Some(&admin.csrf), "fran@example.test\n").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("must name its columns"), "{}", answer.body);

    // The console takes as large a file as the API does, and no larger.
    let limit = tern_admin::users::MAX_CSV_BYTES;
    // One account; the bulk is a column without a name, which the import ignores.
    let mut large = String::from("address,name\nzed@example.test,Zed,");
    large.push_str(&"z".repeat(limit - large.len() - 1));
    large.push('\n');
    let answer = import(&site, &admin, Some(&admin.csrf), &large).await;
    assert_eq!(answer.status, StatusCode::OK, "a file of the limit's size");
    assert!(site.store.account("zed@example.test").await.is_ok());
    large.push('z');
    let answer = import(&site, &admin, Some(&admin.csrf), &large).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.body.contains("The CSV file is larger than 8"), "{}", answer.body);
}

/// A migration of bob's mailbox from a (never reached) IMAP source, with a sealed secret.
async fn add_migration(site: &Site, address: &str) {
    let mut settings = tern_migrate::source::SourceSettings::preset(
        tern_migrate::source::Preset::Generic,
        tern_migrate::source::Protocol::Imap,
    );
    settings.host = "127.0.0.1".into();
    site.store
        .put_migration_source(tern_store::MigrationSource {
            name: "old".into(),
            settings: serde_json::to_string(&settings).unwrap(),
            secret: None,
        })
        .await
        .unwrap();
    let account = site.store.account(address).await.unwrap();
    site.store
        .put_migration(NewMigration {
            account: account.id,
            source: "old".into(),
            remote_user: address.into(),
            secret: Some(vec![1, 2, 3]),
            request: "{}".into(),
        })
        .await
        .unwrap();
}

async fn migration_request(site: &Site, address: &str) -> MigrationRequest {
    let m = site.store.migration(address).await.unwrap();
    serde_json::from_str(&m.request).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_actions_write_the_request_the_worker_reads() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    add_migration(&site, USER).await;
    add_migration(&site, ADMIN).await;
    let page = get(&site, "/admin/migrations", &admin.cookie).await.body;
    assert!(page.contains(USER) && page.contains("idle"), "{page}");

    let action = "/admin/migrations/action";
    let answer = post(
        &site,
        &admin,
        action,
        &[("action", "start"), ("pass", "full"), ("user", USER)],
    )
    .await;
    assert_eq!(answer.location(), "/admin/migrations?done=migration-started");
    let r = migration_request(&site, USER).await;
    assert_eq!((r.seq, r.pass, r.paused), (1, Pass::Full, false));
    assert_eq!(migration_request(&site, ADMIN).await.seq, 0, "only bob's");
    let page = get(&site, "/admin/migrations", &admin.cookie).await.body;
    assert!(page.contains("queued") && page.contains("data-refresh"), "{page}");

    post(&site, &admin, action, &[("action", "pause"), ("user", USER)]).await;
    assert!(migration_request(&site, USER).await.paused);
    post(
        &site,
        &admin,
        action,
        &[("action", "resume"), ("user", USER), ("back", "detail")],
    )
    .await
    .location()
    .starts_with("/admin/migrations/bob%40example.test?done=")
    .then_some(())
    .expect("back to the mailbox's page");
    assert!(!migration_request(&site, USER).await.paused);

    // A whole domain at once.
    let answer = post(
        &site,
        &admin,
        action,
        &[("action", "start"), ("pass", "delta"), ("domain", "example.test")],
    )
    .await;
    assert_eq!(
        answer.location(),
        "/admin/migrations?domain=example.test&done=migration-started"
    );
    assert_eq!(migration_request(&site, ADMIN).await.pass, Pass::Delta);
    assert_eq!(migration_request(&site, USER).await.seq, 2);
    post(&site, &admin, action, &[("action", "retry")]).await;
    assert_eq!(migration_request(&site, USER).await.pass, Pass::RetryErrors);

    // Finishing asks first; then the final pass is requested.
    let answer = post(&site, &admin, action, &[("action", "finish"), ("user", USER)]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("wipe"), "{}", answer.body);
    assert_eq!(migration_request(&site, USER).await.pass, Pass::RetryErrors);
    let answer = post(
        &site,
        &admin,
        action,
        &[("action", "finish"), ("user", USER), ("confirm", "yes")],
    )
    .await;
    assert_eq!(answer.location(), "/admin/migrations?done=migration-finish");
    assert_eq!(migration_request(&site, USER).await.pass, Pass::Finish);

    // Refusals: a pass that is not one, an action that is not one, a mailbox not migrating.
    for fields in [
        vec![("action", "start"), ("pass", "finish"), ("user", USER)],
        vec![("action", "explode"), ("user", USER)],
    ] {
        assert_eq!(
            post(&site, &admin, action, &fields).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    let answer = post(
        &site,
        &admin,
        action,
        &[("action", "pause"), ("user", "carol@example.test")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let page = get(&site, "/admin/migrations/bob%40example.test", &admin.cookie)
        .await
        .body;
    assert!(
        page.contains("Migration of bob@example.test") && page.contains("Folders"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_needs_the_mx_checkbox_then_turns_receiving_on() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    site.store.set_domain_receiving("example.test", false).await.unwrap();
    // No migrations: nothing to cut over.
    let uri = "/admin/domains/example.test/cutover";
    let answer = post(&site, &admin, uri, &[("confirm", "yes"), ("checked", "yes")]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    add_migration(&site, USER).await;
    let answer = post(&site, &admin, uri, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("I have changed the MX record"), "{}", answer.body);
    let answer = post(&site, &admin, uri, &[("confirm", "yes")]).await;
    assert_eq!(answer.status, StatusCode::OK, "the box must be ticked");
    assert_eq!(site.store.domain_receiving("example.test").await.unwrap(), Some(false));
    let answer = post(&site, &admin, uri, &[("confirm", "yes"), ("checked", "yes")]).await;
    assert_eq!(answer.location(), "/admin/domains/example.test?done=cutover");
    assert_eq!(site.store.domain_receiving("example.test").await.unwrap(), Some(true));
    let state = tern_dns::golive::load(site.store.as_ref(), "example.test")
        .await
        .unwrap();
    assert_eq!(state.declared_by.as_deref(), Some("admin console (alice@example.test)"));
    assert_eq!(migration_request(&site, USER).await.pass, Pass::Delta);
    let page = get(&site, answer.location(), &admin.cookie).await.body;
    assert!(page.contains("went live"), "{page}");
    // Twice is refused.
    let answer = post(&site, &admin, uri, &[("confirm", "yes"), ("checked", "yes")]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_can_be_retried_now_and_deleted() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    let later = chrono::Utc::now().timestamp() + 3600;
    let envelope = serde_json::json!({
        "recipients": [{"address": "far@remote.test", "status": "pending", "attempts": 2,
                        "last_reply": "451 4.7.1 try again later", "remote_host": "mx.remote.test"}],
        "attempts": 2
    })
    .to_string();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = site
            .store
            .enqueue(NewQueueEntry {
                sender: USER.into(),
                raw: b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
                envelope: envelope.clone(),
                next_attempt: later,
            })
            .await
            .unwrap();
        ids.push(id);
    }
    let page = get(&site, "/admin/queue", &admin.cookie).await.body;
    assert!(
        page.contains("far@remote.test") && page.contains("451 4.7.1 try again later"),
        "{page}"
    );

    let answer = post(&site, &admin, &format!("/admin/queue/{}/retry", ids[0].0), &[]).await;
    assert_eq!(answer.location(), "/admin/queue?done=queue-retry");
    let now = chrono::Utc::now().timestamp();
    assert!(site.store.queue_entry(ids[0]).await.unwrap().next_attempt <= now);
    assert_eq!(site.store.queue_entry(ids[1]).await.unwrap().next_attempt, later);
    post(&site, &admin, "/admin/queue/retry-all", &[]).await;
    assert!(site.store.queue_entry(ids[1]).await.unwrap().next_attempt <= now + 1);

    let uri = format!("/admin/queue/{}/delete", ids[0].0);
    let answer = post(&site, &admin, &uri, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.contains("Delete queued message"));
    assert!(site.store.queue_entry(ids[0]).await.is_ok());
    let answer = post(&site, &admin, &uri, &[("confirm", "yes")]).await;
    assert_eq!(answer.location(), "/admin/queue?done=queue-deleted");
    assert!(site.store.queue_entry(ids[0]).await.is_err());
    assert_eq!(
        post(&site, &admin, "/admin/queue/999999/delete", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(site.store.queue_entries().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_is_shown_once_and_can_be_revoked() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    let answer = post(&site, &admin, "/admin/tokens", &[("name", "backup-script")]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let token = secret(&answer.body);
    assert!(token.starts_with("tern_"), "{token}");
    assert!(
        answer.body.contains(&format!(
            "curl -H \"Authorization: Bearer {token}\" https://mail.example.test:8443/admin/api/v1/health"
        )),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("Access: full. It lasts until it is revoked."),
        "{}",
        answer.body
    );
    let store = site.store.as_ref();
    let live = |token: String| async move {
        match tern_admin::tokens::authenticate(store, &token).await.unwrap() {
            tern_admin::tokens::Checked::Valid(t) => Some(t.name),
            _ => None,
        }
    };
    assert_eq!(live(token.clone()).await.as_deref(), Some("backup-script"));
    let list = tern_admin::tokens::list(store).await.unwrap();
    assert_eq!(list[0].created_by, ADMIN);
    let page = get(&site, "/admin/tokens", &admin.cookie).await.body;
    assert!(page.contains("backup-script") && !page.contains(&token), "{page}");

    // A read-only token for monitoring, expiring in 30 days.
    let answer = post(
        &site,
        &admin,
        "/admin/tokens",
        &[("name", "monitor"), ("access", "read-only"), ("expires_in_days", "30")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        answer.body.contains("Access: read-only. Expires in 30 day(s), on "),
        "{}",
        answer.body
    );
    let monitor = tern_admin::tokens::list(store).await.unwrap().pop().unwrap();
    assert_eq!(monitor.access, tern_admin::tokens::Access::ReadOnly);
    assert_eq!(monitor.expires.map(|e| e - monitor.created), Some(30 * 86_400));
    let page = get(&site, "/admin/tokens", &admin.cookie).await.body;
    assert!(page.contains(r#"<td class="access">read-only</td>"#), "{page}");
    for (field, value) in [
        ("access", "admin"),
        ("expires_in_days", "soon"),
        ("expires_in_days", "0"),
    ] {
        let refused = post(&site, &admin, "/admin/tokens", &[("name", "odd"), (field, value)]).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{field}={value}");
    }
    // The same name twice, and a bad name, are refused.
    assert_eq!(
        post(&site, &admin, "/admin/tokens", &[("name", "backup-script")])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(&site, &admin, "/admin/tokens", &[("name", "a b")]).await.status,
        StatusCode::BAD_REQUEST
    );

    let uri = "/admin/tokens/backup-script/revoke";
    assert_eq!(post(&site, &admin, uri, &[]).await.status, StatusCode::OK);
    assert!(live(token.clone()).await.is_some());
    let answer = post(&site, &admin, uri, &[("confirm", "yes")]).await;
    assert_eq!(answer.location(), "/admin/tokens?done=token-revoked");
    assert!(live(token.clone()).await.is_none());
    assert_eq!(
        post(&site, &admin, uri, &[("confirm", "yes")]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let site = site().await;
    let admin = login(&site, ADMIN).await;
    for body in [
        form(&[("domain", "new.test")]),
        form(&[("domain", "new.test"), ("csrf", "0123")]),
    ] {
        let answer = post_raw(&site, &admin.cookie, "/admin/domains", body).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
    }
    // From another site, even with the token.
    let req = request(&site, "POST", "/admin/domains")
        .header(header::COOKIE, &admin.cookie)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[("domain", "new.test"), ("csrf", &admin.csrf)])))
        .unwrap();
    assert_eq!(send(&site, req).await.status, StatusCode::FORBIDDEN);
    assert!(site.store.domain("new.test").await.is_err());
    let answer = post_raw(
        &site,
        &admin.cookie,
        "/admin/users/bob%40example.test/password",
        String::new(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(tern_store::password::verify(
        PASSWORD,
        site.store
            .account(USER)
            .await
            .unwrap()
            .password_hash
            .as_deref()
            .unwrap()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_page_asks_the_configured_resolver_and_says_what_to_publish() {
    let dns = tern_testkit::dns::TestDns::start().unwrap();
    dns.set_mx("example.test", &[(10, "mx.old-provider.test")]);
    dns.set_a(HOST, &["192.0.2.10".parse().unwrap()]);
    let site = site_with(WebConfig {
        nameservers: vec![dns.addr()],
        ..config()
    })
    .await;
    tern_admin::domains::add_dkim_keys(site.store.as_ref(), "example.test")
        .await
        .unwrap();
    let admin = login(&site, ADMIN).await;
    let answer = get(&site, "/admin/domains/example.test/dns", &admin.cookie).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let page = answer.body;
    assert!(page.contains("DNS status of example.test"), "{page}");
    assert!(page.contains("mx.old-provider.test"), "the published MX: {page}");
    assert!(page.contains("badge error") || page.contains("badge warning"), "{page}");
    // What to publish: the MX naming this host, the DKIM keys' TXT records.
    assert!(
        page.contains("example.test. 3600 IN MX 10 mail.example.test."),
        "{page}"
    );
    assert!(page.contains("._domainkey.example.test. 3600 IN TXT"), "{page}");
}
