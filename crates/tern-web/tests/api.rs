//! The JSON API under /admin/api/v1 through the router, without a socket: its OpenAPI
//! document is sound and agrees with the routes (every documented operation answered,
//! every answer valid against the documented schema for its status), tokens are
//! required and failures throttled, the CSRF guard lets bearer calls through and still
//! guards sessions, and each resource's happy path and refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tern_store::{MigrationSource, NewMigration, NewQueueEntry, Store};
use tern_web::{Client, WebConfig};
use tower::ServiceExt;

mod common;

use common::{HOST, PASSWORD, Site};

const PREFIX: &str = "/admin/api/v1";
const ORIGIN: &str = "https://mail.example.test";
/// Where the scripts call from (over TLS).
const SCRIPT: &str = "203.0.113.20:40000";

fn document() -> Value {
    serde_json::from_str(tern_web::api::OPENAPI).expect("the OpenAPI document is JSON")
}

async fn site_with(nameserver: Option<SocketAddr>) -> Site {
    Site::build(
        &["example.org"],
        &["alice@example.org", "bob@example.org"],
        WebConfig {
            hostname: HOST.into(),
            endpoints: tern_net::endpoints::ClientEndpoints {
                hostname: HOST.into(),
                https: Some(8443),
                ..Default::default()
            },
            // Nothing answers on the discard port: DNS questions fail at once.
            nameservers: vec![nameserver.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())],
            public_addresses: vec!["192.0.2.10".parse().unwrap()],
            ..Default::default()
        },
    )
    .await
}

async fn token(site: &Site, name: &str) -> String {
    tern_admin::tokens::create(site.store.as_ref(), name, "tests")
        .await
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

/// Sends one request as a script at `peer` over TLS.
async fn call_from(
    site: &Site,
    peer: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
    extra: &[(header::HeaderName, &str)],
) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
        .extension(Client {
            peer: peer.parse().unwrap(),
            tls: true,
            shutdown: site.shutdown.clone(),
        });
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in extra {
        builder = builder.header(name, *value);
    }
    let request = match body {
        Some((content_type, bytes)) => builder
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    };
    let response = site.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let raw = axum::body::to_bytes(response.into_body(), 10 << 20)
        .await
        .unwrap()
        .to_vec();
    let body = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw).unwrap_or(Value::Null)
    };
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

async fn call(site: &Site, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
    call_from(site, SCRIPT, method, &format!("{PREFIX}{path}"), Some(token), body, &[]).await
}

/// The error text of an answer that must be a JSON error with `status`.
fn error(answer: &Answer, status: StatusCode) -> String {
    assert_eq!(answer.status, status, "{}", String::from_utf8_lossy(&answer.raw));
    answer.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("a JSON error: {:?}", String::from_utf8_lossy(&answer.raw)))
        .to_string()
}

// --- A validator for the JSON Schema the document uses ----------------------------
//
// type (one or several, "null" among them), enum, required, properties,
// additionalProperties (false or a schema), items, anyOf and $ref. Answers are checked
// strictly: a property the document does not declare is an error unless the schema
// says what additional properties may be, so the document cannot fall behind the code.
// `pattern` only appears on request fields and is not checked here.

const KEYWORDS: &[&str] = &[
    "type",
    "description",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "$ref",
    "anyOf",
    "pattern",
];

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local references: {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {reference}"))
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return validate(doc, resolve(doc, reference), value, at);
    }
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        if !options.iter().any(|s| validate(doc, s, value, at).is_ok()) {
            return Err(format!("{at}: {value} matches none of anyOf"));
        }
    }
    if let Some(t) = schema.get("type") {
        let names: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("{at}: bad type {t}"),
        };
        if !names.iter().any(|n| type_matches(n, value)) {
            return Err(format!("{at}: {value} is not of type {t}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: required property {name} missing"));
            }
        }
        let declared = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (name, v) in object {
            match (declared.and_then(|d| d.get(name)), additional) {
                (Some(s), _) => validate(doc, s, v, &format!("{at}.{name}"))?,
                (None, Some(s)) if s.is_object() => validate(doc, s, v, &format!("{at}.{name}"))?,
                (None, _) if schema.get("type").is_some() || declared.is_some() => {
                    return Err(format!("{at}: property {name} is not in the document"));
                }
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Every schema in the document uses only the keywords the validator knows, and every
/// $ref anywhere resolves.
fn check_schemas_and_refs(doc: &Value, node: &Value, at: &str, in_schema: bool) {
    match node {
        Value::Object(map) => {
            if in_schema {
                for key in map.keys() {
                    assert!(KEYWORDS.contains(&key.as_str()), "{at}: keyword {key} is not validated");
                }
            }
            if let Some(Value::String(reference)) = map.get("$ref") {
                resolve(doc, reference);
            }
            for (key, child) in map {
                let child_at = format!("{at}/{key}");
                let child_in_schema = match key.as_str() {
                    "schema" | "items" | "additionalProperties" => child.is_object(),
                    _ if at.ends_with("/components/schemas") || at.ends_with("/properties") => true,
                    _ => false,
                };
                check_schemas_and_refs(doc, child, &child_at, child_in_schema);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let in_any_of = at.ends_with("/anyOf");
                check_schemas_and_refs(doc, child, &format!("{at}/{i}"), in_any_of);
            }
        }
        _ => {}
    }
}

/// (method, path template) → operation, for every operation in the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.insert((method.to_uppercase(), path.clone()), op.clone());
        }
    }
    out
}

