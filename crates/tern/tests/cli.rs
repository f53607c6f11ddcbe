//! The `tern` command line as an administrator uses it: quickstart on a fresh folder,
//! init, domains, users, aliases, JSON listings, and errors that are one readable line
//! with a non-zero exit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tern_store::{EmbeddedStore, Store, password};

mod common;
use common::*;

#[test]
fn quickstart_creates_everything_prints_a_login_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tern-data");
    let offset = free_offset();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--data")
        .arg(&data)
        .args([
            "quickstart",
            "--domain",
            "Example.TEST",
            "--port-offset",
            &offset.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let started = Instant::now();
    while let Some(Ok(line)) = lines.next() {
        let done = line.starts_with("Stop with Ctrl-C");
        seen.push(line);
        if done || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.contains(&format!("127.0.0.1:{}", 1143 + offset)), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", 8080 + offset)), "{text}");
    let login = seen
        .iter()
        .find(|l| l.starts_with("Log in as admin@example.test with password "))
        .expect("a login line");
    let secret = login.rsplit(' ').next().unwrap().to_string();
    assert_eq!(secret.len(), 20);

    // While it runs, the CLI works on the same store.
    let users = ok(&tern(&data, &["user", "list", "--json"]));
    let users: serde_json::Value = serde_json::from_str(&users).unwrap();
    assert_eq!(users[0]["address"], "admin@example.test");
    // ... who runs the admin console, whose address is printed.
    assert!(
        text.contains(&format!("Admin console: https://127.0.0.1:{}/admin", 8443 + offset)),
        "{text}"
    );
    assert_eq!(ok(&tern(&data, &["admin", "list"])).trim(), "admin@example.test");
    let aliases = ok(&tern(&data, &["alias", "list"]));
    assert!(
        aliases.contains("postmaster@example.test") && aliases.contains("abuse@example.test"),
        "{aliases}"
    );

    // The printed login works over IMAP (STARTTLS port, loopback plaintext allowed),
    // IMAPS and POP3: the servers are wired into the running binary.
    let clients = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import imaplib, poplib, ssl, sys
imap_port, imaps_port, pop3_port, password = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
user = "admin@example.test"
m = imaplib.IMAP4("127.0.0.1", imap_port)
m.login(user, password)
print("imap", m.select("INBOX")[0])
m.logout()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=ctx)
m.login(user, password)
print("imaps", m.list()[0])
m.logout()
p = poplib.POP3("127.0.0.1", pop3_port)
p.user(user)
p.pass_(password)
print("pop3", p.stat())
p.quit()
"#,
        )
        .args([
            (1143 + offset).to_string(),
            (1993 + offset).to_string(),
            (1110 + offset).to_string(),
            secret.clone(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&clients.stdout);
    assert!(
        clients.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&clients.stderr)
    );
    assert!(
        said.contains("imap OK") && said.contains("imaps OK") && said.contains("pop3 (0, 0)"),
        "{said}"
    );

    // SIGTERM stops it cleanly.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "quickstart exits 0 on SIGTERM: {status}");

    // Everything it made is there, and the printed password is the account's.
    for f in ["tern.toml", "tls/cert.pem", "tls/key.pem", "store/tern.db"] {
        assert!(data.join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(data.join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let mode = |p: &str| std::fs::metadata(data.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("store"), 0o700, "mail and password hashes are private");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(&data.join("store")).unwrap();
        let admin = store.account("admin@example.test").await.unwrap();
        assert!(password::verify(&secret, admin.password_hash.as_deref().unwrap()));
        let names: Vec<_> = store
            .mailboxes(admin.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]);
        store.close().await.unwrap();
    });

    // A second run reuses the folder and shows no password.
    let mut again = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--data")
        .arg(&data)
        .arg("quickstart")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(again.stdout.take().unwrap()).lines();
    let mut second = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let done = line.starts_with("Stop with Ctrl-C");
        second.push(line);
        if done {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .unwrap();
    assert!(again.wait().unwrap().success());
    let second = second.join("\n");
    assert!(second.contains("Using the existing data folder"), "{second}");
    assert!(!second.contains("with password"), "{second}");
}

#[test]
fn accounts_domains_and_aliases_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let out = ok(&tern(
        data,
        &["init", "--domain", "example.com", "--hostname", "mail.example.com"],
    ));
    assert!(out.contains("tern.toml"), "{out}");
    assert!(
        std::fs::read_to_string(data.join("tern.toml"))
            .unwrap()
            .contains("\"0.0.0.0:993\"")
    );
    one_line_error(&tern(
        data,
        &["init", "--domain", "example.com", "--hostname", "mail.example.com"],
    ));

    ok(&tern(data, &["domain", "add", "example.org"]));
    let err = one_line_error(&tern(data, &["domain", "add", "example.org"]));
    assert!(err.contains("already exists"), "{err}");
    let domains: serde_json::Value = serde_json::from_str(&ok(&tern(data, &["domain", "list", "--json"]))).unwrap();
    assert_eq!(domains.as_array().unwrap().len(), 2);

    // A generated password is printed once; a piped one is taken as given.
    let out = ok(&tern(
        data,
        &[
            "user",
            "add",
            "alice@example.com",
            "--name",
            "Alice Smith",
            "--quota",
            "2GB",
        ],
    ));
    assert!(out.contains("Password: "), "{out}");
    // The first user of a domain receives its postmaster@ and abuse@ mail.
    assert!(
        out.contains("postmaster@example.com now delivers to alice@example.com"),
        "{out}"
    );
    ok(&tern_stdin(
        data,
        &["user", "add", "bob@example.org", "--password-stdin"],
        "bob's secret\n",
    ));
    let err = one_line_error(&tern(data, &["user", "add", "carol@nowhere.test"]));
    assert!(err.contains("nowhere.test") && err.contains("tern domain add"), "{err}");
    let err = one_line_error(&tern(data, &["user", "add", "not-an-address"]));
    assert!(err.contains("not-an-address"), "{err}");
    let err = one_line_error(&tern_stdin(
        data,
        &["user", "add", "dan@example.org", "--password-stdin"],
        "",
    ));
    assert!(err.contains("no password"), "{err}");

    let list = ok(&tern(data, &["user", "list"]));
    assert!(
        list.contains("alice@example.com") && list.contains("Alice Smith") && list.contains("2.0 GB"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&tern(data, &["user", "list", "--domain", "example.org", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["address"], "bob@example.org");
    assert!(
        json[0].get("password_hash").is_none(),
        "hashes never leave the store in listings"
    );

    ok(&tern_stdin(
        data,
        &["user", "passwd", "bob@example.org", "--password-stdin"],
        "new secret\n",
    ));
    ok(&tern(data, &["user", "disable", "bob@example.org"]));
    ok(&tern(data, &["user", "quota", "bob@example.org", "500MB"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&tern(data, &["user", "list", "--domain", "example.org", "--json"]))).unwrap();
    assert_eq!(json[0]["enabled"], false);
    assert_eq!(json[0]["quota"], 500u64 << 20);
    ok(&tern(data, &["user", "enable", "bob@example.org"]));

    ok(&tern(data, &["alias", "add", "sales@example.org", "bob@example.org"]));
    let err = one_line_error(&tern(data, &["alias", "add", "bob@example.org", "alice@example.com"]));
    assert!(err.contains("already in use"), "{err}");
    let aliases: serde_json::Value = serde_json::from_str(&ok(&tern(
        data,
        &["alias", "list", "--domain", "example.org", "--json"],
    )))
    .unwrap();
    let sales = aliases
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == "sales@example.org")
        .unwrap();
    assert_eq!(sales["target"], "bob@example.org");
    let postmaster = aliases
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == "postmaster@example.org")
        .unwrap();
    assert_eq!(postmaster["target"], "bob@example.org");
    ok(&tern(
        data,
        &["domain", "catch-all", "example.org", "--target", "bob@example.org"],
    ));

    let err = one_line_error(&tern(data, &["domain", "remove", "example.org"]));
    assert!(err.contains("remove them first"), "{err}");
    // Removing a user needs --yes.
    let err = one_line_error(&tern(data, &["user", "remove", "bob@example.org"]));
    assert!(err.contains("--yes"), "{err}");
    ok(&tern(data, &["user", "remove", "bob@example.org", "--yes"]));
    ok(&tern(data, &["alias", "list"]));
    ok(&tern(data, &["domain", "remove", "example.org"]));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(&data.join("store")).unwrap();
        assert!(store.account("bob@example.org").await.is_err());
        // Bob's aliases went with him; alice keeps example.com's role addresses.
        let left: Vec<String> = store
            .aliases(None)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.address)
            .collect();
        assert_eq!(left, ["abuse@example.com", "postmaster@example.com"]);
        store.close().await.unwrap();
    });
}

