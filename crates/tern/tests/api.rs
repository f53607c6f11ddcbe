//! The JSON API of the running binary, end to end: `tern quickstart`, a token from
//! `tern admin token create`, then curl over HTTPS as an administrator's script would
//! call it (add a domain, add a user, import a CSV file, reset a password and log in
//! with it over IMAP, disable the user, the queue, health), and the token revoked.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

mod common;

use common::{Quickstart, ok, tern};

/// A script calling the API with curl; its token travels in a header file (mode 0600),
/// never on a command line other processes could read.
struct Script {
    base: String,
    header_file: PathBuf,
    _dir: tempfile::TempDir,
}

struct Reply {
    code: u16,
    headers: String,
    body: Value,
    text: String,
}

impl Script {
    fn new(server: &Quickstart, token: &str) -> Script {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let header_file = dir.path().join("auth-header");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&header_file)
            .unwrap();
        writeln!(f, "Authorization: Bearer {token}").unwrap();
        Script {
            base: format!("https://127.0.0.1:{}", server.port(8443)),
            header_file,
            _dir: dir,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> Reply {
        self.call_with(method, path, body, true)
    }

    fn call_with(&self, method: &str, path: &str, body: Option<(&str, &str)>, with_token: bool) -> Reply {
        let headers_out = self._dir.path().join("reply-headers");
        let mut cmd = Command::new("curl");
        cmd.args([
            "--silent",
            "--show-error",
            "--insecure",
            "--write-out",
            "\n%{http_code}",
        ])
        .args(["--request", method])
        .arg("--dump-header")
        .arg(&headers_out);
        if with_token {
            cmd.arg("--header").arg(format!("@{}", self.header_file.display()));
        }
        if let Some((content_type, data)) = body {
            cmd.args([
                "--header",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                data,
            ]);
        }
        let out = cmd.arg(format!("{}{path}", self.base)).output().expect("curl runs");
        assert!(
            out.status.success(),
            "curl {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        Reply {
            code: code.parse().unwrap(),
            headers: std::fs::read_to_string(&headers_out).unwrap_or_default(),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
            text: body.to_string(),
        }
    }

    fn json(&self, method: &str, path: &str, body: Value) -> Reply {
        self.call(method, path, Some(("application/json", &body.to_string())))
    }
}

/// Logs in over IMAPS with Python's imaplib; returns whether the login succeeded.
fn imap_login(server: &Quickstart, user: &str, password: &str) -> bool {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import imaplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
try:
    m.login(user, password)
except imaplib.IMAP4.error as e:
    print("refused", e)
    sys.exit(3)
print("selected", m.select("INBOX")[0])
m.logout()
"#,
        )
        .args([server.port(1993).to_string(), user.to_string(), password.to_string()])
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    match out.status.code() {
        Some(0) => {
            assert!(said.contains("selected OK"), "{said}");
            true
        }
        Some(3) => false,
        _ => panic!("imaplib failed: {said}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Checks answers against the schemas of the served OpenAPI document with Python's
/// jsonschema (Draft 2020-12, the dialect of OpenAPI 3.1): an independent validator
/// beside the web crate's own, and every component schema checked against the
/// metaschema. `checks` are (schema, answer) pairs.
fn validate_with_jsonschema(doc: &Value, checks: &[(Value, Value)]) {
    let input = json!({"doc": doc, "checks": checks}).to_string();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import json, sys
import jsonschema
data = json.load(sys.stdin)
components = data["doc"]["components"]
for name, schema in components["schemas"].items():
    jsonschema.Draft202012Validator.check_schema(schema)
failures = []
for i, (schema, answer) in enumerate(data["checks"]):
    root = dict(schema, **{"$schema": "https://json-schema.org/draft/2020-12/schema", "components": components})
    for error in jsonschema.Draft202012Validator(root).iter_errors(answer):
        failures.append("check %d at %s: %s" % (i, list(error.absolute_path), error.message))
print("\n".join(failures) or "valid %d" % len(data["checks"]))
sys.exit(1 if failures else 0)
"#,
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("valid {}", checks.len())
    );
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_of(name: &str) -> Value {
    json!({"type": "array", "items": schema(name)})
}

fn token_file_is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o077 == 0
}

#[test]
fn a_script_administers_the_running_server_with_a_token() {
    let server = Quickstart::start();
    let token = ok(&tern(&server.data, &["admin", "token", "create", "e2e-script"]))
        .trim()
        .to_string();
    assert!(token.starts_with("tern_"), "{token}");
    let script = Script::new(&server, &token);
    assert!(token_file_is_private(&script.header_file));

    // The description, without a token.
    let doc = script.call_with("GET", "/admin/api/openapi.json", None, false);
    assert_eq!(doc.code, 200);
    assert_eq!(doc.body["servers"][0]["url"], "/admin/api/v1");

    let health = script.call("GET", "/admin/api/v1/health", None);
    assert_eq!(health.code, 200, "{}", health.text);
    assert!(!health.body["version"].as_str().unwrap().is_empty());
    let services: Vec<&str> = health.body["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["service"].as_str().unwrap())
        .collect();
    assert!(
        services.contains(&"https") && services.contains(&"imaps"),
        "{services:?}"
    );
    assert_eq!(health.body["store"]["domains"], 1);

    // A monitoring script's token: it reads, and is refused any change.
    let monitor = ok(&tern(
        &server.data,
        &[
            "admin",
            "token",
            "create",
            "monitoring",
            "--read-only",
            "--expires-in-days",
            "30",
        ],
    ))
    .trim()
    .to_string();
    let monitoring = Script::new(&server, &monitor);
    let read = monitoring.call("GET", "/admin/api/v1/health", None);
    assert_eq!(read.code, 200, "{}", read.text);
    let refused = monitoring.json("POST", "/admin/api/v1/domains", json!({"name": "nope.example"}));
    assert_eq!(refused.code, 403, "{}", refused.text);
    assert!(
        refused.body["error"].as_str().unwrap().contains("read-only"),
        "{}",
        refused.text
    );

    // A domain, with its DKIM keys and the records to publish.
    let added = script.json("POST", "/admin/api/v1/domains", json!({"name": "shop.example"}));
    assert_eq!(added.code, 201, "{}", added.text);
    let again = script.json("POST", "/admin/api/v1/domains", json!({"name": "shop.example"}));
    assert_eq!(again.code, 409, "{}", again.text);
    let records = script.call("GET", "/admin/api/v1/domains/shop.example/records", None);
    assert_eq!(records.code, 200, "{}", records.text);
    let zone = records.body["zone"].as_str().unwrap();
    assert!(zone.contains("shop.example. 3600 IN MX"), "{zone}");
    assert!(zone.contains("._domainkey.shop.example. 3600 IN TXT"), "{zone}");

    // A user, and more from a CSV file.
    let dana = script.json(
        "POST",
        "/admin/api/v1/users",
        json!({"address": "dana@shop.example", "name": "Dana", "quota": "1GB"}),
    );
    assert_eq!(dana.code, 201, "{}", dana.text);
    assert_eq!(
        dana.body["role_aliases"],
        json!(["postmaster@shop.example", "abuse@shop.example"])
    );
    let generated = dana.body["password"].as_str().unwrap().to_string();
    assert!(imap_login(&server, "dana@shop.example", &generated));

    let csv = "address,name,quota\neli@shop.example,Eli,500MB\nfay@shop.example,Fay,\ndana@shop.example,Dana again,\n";
    let imported = script.call("POST", "/admin/api/v1/users/import", Some(("text/csv", csv)));
    assert_eq!(imported.code, 200, "{}", imported.text);
    assert_eq!(imported.body["created"].as_array().unwrap().len(), 2);
    assert_eq!(imported.body["skipped"][0]["line"], 4);
    let users = script.call("GET", "/admin/api/v1/users?domain=shop.example", None);
    let addresses: Vec<&str> = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["dana@shop.example", "eli@shop.example", "fay@shop.example"]);

    // A password reset, used over IMAP; the old one is dead.
    let eli_first = imported.body["created"][0]["password"].as_str().unwrap().to_string();
    let reset = script.call("POST", "/admin/api/v1/users/eli%40shop.example/password", None);
    assert_eq!(reset.code, 200, "{}", reset.text);
    let eli_password = reset.body["password"].as_str().unwrap().to_string();
    assert!(imap_login(&server, "eli@shop.example", &eli_password));
    assert!(!imap_login(&server, "eli@shop.example", &eli_first));

    // Disabled: no more logins.
    let disabled = script.json(
        "PATCH",
        "/admin/api/v1/users/eli@shop.example",
        json!({"enabled": false}),
    );
    assert_eq!(disabled.code, 200, "{}", disabled.text);
    assert_eq!(disabled.body["enabled"], false);
    assert!(!imap_login(&server, "eli@shop.example", &eli_password));

    let queue = script.call("GET", "/admin/api/v1/queue", None);
    assert_eq!(queue.code, 200, "{}", queue.text);
    assert!(queue.body.is_array());
    let retried = script.call("POST", "/admin/api/v1/queue/retry", None);
    assert_eq!(retried.body, json!({"messages": queue.body.as_array().unwrap().len()}));

    let bad = script.json(
        "POST",
        "/admin/api/v1/users",
        json!({"address": "gus@shop.example", "shell": "/bin/sh"}),
    );
    assert_eq!(bad.code, 400);
    assert!(
        bad.body["error"].as_str().unwrap().contains("unknown field `shell`"),
        "{}",
        bad.text
    );

    // Revoked with the CLI: refused at once.
    ok(&tern(&server.data, &["admin", "token", "revoke", "e2e-script"]));
    let refused = script.call("GET", "/admin/api/v1/health", None);
    assert_eq!(refused.code, 401, "{}", refused.text);
    assert!(
        refused
            .headers
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"tern\""),
        "{}",
        refused.headers
    );
    assert!(refused.body["error"].is_string());

    // The answers are what the document describes.
    validate_with_jsonschema(
        &doc.body,
        &[
            (schema("Health"), health.body.clone()),
            (schema("Domain"), added.body.clone()),
            (schema("Error"), again.body.clone()),
            (schema("Records"), records.body.clone()),
            (schema("Created"), dana.body.clone()),
            (schema("Import"), imported.body.clone()),
            (list_of("Account"), users.body.clone()),
            (schema("PasswordSet"), reset.body.clone()),
            (schema("Account"), disabled.body.clone()),
            (list_of("QueuedMessage"), queue.body.clone()),
            (schema("QueueCount"), retried.body.clone()),
            (schema("Error"), refused.body.clone()),
        ],
    );
    // ... and a wrong answer is caught, so the check above can fail.
    let mut wrong = dana.body.clone();
    wrong["account"]["quota"] = json!("a lot");
    let caught = std::panic::catch_unwind(|| validate_with_jsonschema(&doc.body, &[(schema("Created"), wrong)]));
    assert!(caught.is_err(), "jsonschema must refuse a string quota");

    // Each change is in the log with the token's name; the token itself never is.
    let log = server.log_tail(100_000);
    assert!(log.contains("API: domain added"), "{}", server.log_tail(40));
    assert!(log.contains("e2e-script"));
    assert!(!log.contains(&token), "the token must never be logged");
    assert!(
        !log.contains(&eli_password) && !log.contains(&generated),
        "passwords must never be logged"
    );
}