/// Checks an answer against the documented response for its status.
fn check_answer(doc: &Value, op: &Value, answer: &Answer, what: &str) {
    let status = answer.status.as_u16().to_string();
    let response = op["responses"].get(&status).unwrap_or_else(|| {
        panic!(
            "{what}: status {status} is not documented: {}",
            String::from_utf8_lossy(&answer.raw)
        )
    });
    let response = match response.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r),
        None => response,
    };
    match response.get("content") {
        None => assert!(answer.raw.is_empty(), "{what}: {status} documents no body"),
        Some(content) => {
            let schema = &content["application/json"]["schema"];
            assert!(
                answer.headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{what}"
            );
            let value: Value = serde_json::from_slice(&answer.raw)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&answer.raw)));
            if let Err(e) = validate(doc, schema, &value, "body") {
                panic!("{what} ({status}) does not match the document: {e}\n{value:#}");
            }
        }
    }
}

#[test]
fn the_document_is_openapi_3_1_with_no_dangling_reference() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], "/admin/api/v1");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["type"], "http");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"][0]["bearer"], json!([]));
    check_schemas_and_refs(&doc, &doc, "#", false);
    let mut ids = BTreeSet::new();
    for ((method, path), op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
        assert!(op["responses"]["401"].is_object(), "{id}: 401 documented");
        // Every path parameter of the template is declared, and no other.
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(&doc, p["$ref"].as_str().unwrap()))
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(in_template, declared, "{id}: path parameters");
        for (status, response) in op["responses"].as_object().unwrap() {
            let response = match response.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(&doc, r),
                None => response,
            };
            assert!(response["description"].is_string(), "{id} {status}: description");
            if status != "204" {
                assert!(
                    response["content"]["application/json"]["schema"].is_object(),
                    "{id} {status}: schema"
                );
            }
        }
    }
}

#[test]
fn the_validator_refuses_what_does_not_match() {
    let doc = document();
    let account = json!({"$ref": "#/components/schemas/Account"});
    let good = json!({"id": 1, "address": "a@example.org", "display_name": null, "quota": null,
        "enabled": true, "used": 0, "created": 1});
    validate(&doc, &account, &good, "body").unwrap();
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("enabled");
    assert!(
        validate(&doc, &account, &missing, "body")
            .unwrap_err()
            .contains("enabled")
    );
    let mut extra = good.clone();
    extra["password_hash"] = json!("x");
    assert!(
        validate(&doc, &account, &extra, "body")
            .unwrap_err()
            .contains("password_hash")
    );
    let mut wrong = good.clone();
    wrong["quota"] = json!("big");
    assert!(validate(&doc, &account, &wrong, "body").is_err());
    let stage = json!({"$ref": "#/components/schemas/GoLiveStage"});
    assert!(validate(&doc, &stage, &json!("live"), "body").is_err());
}

/// Everything the walk needs to exist before it starts.
struct Fixture {
    queue_id: i64,
}