#[test]
fn administrators_api_tokens_and_a_csv_import_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let out = ok(&tern(
        data,
        &["init", "--domain", "example.com", "--hostname", "mail.example.com"],
    ));
    assert!(
        out.contains("admin grant"),
        "init says how to make an administrator: {out}"
    );

    // Users from a CSV file: what can be made is, the rest is reported by line.
    let csv = data.join("users.csv");
    std::fs::write(
        &csv,
        "address,name,password,quota\n\
         carol@example.com,Carol Carter,,2GB\n\
         dave@example.com,\"Dave, Jr\",daves-own-password,\n\
         erin@nowhere.test,Erin,,\n",
    )
    .unwrap();
    let out = tern(data, &["user", "import", csv.to_str().unwrap()]);
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("Created carol@example.com.") && stdout.contains("Created dave@example.com."),
        "{stdout}"
    );
    assert!(stdout.contains("2 account(s) created, 1 line(s) skipped."), "{stdout}");
    assert!(
        stderr.contains("line 4 skipped") && stderr.contains("nowhere.test"),
        "{stderr}"
    );
    let carol_password = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .expect("carol's generated password")
        .to_string();
    assert!(!stdout.contains("daves-own-password"), "a given password is not echoed");
    let again = one_line_error(&tern(data, &["user", "import", csv.to_str().unwrap()]));
    assert!(again.contains("no account was created"), "{again}");
    let err = one_line_error(&tern(data, &["user", "import", "/nonexistent/users.csv"]));
    assert!(err.contains("/nonexistent/users.csv"), "{err}");

    // Administrators.
    let out = ok(&tern(data, &["admin", "list"]));
    assert!(out.contains("No administrators"), "{out}");
    ok(&tern(data, &["admin", "grant", "Carol@Example.com"]));
    ok(&tern(data, &["admin", "grant", "dave@example.com"]));
    let admins: Vec<String> = serde_json::from_str(&ok(&tern(data, &["admin", "list", "--json"]))).unwrap();
    assert_eq!(admins, ["carol@example.com", "dave@example.com"]);
    let err = one_line_error(&tern(data, &["admin", "grant", "nobody@example.com"]));
    assert!(err.contains("nobody@example.com"), "{err}");
    ok(&tern(data, &["admin", "revoke", "dave@example.com"]));
    let err = one_line_error(&tern(data, &["admin", "revoke", "carol@example.com"]));
    assert!(err.contains("last administrator"), "{err}");

    // API tokens: printed once, listed without their secret, revoked.
    let token = ok(&tern(data, &["admin", "token", "create", "backup-script"]))
        .trim()
        .to_string();
    assert!(token.starts_with("tern_") && token.len() == 69, "{token}");
    let err = one_line_error(&tern(data, &["admin", "token", "create", "backup-script"]));
    assert!(err.contains("exists"), "{err}");
    let listed = ok(&tern(data, &["admin", "token", "list", "--json"]));
    assert!(
        listed.contains("backup-script") && !listed.contains(&token[5..]),
        "{listed}"
    );
    assert!(ok(&tern(data, &["admin", "token", "list"])).contains("never"));
    // Read-only and expiring, for a monitoring script; the expiry within bounds.
    ok(&tern(
        data,
        &[
            "admin",
            "token",
            "create",
            "monitor",
            "--read-only",
            "--expires-in-days",
            "30",
        ],
    ));
    let table = ok(&tern(data, &["admin", "token", "list"]));
    let row = table.lines().find(|l| l.starts_with("monitor")).unwrap();
    assert!(row.contains("read-only") && !row.ends_with("never"), "{table}");
    let err = one_line_error(&tern(
        data,
        &["admin", "token", "create", "forever", "--expires-in-days", "5000"],
    ));
    assert!(err.contains("1 to 3650 days"), "{err}");
    ok(&tern(data, &["admin", "token", "revoke", "backup-script"]));
    let err = one_line_error(&tern(data, &["admin", "token", "revoke", "backup-script"]));
    assert!(err.contains("no API token named backup-script"), "{err}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(&data.join("store")).unwrap();
        let carol = store.account("carol@example.com").await.unwrap();
        assert!(password::verify(
            &carol_password,
            carol.password_hash.as_deref().unwrap()
        ));
        assert_eq!(carol.quota, Some(2 << 30));
        assert_eq!(carol.display_name.as_deref(), Some("Carol Carter"));
        let dave = store.account("dave@example.com").await.unwrap();
        assert!(password::verify(
            "daves-own-password",
            dave.password_hash.as_deref().unwrap()
        ));
        store.close().await.unwrap();
    });
}

