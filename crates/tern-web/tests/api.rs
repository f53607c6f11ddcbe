//! The JSON API under /admin/api/v1 through the router, without a socket: its OpenAPI
//! document is sound and agrees with the routes (every documented operation answered,
//! every answer valid against the documented schema for its status), tokens are
//! required and failures throttled, the CSRF guard lets bearer calls through and still
//! guards sessions, and each resource's happy path and refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use tern_store::{MigrationSource, NewMigration, NewQueueEntry};
use tern_web::WebConfig;

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
            // Nothing answers on the discard port: DNS questions fail at once.
            nameservers: vec![nameserver.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap())],
            public_addresses: vec!["192.0.2.10".parse().unwrap()],
            ..common::config()
        },
    )
    .await
}

async fn token(site: &Site, name: &str) -> String {
    token_with(site, name, tern_admin::tokens::Access::Full).await
}

async fn token_with(site: &Site, name: &str, access: tern_admin::tokens::Access) -> String {
    let new = tern_admin::tokens::NewToken {
        name: name.into(),
        access,
        valid_days: None,
    };
    tern_admin::tokens::create(site.store.as_ref(), &new, "tests")
        .await
        .unwrap()
}

/// The token `name` as `GET /tokens` lists it, asked with `token`.
async fn listed_token(site: &Site, token: &str, name: &str) -> Value {
    let listed = call(site, "GET", "/tokens", token, None).await;
    let found = listed.body.as_array().unwrap().iter().find(|t| t["name"] == name);
    found
        .unwrap_or_else(|| panic!("{name} listed: {}", listed.body))
        .clone()
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
    let mut builder = site.request(method, path, peer, true);
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
    let (status, headers, raw) = site.send(request).await;
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
// minimum and maximum are checked too. `pattern` and `default` only appear on request
// fields and are not checked here.

const KEYWORDS: &[&str] = &[
    "type",
    "description",
    "default",
    "minimum",
    "maximum",
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
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array)
        && !options.iter().any(|s| validate(doc, s, value, at).is_ok())
    {
        return Err(format!("{at}: {value} matches none of anyOf"));
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
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < min
    {
        return Err(format!("{at}: {value} is below the minimum {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64())
        && n > max
    {
        return Err(format!("{at}: {value} is above the maximum {max}"));
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
    let days = json!({"$ref": "#/components/schemas/NewToken"});
    validate(&doc, &days, &json!({"name": "n", "expires_in_days": 3650}), "body").unwrap();
    for out_of_range in [0, 3651] {
        assert!(
            validate(
                &doc,
                &days,
                &json!({"name": "n", "expires_in_days": out_of_range}),
                "body"
            )
            .is_err()
        );
    }
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

/// One call of the walk: method, path template, concrete path, body (content type and
/// bytes), expected status.
type Step = (&'static str, &'static str, String, Option<(&'static str, Vec<u8>)>, u16);

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
    let reader = token_with(&site, "reader", tern_admin::tokens::Access::ReadOnly).await;
    let fx = fixture(&site).await;
    let q = fx.queue_id;
    let doc = document();
    let ops = operations(&doc);

    // (method, template, concrete path, body, expected status). Bodies of None: no body.
    let csv = "address,name,quota\ndave@example.org,Dave Example,1GB\nnobody@elsewhere.example,,\n";
    let walk: Vec<Step> = {
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
                j(json!({"name": "walk-made", "access": "read-only", "expires_in_days": 30})),
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

        // Without a token (and without an Origin: a script's call; the CSRF guard
        // leaves cookie-less API calls to the API, which answers 401 in JSON).
        let anonymous = call_from(&site, SCRIPT, method, &url, None, body.clone(), &[]).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{what} without a token");
        check_answer(&doc, op, &anonymous, &what);

        // A read-only token reads as a full one does and is refused every change,
        // before the change is looked at.
        if method != "GET" {
            let refused = call_from(&site, SCRIPT, method, &url, Some(&reader), body.clone(), &[]).await;
            assert!(
                error(&refused, StatusCode::FORBIDDEN).contains("token reader is read-only"),
                "{what}"
            );
            assert!(
                refused.headers[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .contains(r#"error="insufficient_scope""#),
                "{what}"
            );
            check_answer(&doc, op, &refused, &what);
        } else {
            let read = call_from(&site, SCRIPT, method, &url, Some(&reader), None, &[]).await;
            assert_eq!(read.status.as_u16(), expected, "{what} with a read-only token");
            check_answer(&doc, op, &read, &what);
        }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_without_a_token() {
    let site = site_with(None).await;
    let answer = call_from(&site, SCRIPT, "GET", "/admin/api/openapi.json", None, None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(answer.body, document());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_a_live_token() {
    let site = site_with(None).await;
    let good = token(&site, "script").await;

    let none = call_from(&site, SCRIPT, "GET", "/admin/api/v1/domains", None, None, &[]).await;
    assert!(error(&none, StatusCode::UNAUTHORIZED).contains("tern admin token create"));
    assert_eq!(none.headers[header::WWW_AUTHENTICATE], r#"Bearer realm="tern""#);

    let basic = [(header::AUTHORIZATION, "Basic YWxpY2U6cGFzcw==")];
    let other_scheme = call_from(&site, SCRIPT, "GET", "/admin/api/v1/domains", None, None, &basic).await;
    error(&other_scheme, StatusCode::UNAUTHORIZED);

    let forged = format!("tern_{}", "0".repeat(64));
    for wrong in [forged.as_str(), "not-even-a-tern-token"] {
        let answer = call(&site, "GET", "/domains", wrong, None).await;
        assert!(error(&answer, StatusCode::UNAUTHORIZED).contains("unknown or revoked"));
        let challenge = answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with(r#"Bearer realm="tern", error="invalid_token""#),
            "{challenge}"
        );
    }

    let answer = call(&site, "GET", "/domains", &good, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body[0]["name"], "example.org");
    // Used: noted on the token.
    let listed = call(&site, "GET", "/tokens", &good, None).await;
    assert!(listed.body[0]["last_used"].is_i64(), "{}", listed.body);
    assert!(listed.body[0].get("sha256").is_none());

    // An expired token is refused, and told so: the script needs a new one.
    let soon = tern_admin::tokens::NewToken {
        name: "contractor".into(),
        valid_days: Some(1),
        ..Default::default()
    };
    let contractor = tern_admin::tokens::create(site.store.as_ref(), &soon, "tests")
        .await
        .unwrap();
    assert_eq!(
        call(&site, "GET", "/domains", &contractor, None).await.status,
        StatusCode::OK
    );
    let stored = site.store.setting(tern_admin::tokens::SETTING).await.unwrap().unwrap();
    let mut tokens: Vec<Value> = serde_json::from_str(&stored).unwrap();
    for t in &mut tokens {
        if t["name"] == "contractor" {
            t["expires"] = json!(1_700_000_000);
        }
    }
    site.store
        .set_setting(
            tern_admin::tokens::SETTING,
            Some(&serde_json::to_string(&tokens).unwrap()),
        )
        .await
        .unwrap();
    let expired = call(&site, "GET", "/domains", &contractor, None).await;
    assert!(
        error(&expired, StatusCode::UNAUTHORIZED).contains("token contractor expired on 2023-11-14"),
        "{}",
        expired.body
    );
    assert!(
        expired.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token", error_description="the token expired""#)
    );
    let entry = listed_token(&site, &good, "contractor").await;
    assert_eq!(
        (entry["expired"].clone(), entry["access"].clone()),
        (json!(true), json!("full"))
    );

    // Revoked (here by another token) is refused at once.
    let other = token(&site, "other").await;
    assert_eq!(
        call(&site, "DELETE", "/tokens/script", &other, None).await.status,
        StatusCode::NO_CONTENT
    );
    error(
        &call(&site, "GET", "/domains", &good, None).await,
        StatusCode::UNAUTHORIZED,
    );
    error(
        &call(&site, "DELETE", "/tokens/script", &other, None).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_from_one_address_are_throttled_and_others_go_on() {
    let site = site_with(None).await;
    let good = token(&site, "script").await;
    let flooder = "198.51.100.7:1000";
    let wrong = format!("tern_{}", "f".repeat(64));
    for _ in 0..tern_web::api::auth::MAX_FAILURES {
        let answer = call_from(&site, flooder, "GET", "/admin/api/v1/health", Some(&wrong), None, &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right token is refused from there, without a look at the store.
    for t in [wrong.as_str(), good.as_str()] {
        let answer = call_from(&site, flooder, "GET", "/admin/api/v1/health", Some(t), None, &[]).await;
        assert!(error(&answer, StatusCode::TOO_MANY_REQUESTS).contains("try again in"));
        let retry: u64 = answer.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!(retry > 0 && retry <= tern_web::api::auth::WINDOW.as_secs(), "{retry}");
    }
    // Another address is not affected.
    let answer = call_from(&site, SCRIPT, "GET", "/admin/api/v1/health", Some(&good), None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// Logs in to webmail over TLS with a password; returns the session cookie.
async fn webmail_login(site: &Site, user: &str, password: &str) -> Option<String> {
    let body = format!(
        "user={}&password={}&next=%2Fmail",
        tern_web::page::url_encode(user),
        tern_web::page::url_encode(password)
    );
    let answer = call_from(
        site,
        SCRIPT,
        "POST",
        "/login",
        None,
        Some(("application/x-www-form-urlencoded", body.into_bytes())),
        &[(header::ORIGIN, ORIGIN)],
    )
    .await;
    if answer.status != StatusCode::SEE_OTHER {
        return None;
    }
    let cookie = answer.headers.get(header::SET_COOKIE)?.to_str().ok()?;
    Some(cookie.split(';').next()?.to_string())
}

/// Whether a session cookie still opens webmail.
async fn session_alive(site: &Site, cookie: &str) -> bool {
    let answer = call_from(
        site,
        SCRIPT,
        "GET",
        "/settings",
        None,
        None,
        &[(header::COOKIE, cookie)],
    )
    .await;
    answer.status == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csrf_guard_lets_bearer_calls_through_and_still_guards_sessions() {
    let site = site_with(None).await;
    let good = token(&site, "script").await;
    let body = || Some(("application/json", br#"{"name": "new.example"}"#.to_vec()));

    // A script: token, no cookie, no Origin.
    let answer = call_from(&site, SCRIPT, "POST", "/admin/api/v1/domains", Some(&good), body(), &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&answer.raw)
    );

    // A browser session's POST without Origin is refused as before, token or not: a
    // cookie means a browser, and the guard's rules hold.
    let cookie = webmail_login(&site, "alice@example.org", PASSWORD)
        .await
        .expect("login");
    let with_cookie = [(header::COOKIE, cookie.as_str())];
    let form = || Some(("application/x-www-form-urlencoded", b"name=Mallory".to_vec()));
    let answer = call_from(&site, SCRIPT, "POST", "/settings/profile", None, form(), &with_cookie).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&answer.raw).contains("cross-site"));
    let answer = call_from(
        &site,
        SCRIPT,
        "POST",
        "/admin/api/v1/domains",
        Some(&good),
        body(),
        &with_cookie,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&answer.raw).contains("cross-site"));
    // With the cookie, this site's Origin and the session's CSRF token missing, still
    // refused: the exemption is for requests without a session only.
    let with_origin = [(header::COOKIE, cookie.as_str()), (header::ORIGIN, ORIGIN)];
    let answer = call_from(
        &site,
        SCRIPT,
        "POST",
        "/admin/api/v1/domains",
        Some(&good),
        body(),
        &with_origin,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(site.store.domain("other.example").await.is_err());
    assert_eq!(
        site.store.domains().await.unwrap().len(),
        2,
        "only the script's domain was added"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_from_afar_is_refused_not_redirected() {
    let site = site_with(None).await;
    let good = token(&site, "script").await;
    let request = site
        .request("POST", "/admin/api/v1/queue/retry", SCRIPT, false)
        .header(header::AUTHORIZATION, format!("Bearer {good}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = site.send(request).await;
    // The token has crossed the network in the clear already: a redirect would let the
    // script go on doing that unnoticed. It is refused, in the API's error shape.
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get(header::LOCATION).is_none());
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("HTTPS only"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_checked_and_refusals_say_what_to_do() {
    let site = site_with(None).await;
    let t = token(&site, "script").await;
    let raw = |ctype: &'static str, bytes: &[u8]| Some((ctype, bytes.to_vec()));
    let post = |path: &str, body: Option<(&'static str, Vec<u8>)>| {
        let url = format!("{PREFIX}{path}");
        let t = t.clone();
        let site = &site;
        async move { call_from(site, SCRIPT, "POST", &url, Some(&t), body, &[]).await }
    };

    let e = error(
        &post("/domains", raw("application/json", b"{\"name\": ")).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("JSON"), "{e}");
    let e = error(
        &post(
            "/domains",
            raw("application/json", br#"{"name": "x.example", "owner": "me"}"#),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("unknown field `owner`"), "{e}");
    let e = error(
        &post("/domains", raw("text/plain", br#"{"name": "x.example"}"#)).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert!(e.contains("application/json"), "{e}");
    let e = error(&post("/domains", None).await, StatusCode::BAD_REQUEST);
    assert!(e.contains("needs a JSON body"), "{e}");
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(100 * 1024));
    error(
        &post("/domains", raw("application/json", big.as_bytes())).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    let e = error(
        &post("/domains", raw("application/json", br#"{"name": "not a domain"}"#)).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("write it as example.org"), "{e}");
    let e = error(
        &post("/domains", raw("application/json", br#"{"name": "EXAMPLE.org."}"#)).await,
        StatusCode::CONFLICT,
    );
    assert!(e.contains("exists already"), "{e}");

    let e = error(
        &call(&site, "GET", "/domains/nowhere.example", &t, None).await,
        StatusCode::NOT_FOUND,
    );
    assert!(e.contains("tern domain add nowhere.example"), "{e}");
    error(
        &call(&site, "GET", "/domains/nowhere.example/dns", &t, None).await,
        StatusCode::NOT_FOUND,
    );
    error(
        &call(&site, "GET", "/users?domain=nowhere.example", &t, None).await,
        StatusCode::NOT_FOUND,
    );
    let e = error(
        &call(&site, "GET", "/no/such/thing", &t, None).await,
        StatusCode::NOT_FOUND,
    );
    assert!(e.contains("openapi.json"), "{e}");
    let wrong = call(&site, "PUT", "/domains", &t, None).await;
    assert!(error(&wrong, StatusCode::METHOD_NOT_ALLOWED).contains("PUT"));
    // RFC 9110 §15.5.6: a 405 says which methods the path has.
    assert_eq!(wrong.headers[header::ALLOW], "GET,HEAD,POST");
    error(
        &call(&site, "GET", "/queue/not-a-number", &t, None).await,
        StatusCode::BAD_REQUEST,
    );
    error(
        &call(&site, "GET", "/queue/424242", &t, None).await,
        StatusCode::NOT_FOUND,
    );

    let e = error(
        &call(
            &site,
            "POST",
            "/users",
            &t,
            Some(json!({"address": "carol@example.org", "quota": "lots"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("quota") && e.contains("500MB"), "{e}");
    let e = error(
        &call(
            &site,
            "POST",
            "/users",
            &t,
            Some(json!({"address": "alice@example.org"})),
        )
        .await,
        StatusCode::CONFLICT,
    );
    assert!(e.contains("in use"), "{e}");
    error(
        &call(
            &site,
            "POST",
            "/users",
            &t,
            Some(json!({"address": "zed@nowhere.example"})),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    let e = error(
        &call(&site, "PATCH", "/users/alice@example.org", &t, Some(json!({}))).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("nothing to change"), "{e}");
    error(
        &call(
            &site,
            "PATCH",
            "/users/alice@example.org",
            &t,
            Some(json!({"quota": "12 parsecs"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    error(
        &call(
            &site,
            "PATCH",
            "/users/zed@example.org",
            &t,
            Some(json!({"enabled": true})),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    let e = error(
        &call_from(
            &site,
            SCRIPT,
            "POST",
            "/admin/api/v1/users/import",
            Some(&t),
            raw("application/json", b"{}"),
            &[],
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert!(e.contains("text/csv"), "{e}");
    let e = error(
        &call_from(
            &site,
            SCRIPT,
            "POST",
            "/admin/api/v1/users/import",
            Some(&t),
            raw("text/csv", b"who,what\nx,y\n"),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("address"), "{e}");

    let e = error(
        &call(&site, "POST", "/tokens", &t, Some(json!({"name": "script"}))).await,
        StatusCode::CONFLICT,
    );
    assert!(e.contains("exists"), "{e}");
    error(
        &call(&site, "POST", "/tokens", &t, Some(json!({"name": "no spaces please"}))).await,
        StatusCode::BAD_REQUEST,
    );

    let e = error(
        &call(
            &site,
            "POST",
            "/migrations/pause",
            &t,
            Some(json!({"user": "alice@example.org", "all": true})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("exactly one"), "{e}");
    error(
        &call(&site, "POST", "/migrations/pause", &t, Some(json!({}))).await,
        StatusCode::BAD_REQUEST,
    );
    let e = error(
        &call(
            &site,
            "POST",
            "/migrations/start",
            &t,
            Some(json!({"all": true, "pass": "finish"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("unknown variant `finish`"), "{e}");
    let e = error(
        &call(
            &site,
            "POST",
            "/migrations/start",
            &t,
            Some(json!({"all": true, "pass": "full", "since": "1st May"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("YYYY-MM-DD"), "{e}");
    let e = error(
        &call(
            &site,
            "POST",
            "/migrations/start",
            &t,
            Some(json!({"all": true, "pass": "full"})),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    assert!(e.contains("no migrations yet"), "{e}");
    let e = error(
        &call(&site, "POST", "/domains/example.org/cutover", &t, None).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("no migrations"), "{e}");

    let e = error(
        &call(&site, "DELETE", "/domains/example.org", &t, None).await,
        StatusCode::CONFLICT,
    );
    assert!(e.contains("remove them first"), "{e}");
    error(
        &call(&site, "DELETE", "/domains/example.org/dkim/nokey", &t, None).await,
        StatusCode::NOT_FOUND,
    );
    error(
        &call(&site, "DELETE", "/admins/bob@example.org", &t, None).await,
        StatusCode::NOT_FOUND,
    );
    error(
        &call(
            &site,
            "POST",
            "/admins",
            &t,
            Some(json!({"address": "zed@example.org"})),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_keys_and_records() {
    let site = site_with(None).await;
    let t = token(&site, "script").await;
    let added = call(&site, "POST", "/domains", &t, Some(json!({"name": "shop.example"}))).await;
    assert_eq!(added.status, StatusCode::CREATED);
    assert_eq!(added.body["name"], "shop.example");

    let detail = call(&site, "GET", "/domains/shop.example", &t, None).await;
    let keys = detail.body["dkim"].as_array().unwrap();
    let algorithms: BTreeSet<&str> = keys.iter().map(|k| k["algorithm"].as_str().unwrap()).collect();
    assert_eq!(algorithms, BTreeSet::from(["ed25519-sha256", "rsa-sha256"]));
    for k in keys {
        let line = k["zone_line"].as_str().unwrap();
        assert!(
            line.starts_with(&format!(
                "{}._domainkey.shop.example. 3600 IN TXT",
                k["selector"].as_str().unwrap()
            )),
            "{line}"
        );
        assert!(line.contains("v=DKIM1"), "{line}");
        assert!(k.get("private_key").is_none());
    }
    assert_eq!(detail.body["golive"]["stage"], "watching");

    // A key still signing cannot go; after a rotation the old ones can.
    let first = keys[0]["selector"].as_str().unwrap().to_string();
    let e = error(
        &call(
            &site,
            "DELETE",
            &format!("/domains/shop.example/dkim/{first}"),
            &t,
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("rotate"), "{e}");
    let rotated = call(&site, "POST", "/domains/shop.example/dkim/rotate", &t, None).await;
    assert_eq!(rotated.status, StatusCode::CREATED);
    assert_eq!(rotated.body.as_array().unwrap().len(), 2);
    assert!(rotated.body.as_array().unwrap().iter().all(|k| k["active"] == true));
    assert_eq!(
        call(
            &site,
            "DELETE",
            &format!("/domains/shop.example/dkim/{first}"),
            &t,
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );

    let records = call(&site, "GET", "/domains/shop.example/records", &t, None).await;
    assert_eq!(records.status, StatusCode::OK);
    let zone = records.body["zone"].as_str().unwrap();
    assert!(
        zone.contains("shop.example. 3600 IN MX 10 mail.example.test."),
        "{zone}"
    );
    let kinds: BTreeSet<&str> = records.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains("MX") && kinds.contains("TXT") && kinds.contains("SRV"),
        "{kinds:?}"
    );
    assert_eq!(records.body["reverse"][0]["name"], "10.2.0.192.in-addr.arpa");

    let off = call(
        &site,
        "PUT",
        "/domains/shop.example/receiving",
        &t,
        Some(json!({"receiving": false})),
    )
    .await;
    assert_eq!(off.body["receiving"], false);
    assert_eq!(site.store.domain_receiving("shop.example").await.unwrap(), Some(false));
    error(
        &call(
            &site,
            "PUT",
            "/domains/shop.example/receiving",
            &t,
            Some(json!({"receiving": "no"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(
        call(&site, "DELETE", "/domains/shop.example", &t, None).await.status,
        StatusCode::NO_CONTENT
    );
    error(
        &call(&site, "GET", "/domains/shop.example", &t, None).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_check_asks_the_configured_nameservers() {
    let dns = tern_testkit::dns::TestDns::start().unwrap();
    dns.set_mx("example.org", &[(10, "mx.old-provider.example")]);
    let site = site_with(Some(dns.addr())).await;
    let t = token(&site, "script").await;
    let report = call(&site, "GET", "/domains/example.org/dns", &t, None).await;
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(report.body["domain"], "example.org");
    let findings = report.body["reports"][0]["findings"].as_array().unwrap();
    let mx = findings.iter().find(|f| f["check"] == "MX").expect("an MX finding");
    assert!(
        mx["published"].as_str().unwrap().contains("mx.old-provider.example"),
        "{mx}"
    );
    assert_ne!(mx["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_made_changed_and_their_sessions_ended() {
    let site = site_with(None).await;
    let t = token(&site, "script").await;

    let made = call(
        &site,
        "POST",
        "/users",
        &t,
        Some(json!({"address": " carol@example.org ", "name": "Carol"})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let generated = made.body["password"].as_str().unwrap().to_string();
    assert_eq!(made.body["account"]["address"], "carol@example.org");
    assert!(made.body["account"].get("password_hash").is_none());
    assert!(webmail_login(&site, "carol@example.org", &generated).await.is_some());

    let given = call(
        &site,
        "POST",
        "/users",
        &t,
        Some(json!({"address": "erin@example.org", "password": "erin's own pass", "quota": 5000})),
    )
    .await;
    assert_eq!(given.body["password"], Value::Null);
    assert_eq!(given.body["account"]["quota"], 5000);

    let listed = call(&site, "GET", "/users?domain=EXAMPLE.org", &t, None).await;
    let addresses: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "alice@example.org",
            "bob@example.org",
            "carol@example.org",
            "erin@example.org"
        ]
    );

    // Disabling ends the account's webmail sessions and its logins.
    let cookie = webmail_login(&site, "bob@example.org", PASSWORD).await.unwrap();
    assert!(session_alive(&site, &cookie).await);
    let changed = call(
        &site,
        "PATCH",
        "/users/bob%40example.org",
        &t,
        Some(json!({"enabled": false, "quota": "1.5GiB", "name": "Bob B."})),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body["enabled"], false);
    assert_eq!(changed.body["quota"], 3 << 29);
    assert_eq!(changed.body["display_name"], "Bob B.");
    assert!(!session_alive(&site, &cookie).await);
    assert!(webmail_login(&site, "bob@example.org", PASSWORD).await.is_none());
    let cleared = call(
        &site,
        "PATCH",
        "/users/bob@example.org",
        &t,
        Some(json!({"enabled": true, "name": null, "quota": null})),
    )
    .await;
    assert_eq!(cleared.body["display_name"], Value::Null);
    assert_eq!(cleared.body["quota"], Value::Null);

    // A new password: generated (shown once) or given; either ends the sessions.
    let cookie = webmail_login(&site, "bob@example.org", PASSWORD).await.unwrap();
    let reset = call(&site, "POST", "/users/bob@example.org/password", &t, None).await;
    let new_password = reset.body["password"].as_str().unwrap().to_string();
    assert!(!session_alive(&site, &cookie).await);
    assert!(webmail_login(&site, "bob@example.org", &new_password).await.is_some());
    let set = call(
        &site,
        "POST",
        "/users/bob@example.org/password",
        &t,
        Some(json!({"password": "chosen by bob"})),
    )
    .await;
    assert_eq!(set.body, json!({"password": null}));
    assert!(webmail_login(&site, "bob@example.org", "chosen by bob").await.is_some());
    error(
        &call(
            &site,
            "POST",
            "/users/bob@example.org/password",
            &t,
            Some(json!({"password": ""})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );

    // The import reports each line that made nothing, and can run again.
    let csv = "email,DisplayName,quota\nfrank@example.org,Frank,2GB\nalice@example.org,,\ngus@example.org,,huge\n";
    let imported = call_from(
        &site,
        SCRIPT,
        "POST",
        "/admin/api/v1/users/import",
        Some(&t),
        Some(("text/csv; charset=utf-8", csv.as_bytes().to_vec())),
        &[],
    )
    .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    assert_eq!(imported.body["created"].as_array().unwrap().len(), 1);
    assert_eq!(imported.body["created"][0]["account"]["address"], "frank@example.org");
    assert!(imported.body["created"][0]["password"].is_string());
    let skipped: Vec<i64> = imported.body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["line"].as_i64().unwrap())
        .collect();
    assert_eq!(skipped, [3, 4]);

    assert_eq!(
        call(&site, "DELETE", "/users/frank@example.org", &t, None).await.status,
        StatusCode::NO_CONTENT
    );
    error(
        &call(&site, "GET", "/users/frank@example.org", &t, None).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_steered_and_admins_kept() {
    let site = site_with(None).await;
    let t = token(&site, "script").await;
    fixture(&site).await;

    let listed = call(&site, "GET", "/migrations", &t, None).await;
    assert_eq!(listed.body[0]["address"], "alice@example.org");
    assert_eq!(listed.body[0]["phase"], "idle");
    let asked = call(
        &site,
        "POST",
        "/migrations/start",
        &t,
        Some(json!({"domain": "example.org", "pass": "delta", "since": "2024-01-01", "before": "2024-02-01"})),
    )
    .await;
    assert_eq!(asked.body, json!({"migrations": 1}));
    let report = call(&site, "GET", "/migrations/alice@example.org", &t, None).await;
    assert_eq!(report.body["request"]["pass"], "delta");
    assert_eq!(report.body["request"]["since"], 1704067200);
    assert_eq!(report.body["phase"], "queued");
    call(
        &site,
        "POST",
        "/migrations/pause",
        &t,
        Some(json!({"user": "alice@example.org"})),
    )
    .await;
    let report = call(&site, "GET", "/migrations/alice@example.org", &t, None).await;
    assert_eq!(report.body["request"]["paused"], true);
    let e = error(
        &call(
            &site,
            "POST",
            "/migrations/start",
            &t,
            Some(json!({"all": true, "pass": "full", "since": "2024-02-01", "before": "2024-01-01"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("before"), "{e}");
    error(
        &call(&site, "GET", "/migrations/bob@example.org", &t, None).await,
        StatusCode::NOT_FOUND,
    );

    let cut = call(&site, "POST", "/domains/example.org/cutover", &t, None).await;
    assert_eq!(cut.status, StatusCode::OK);
    assert_eq!(cut.body["stage"], "cut-over");
    assert!(cut.body["summary"].as_str().unwrap().contains("API token script"));
    let again = error(
        &call(&site, "POST", "/domains/example.org/cutover", &t, None).await,
        StatusCode::CONFLICT,
    );
    assert!(again.contains("went live already"), "{again}");
    // After the cutover, deletions are no longer propagated.
    let e = error(
        &call(
            &site,
            "POST",
            "/migrations/start",
            &t,
            Some(json!({"all": true, "pass": "delta", "propagate_deletions": true})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("not propagated after cutover"), "{e}");

    // Administrators: the last one stays.
    let admins = call(&site, "GET", "/admins", &t, None).await;
    assert_eq!(admins.body, json!(["alice@example.org"]));
    let e = error(
        &call(&site, "DELETE", "/admins/alice@example.org", &t, None).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(e.contains("last administrator"), "{e}");
    assert_eq!(
        call(
            &site,
            "POST",
            "/admins",
            &t,
            Some(json!({"address": "alice@example.org"}))
        )
        .await
        .status,
        StatusCode::OK
    );

    // Tokens made through the API say who made them and work at once.
    let made = call(&site, "POST", "/tokens", &t, Some(json!({"name": "backup-script"}))).await;
    assert_eq!(made.status, StatusCode::CREATED);
    let secret = made.body["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tern_") && secret.len() == 69, "{secret}");
    let entry = listed_token(&site, &secret, "backup-script").await;
    assert_eq!(entry["created_by"], "API token script");
}
