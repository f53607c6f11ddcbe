//! XOAUTH2 with refresh tokens: Tern renews access tokens at the provider's token
//! endpoint (RFC 6749 §6) and logs in to a Dovecot that checks each token at an
//! introspection endpoint (RFC 7662). The provider is a small Python HTTP server that
//! rotates the refresh token on every use, as Microsoft's does.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use tern_migrate::oauth::OAuthClient;
use tern_migrate::source::{AuthMethod, Credential};
use tern_migrate::state::{Pass, Phase};
use tern_store::Store;

const PROVIDER: &str = r#"
import http.server, json, sys, urllib.parse, itertools
state = {"refresh": "rt-0", "access": set()}
counter = itertools.count(1)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        get = lambda k: form.get(k, [""])[0]
        if self.path == "/token":
            ok = (get("grant_type") == "refresh_token" and get("refresh_token") == state["refresh"]
                  and get("client_id") == "tern-migration" and get("client_secret") == "client-secret")
            if not ok:
                return self.reply(400, {"error": "invalid_grant", "error_description": "unknown refresh token"})
            n = next(counter)
            state["refresh"] = "rt-%d" % n
            state["access"].add("at-%d" % n)
            return self.reply(200, {"access_token": "at-%d" % n, "token_type": "Bearer",
                                    "expires_in": 3600, "refresh_token": state["refresh"]})
        if self.path == "/introspect":
            active = get("token") in state["access"]
            return self.reply(200, {"active": active, "username": "alice"} if active else {"active": False})
        self.reply(404, {})
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Provider(Child, u16);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn provider() -> Provider {
    let mut child = Command::new("python3")
        .args(["-c", PROVIDER])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Provider(child, line.trim().parse().expect("the provider's port"))
}

fn stored_credential(bench: &Bench, sealed: &[u8]) -> Credential {
    serde_json::from_str(&bench.secrets.open(sealed).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_tokens_are_renewed_rotated_and_stored() {
    let provider = provider();
    let introspect = format!("http://127.0.0.1:{}/introspect", provider.1);
    let Some(dovecot) = dovecot(default_options().oauth2_introspection(&introspect), "oauth") else {
        return;
    };
    let bench = Bench::new(dovecot).await;
    let corpus = corpus_of(30);
    bench.fill(&corpus);
    let mut settings = bench.imap_settings();
    settings.auth = AuthMethod::Xoauth2;
    settings.oauth = Some(OAuthClient {
        token_endpoint: format!("http://127.0.0.1:{}/token", provider.1),
        client_id: "tern-migration".into(),
    });
    settings.validate().unwrap();
    bench.add_source(&settings, Some("client-secret")).await;
    let refresh = |token: &str| {
        bench.secrets.seal(
            &serde_json::to_string(&Credential::Refresh {
                refresh_token: token.into(),
            })
            .unwrap(),
        )
    };
    let m = bench
        .store
        .put_migration(tern_store::NewMigration {
            account: bench.account,
            source: "old".into(),
            remote_user: REMOTE_USER.into(),
            secret: Some(refresh("rt-0")),
            request: "{}".into(),
        })
        .await
        .unwrap();

    let progress = bench.pass(Pass::Full).await;
    assert_eq!(progress.phase, Phase::Passed, "{progress:?}");
    assert_same(&bench.source_snapshot(), &bench.tern_snapshot().await);
    // The provider rotated the refresh token; Tern stored the new one, sealed...
    let stored = bench.store.migration(ADDRESS).await.unwrap().secret.unwrap();
    let Credential::Refresh { refresh_token } = stored_credential(&bench, &stored) else {
        panic!("not a refresh token");
    };
    assert_ne!(refresh_token, "rt-0");
    // ...which the next pass uses (rt-0 no longer works at the provider).
    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(progress.phase, Phase::Passed, "{progress:?}");

    // A revoked refresh token fails the pass with what to do, and no token in the text.
    bench
        .store
        .set_migration_secret(m.id, Some(refresh("revoked")))
        .await
        .unwrap();
    let progress = bench.pass(Pass::Delta).await;
    assert_eq!(progress.phase, Phase::Failed);
    let error = progress.last_error.unwrap();
    assert!(
        error.contains("--refresh-token-stdin") && !error.contains("revoked"),
        "{error}"
    );
}