async fn fixture(site: &Site) -> Fixture {
    let store = site.store.as_ref();
    tern_admin::domains::add_dkim_keys(store, "example.org").await.unwrap();
    tern_admin::admins::grant(store, "alice@example.org").await.unwrap();
    store
        .put_migration_source(MigrationSource {
            name: "old".into(),
            settings: "{}".into(),
            secret: None,
        })
        .await
        .unwrap();
    let alice = store.account("alice@example.org").await.unwrap();
    store
        .put_migration(NewMigration {
            account: alice.id,
            source: "old".into(),
            remote_user: "alice".into(),
            secret: Some(vec![1, 2, 3]),
            request: "{}".into(),
        })
        .await
        .unwrap();
    let envelope = tern_smtp::queue::Envelope {
        recipients: vec![tern_smtp::queue::Recipient::new("someone@remote.example")],
        submitted_by: Some("alice@example.org".into()),
        ..Default::default()
    };
    let id = store
        .enqueue(NewQueueEntry {
            sender: "alice@example.org".into(),
            raw: b"From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n".to_vec(),
            envelope: envelope.to_json(),
            next_attempt: tern_migrate::now() + 3600,
        })
        .await
        .unwrap();
    Fixture { queue_id: id.0 }
}

/// Every documented operation, called in an order that leaves each one something to
/// act on, with a token (and first without one: 401). The walk and the document must
/// list the same operations; each answer must be the expected status and match the
/// schema documented for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_answers_as_documented() {
    let dns = tern_testkit::dns::TestDns::start().unwrap();
    dns.set_mx("example.org", &[(10, HOST)]);
    dns.set_a(HOST, &["192.0.2.10".parse().unwrap()]);
    let site = site_with(Some(dns.addr())).await;
    let token = token(&site, "walker").await;
    let fx = fixture(&site).await;
    let q = fx.queue_id;
    let doc = document();
    let ops = operations(&doc);

    // (method, template, concrete path, body, expected status). Bodies of None: no body.
    let csv = "address,name,quota\ndave@example.org,Dave Example,1GB\nnobody@elsewhere.example,,\n";
    let walk: Vec<(&str, &str, String, Option<(&str, Vec<u8>)>, u16)> = {
        let j = |v: Value| Some(("application/json", serde_json::to_vec(&v).unwrap()));
        vec![
            ("GET", "/health", "/health".into(), None, 200),
            ("GET", "/domains", "/domains".into(), None, 200),
            (
                "POST",
                "/domains",
                "/domains".into(),
                j(json!({"name": "Empty.Example."})),
                201,
            ),
            ("GET", "/domains/{domain}", "/domains/example.org".into(), None, 200),
            (
                "PUT",
                "/domains/{domain}/receiving",
                "/domains/example.org/receiving".into(),
                j(json!({"receiving": false})),
                200,
            ),
            (
                "POST",
                "/domains/{domain}/dkim/rotate",
                "/domains/example.org/dkim/rotate".into(),
                None,
                201,
            ),
            // The selector is filled in below, once a key is retired.
            ("DELETE", "/domains/{domain}/dkim/{selector}", String::new(), None, 204),
            (
                "GET",
                "/domains/{domain}/dns",
                "/domains/example.org/dns".into(),
                None,
                200,
            ),
            (
                "GET",
                "/domains/{domain}/records",
                "/domains/example.org/records".into(),
                None,
                200,
            ),
            (
                "GET",
                "/domains/{domain}/golive",
                "/domains/example.org/golive".into(),
                None,
                200,
            ),
            ("GET", "/users", "/users?domain=example.org".into(), None, 200),
            (
                "POST",
                "/users",
                "/users".into(),
                j(json!({"address": "carol@example.org", "name": "Carol", "quota": "2GB"})),
                201,
            ),
            (
                "POST",
                "/users/import",
                "/users/import".into(),
                Some(("text/csv", csv.as_bytes().to_vec())),
                200,
            ),
            (
                "GET",
                "/users/{address}",
                "/users/carol%40example.org".into(),
                None,
                200,
            ),
            (
                "PATCH",
                "/users/{address}",
                "/users/carol@example.org".into(),
                j(json!({"enabled": false, "name": null, "quota": 1048576})),
                200,
            ),
            (
                "POST",
                "/users/{address}/password",
                "/users/carol@example.org/password".into(),
                None,
                200,
            ),
            ("GET", "/migrations", "/migrations?domain=example.org".into(), None, 200),
            (
                "GET",
                "/migrations/{address}",
                "/migrations/alice@example.org".into(),
                None,
                200,
            ),
            (
                "POST",
                "/migrations/start",
                "/migrations/start".into(),
                j(json!({"user": "alice@example.org", "pass": "full", "since": "2020-01-01"})),
                200,
            ),
            (
                "POST",
                "/migrations/retry-errors",
                "/migrations/retry-errors".into(),
                j(json!({"domain": "example.org"})),
                200,
            ),
            (
                "POST",
                "/migrations/pause",
                "/migrations/pause".into(),
                j(json!({"all": true})),
                200,
            ),
            (
                "POST",
                "/migrations/resume",
                "/migrations/resume".into(),
                j(json!({"user": "alice@example.org"})),
                200,
            ),
            (
                "POST",
                "/migrations/cancel",
                "/migrations/cancel".into(),
                j(json!({"user": "alice@example.org"})),
                200,
            ),
            (
                "POST",
                "/migrations/finish",
                "/migrations/finish".into(),
                j(json!({"domain": "example.org"})),
                200,
            ),
            (
                "POST",
                "/domains/{domain}/cutover",
                "/domains/example.org/cutover".into(),
                None,
                200,
            ),
            (
                "DELETE",
                "/migrations/{address}",
                "/migrations/alice@example.org".into(),
                None,
                204,
            ),
            ("GET", "/queue", "/queue".into(), None, 200),
            ("GET", "/queue/{id}", format!("/queue/{q}"), None, 200),
            ("POST", "/queue/{id}/retry", format!("/queue/{q}/retry"), None, 200),
            ("POST", "/queue/retry", "/queue/retry".into(), None, 200),
            ("DELETE", "/queue/{id}", format!("/queue/{q}"), None, 204),
            ("GET", "/tokens", "/tokens".into(), None, 200),
            (
                "POST",
                "/tokens",
                "/tokens".into(),
                j(json!({"name": "walk-made"})),
                201,
            ),
            ("DELETE", "/tokens/{name}", "/tokens/walk-made".into(), None, 204),
            ("GET", "/admins", "/admins".into(), None, 200),
            (
                "POST",
                "/admins",
                "/admins".into(),
                j(json!({"address": "bob@example.org"})),
                201,
            ),
            (
                "DELETE",
                "/admins/{address}",
                "/admins/bob@example.org".into(),
                None,
                204,
            ),
            (
                "DELETE",
                "/users/{address}",
                "/users/carol@example.org".into(),
                None,
                204,
            ),
            (
                "DELETE",
                "/domains/{domain}",
                "/domains/empty.example".into(),
                None,
                204,
            ),
        ]
    };
    let walked: BTreeSet<(String, String)> = walk.iter().map(|w| (w.0.to_string(), w.1.to_string())).collect();
    assert_eq!(walked.len(), walk.len(), "the walk calls each operation once");
    let documented: BTreeSet<(String, String)> = ops.keys().cloned().collect();
    assert_eq!(walked, documented, "the walk and the document list the same operations");

    for (method, template, path, body, expected) in walk {
        let path = if template == "/domains/{domain}/dkim/{selector}" {
            let retired = site
                .store
                .dkim_keys(Some("example.org"))
                .await
                .unwrap()
                .into_iter()
                .find(|k| !k.active)
                .expect("rotation retired a key");
            format!("/domains/example.org/dkim/{}", retired.selector)
        } else {
            path
        };
        let op = &ops[&(method.to_string(), template.to_string())];
        let what = format!("{method} {path}");
        let url = format!("{PREFIX}{path}");

        // Without a token (and with this site as Origin, so a POST passes the CSRF
        // guard, which refuses an Origin-less POST without a token with 403 before the
        // API sees it).
        let origin = [(header::ORIGIN, ORIGIN)];
        let anonymous = call_from(&site, SCRIPT, method, &url, None, body.clone(), &origin).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{what} without a token");
        check_answer(&doc, op, &anonymous, &what);

        let answer = call_from(&site, SCRIPT, method, &url, Some(&token), body, &[]).await;
        assert_eq!(
            answer.status.as_u16(),
            expected,
            "{what}: {}",
            String::from_utf8_lossy(&answer.raw)
        );
        check_answer(&doc, op, &answer, &what);
    }

    // What the walk did is what the store now holds.
    let store = site.store.as_ref();
    assert!(store.domain("empty.example").await.is_err());
    assert!(store.account("carol@example.org").await.is_err());
    let dave = store.account("dave@example.org").await.unwrap();
    assert_eq!(dave.quota, Some(1 << 30));
    assert!(store.migration("alice@example.org").await.is_err());
    assert!(store.queue_entries().await.unwrap().is_empty());
    assert_eq!(
        tern_admin::admins::list(store).await.unwrap(),
        vec!["alice@example.org"]
    );
    let golive = tern_dns::golive::load(store, "example.org").await.unwrap();
    assert_eq!(golive.declared_by.as_deref(), Some("API token walker"));
    assert_eq!(store.domain_receiving("example.org").await.unwrap(), Some(true));
}