#[test]
fn configuration_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(&tern(
        data,
        &["init", "--domain", "example.com", "--hostname", "mail.example.com"],
    ));
    let config = data.join("tern.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[listen]", "[listen]\nimapz = [\"127.0.0.1:1\"]")).unwrap();
    let err = one_line_error(&tern(data, &["serve"]));
    assert!(err.contains("tern.toml") && err.contains("imapz"), "{err}");
    std::fs::write(&config, text.replace("\"0.0.0.0:993\"", "\"0.0.0.0:99999\"")).unwrap();
    let err = one_line_error(&tern(data, &["serve"]));
    assert!(err.contains("tern.toml") && err.contains("listen.imaps"), "{err}");
    // With [acme] off, the production config names certificate files that do not exist
    // yet. (With it on, they come from the CA after start: crates/tern/tests/acme.rs.)
    let without_acme = text.replace("\nenabled = true\n", "\nenabled = false\n");
    assert_ne!(without_acme, text, "tern init turns [acme] on");
    std::fs::write(&config, &without_acme).unwrap();
    let err = one_line_error(&tern(data, &["serve"]));
    assert!(err.contains("fullchain.pem"), "{err}");
    // Commands on a folder that is not a data folder say so.
    let err = one_line_error(&tern(&dir.path().join("nothing-here"), &["user", "list"]));
    assert!(err.contains("not a Tern data folder"), "{err}");
}

#[test]
fn help_describes_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_tern")).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "quickstart",
        "init",
        "serve",
        "domain",
        "user",
        "alias",
        "import",
        "admin",
        "--data",
    ] {
        assert!(help.contains(cmd), "--help mentions {cmd}");
    }
    for sub in [
        vec!["quickstart"],
        vec!["init"],
        vec!["serve"],
        vec!["domain", "add"],
        vec!["domain", "catch-all"],
        vec!["user", "add"],
        vec!["user", "passwd"],
        vec!["user", "remove"],
        vec!["alias", "add"],
        vec!["import", "maildir"],
        vec!["import", "mbox"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(&sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub:?} --help");
        assert!(
            String::from_utf8(out.stdout).unwrap().len() > 100,
            "{sub:?} has real help"
        );
    }
    // A usage error is reported by clap with a non-zero exit.
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["user", "frobnicate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
