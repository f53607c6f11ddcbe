//! `tern migrate`: sources, mailboxes, passes, schedule, status, reports, verify and
//! finish. The CLI only writes requests into the store; the worker inside `tern serve`
//! (or `tern migrate run`) runs the passes, so they survive the CLI exiting.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tern_admin::migrations::{Control, Mailbox, PassRequest};
use tern_migrate::report::{Report, human_bytes, human_duration};
use tern_migrate::schedule::{self, Schedule};
use tern_migrate::secrets::SecretBox;
use tern_migrate::source::{AuthMethod, Credential, Preset, Protocol, SourceSettings, TlsMode, default_port};
use tern_migrate::state::{Pass, Phase};
use tern_migrate::worker::{self, Worker, WorkerConfig, effective_phase, parse_progress, parse_request};
use tern_store::{EmbeddedStore, Migration, MigrationSource, Store};

use super::{DataDir, password_from_stdin, print_table, with_store};
use crate::cli::{
    AuthArg, MigrateAddArgs, MigrateCommand, MigrateScheduleArgs, MigrateStartArgs, MigrateStatusArgs,
    MigrationSelector, PassArg, PresetArg, ProtocolArg, SourceAddArgs, SourceCommand, TlsArg,
};

pub async fn run(data: DataDir<'_>, cmd: MigrateCommand) -> Result<()> {
    let key = data.0.join(SecretBox::FILE);
    match cmd {
        MigrateCommand::Source(SourceCommand::Add(args)) => {
            // Read stdin before opening anything, so a bad pipe fails fast.
            // The admin's password, or the OAuth client's secret: what the source keeps
            // sealed.
            let admin_password = if args.admin_password_stdin || args.client_secret_stdin {
                Some(password_from_stdin()?)
            } else {
                None
            };
            with_store(&data, |store| async move {
                source_add(&store, &key, args, admin_password).await
            })
            .await
        }
        MigrateCommand::Source(SourceCommand::List { json }) => {
            with_store(&data, |store| async move { source_list(&store, json).await }).await
        }
        MigrateCommand::Source(SourceCommand::Remove { name }) => {
            with_store(&data, |store| async move {
                store.delete_migration_source(&name).await?;
                println!("Removed source {name}.");
                Ok(())
            })
            .await
        }
        MigrateCommand::Add(args) => {
            let secret = if args.csv.is_some() {
                None
            } else if args.token_stdin {
                Some(Credential::Token {
                    access_token: password_from_stdin()?,
                })
            } else if args.refresh_token_stdin {
                Some(Credential::Refresh {
                    refresh_token: password_from_stdin()?,
                })
            } else if args.password_stdin {
                Some(Credential::Password {
                    password: password_from_stdin()?,
                })
            } else {
                None
            };
            with_store(&data, |store| async move { add(&store, &key, args, secret).await }).await
        }
        MigrateCommand::Start(args) => {
            let wait = args.wait;
            let which = MigrationSelector {
                user: args.which.user.clone(),
                domain: args.which.domain.clone(),
            };
            with_store(&data, |store| async move {
                start(&store, args).await?;
                if wait {
                    wait_for(&store, &which).await?;
                }
                Ok(())
            })
            .await
        }
        MigrateCommand::Schedule(args) => {
            with_store(&data, |store| async move { schedule_cmd(&store, args).await }).await
        }
        MigrateCommand::Status(args) => with_store(&data, |store| async move { status(&store, args).await }).await,
        MigrateCommand::Report { email, json, deliver } => {
            with_store(&data, |store| async move {
                let m = store.migration(&email).await?;
                let report = Report::load(&store, &m).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", report.text());
                }
                if deliver {
                    report.deliver(&store, m.account).await?;
                    eprintln!("The report was delivered to {email}'s INBOX.");
                }
                Ok(())
            })
            .await
        }
        MigrateCommand::Verify { email, json } => {
            with_store(&data, |store| async move { verify(&store, &key, &email, json).await }).await
        }
        MigrateCommand::Pause(which) => control(&data, which, Control::Pause).await,
        MigrateCommand::Resume(which) => control(&data, which, Control::Resume).await,
        MigrateCommand::Cancel(which) => control(&data, which, Control::Cancel).await,
        MigrateCommand::Finish { email, domain, wait } => {
            let which = MigrationSelector { user: email, domain };
            with_store(&data, |store| async move {
                let n = tern_admin::migrations::finish(&store, &which.selector()).await?;
                println!("Final pass asked for {n} mailbox(es); the source credentials are wiped when it ends.");
                if wait {
                    wait_for(&store, &which).await?;
                }
                Ok(())
            })
            .await
        }
        MigrateCommand::Cutover { domain } => {
            let config = tern::config::Config::load_settings(&data.config())?;
            with_store(&data, |store| async move {
                let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                store
                    .domain(&domain)
                    .await
                    .with_context(|| format!("{domain} is not hosted here"))?;
                let state = tern_dns::golive::declare_cutover(
                    &store,
                    &domain,
                    "tern migrate cutover",
                    &config.golive.config(),
                    tern_migrate::now(),
                )
                .await?;
                println!(
                    "{domain} is live: Tern accepts its mail, and delta passes bring over what still reaches the old provider.\n\
                     The final pass runs after {} without new mail there (inside `tern serve`; follow it with `tern migrate status --domain {domain}`).",
                    tern_migrate::report::human_duration(state.quiet_seconds)
                );
                Ok(())
            })
            .await
        }
        MigrateCommand::Run => {
            let config = tern::config::Config::load_settings(&data.config())?;
            with_store(&data, |store| async move {
                let secrets = SecretBox::open_or_create(&key)?;
                let worker = Worker::new(
                    Arc::new(store.clone()),
                    WorkerConfig {
                        secrets: Arc::new(secrets),
                        max_message_size: config.limits.max_message_size,
                    },
                );
                worker.run_until_idle().await?;
                print_status_table(&store, &store.migrations().await?).await?;
                Ok(())
            })
            .await
        }
        MigrateCommand::Remove { email } => {
            with_store(&data, |store| async move {
                tern_admin::migrations::remove(&store, &email).await?;
                println!("Forgot the migration of {email}; its copied mail stays.");
                Ok(())
            })
            .await
        }
    }
}

async fn source_add(
    store: &EmbeddedStore,
    key: &std::path::Path,
    args: SourceAddArgs,
    admin_password: Option<String>,
) -> Result<()> {
    let protocol = match args.protocol {
        ProtocolArg::Imap => Protocol::Imap,
        ProtocolArg::Pop3 => Protocol::Pop3,
    };
    let preset = match args.preset {
        PresetArg::Generic => Preset::Generic,
        PresetArg::Gmail => Preset::Gmail,
        PresetArg::Office365 => Preset::Office365,
    };
    let mut s = SourceSettings::preset(preset, protocol);
    if let Some(host) = args.host {
        s.host = host;
    }
    if let Some(tls) = args.tls {
        s.tls = match tls {
            TlsArg::Implicit => TlsMode::Implicit,
            TlsArg::Starttls => TlsMode::Starttls,
            TlsArg::None => TlsMode::None,
        };
    }
    s.port = args.port.unwrap_or_else(|| default_port(protocol, s.tls));
    if let Some(auth) = args.auth {
        s.auth = match auth {
            AuthArg::Plain => AuthMethod::Plain,
            AuthArg::Login => AuthMethod::Login,
            AuthArg::Xoauth2 => AuthMethod::Xoauth2,
        };
    }
    s.admin_user = args.admin_user;
    if let (Some(token_endpoint), Some(client_id)) = (args.token_endpoint, args.client_id) {
        s.oauth = Some(tern_migrate::oauth::OAuthClient {
            token_endpoint,
            client_id,
        });
    }
    s.allow_plaintext = args.allow_plaintext;
    if let Some(ca) = args.ca_file {
        let ca = std::fs::canonicalize(&ca).with_context(|| format!("--ca-file {}", ca.display()))?;
        s.ca_file = Some(ca.display().to_string());
    }
    if let Some(n) = args.connections {
        s.connections = n;
    }
    s.rules.exclude.extend(args.exclude);
    for rule in args.rename {
        let (from, to) = rule
            .split_once('=')
            .ok_or_else(|| anyhow!("--rename {rule:?}: write it as FROM=TO, e.g. \"Old Stuff=Archive/Old\""))?;
        s.rules.rename.push((from.trim().to_string(), to.trim().to_string()));
    }
    s.validate().map_err(|e| anyhow!(e))?;
    let secret = match admin_password {
        Some(p) => Some(SecretBox::open_or_create(key)?.seal(&p)),
        None => None,
    };
    store
        .put_migration_source(MigrationSource {
            name: args.name.clone(),
            settings: serde_json::to_string(&s)?,
            secret,
        })
        .await?;
    println!(
        "Source {}: {} {}:{} ({}, {}).",
        args.name,
        match protocol {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
        },
        s.host,
        s.port,
        tls_name(s.tls),
        match (&s.admin_user, s.auth) {
            (Some(a), _) => format!("admin login as {a}"),
            (None, AuthMethod::Xoauth2) => "OAuth access tokens".into(),
            (None, _) => "each mailbox with its own password".into(),
        }
    );
    Ok(())
}

fn tls_name(t: TlsMode) -> &'static str {
    match t {
        TlsMode::Implicit => "implicit TLS",
        TlsMode::Starttls => "STARTTLS",
        TlsMode::None => "no TLS",
    }
}

async fn source_list(store: &EmbeddedStore, json: bool) -> Result<()> {
    let sources = store.migration_sources().await?;
    let parsed: Vec<(String, SourceSettings, bool)> = sources
        .into_iter()
        .filter_map(|s| {
            let settings = serde_json::from_str(&s.settings).ok()?;
            Some((s.name, settings, s.secret.is_some()))
        })
        .collect();
    if json {
        let out: Vec<_> = parsed
            .iter()
            .map(|(name, s, has_admin)| serde_json::json!({"name": name, "settings": s, "admin_password_stored": has_admin}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = parsed
        .iter()
        .map(|(name, s, _)| {
            vec![
                name.clone(),
                format!("{:?}", s.protocol).to_lowercase(),
                format!("{}:{}", s.host, s.port),
                tls_name(s.tls).to_string(),
                s.admin_user.clone().unwrap_or_else(|| "-".into()),
                format!("{:?}", s.preset).to_lowercase(),
            ]
        })
        .collect();
    print_table(&["NAME", "PROTOCOL", "SERVER", "TLS", "ADMIN", "PRESET"], &rows);
    Ok(())
}

async fn add(
    store: &EmbeddedStore,
    key: &std::path::Path,
    args: MigrateAddArgs,
    secret: Option<Credential>,
) -> Result<()> {
    let mailboxes = match &args.csv {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            tern_admin::migrations::parse_csv(std::io::BufReader::new(file))
                .with_context(|| path.display().to_string())?
        }
        None => {
            let address = args.user.clone().unwrap_or_default();
            vec![Mailbox {
                remote_user: args.remote_user.clone().unwrap_or_else(|| address.clone()),
                address,
                credential: secret,
                user_root: None,
            }]
        }
    };
    let secrets = SecretBox::open_or_create(key)?;
    let n = tern_admin::migrations::add(store, &secrets, &args.source, &mailboxes).await?;
    println!(
        "Added {n} mailbox(es) from {}. Start copying with `tern migrate start`.",
        args.source
    );
    if args.csv.is_some() {
        eprintln!("The passwords are stored encrypted; delete the CSV file now.");
    }
    Ok(())
}

/// The migrations a selector names; an error if it names none.
async fn select(store: &EmbeddedStore, which: &MigrationSelector) -> Result<Vec<Migration>> {
    Ok(tern_admin::migrations::select(store, &which.selector()).await?)
}

/// `YYYY-MM-DD` as unix seconds at midnight UTC.
fn parse_date(flag: &str, text: &str) -> Result<i64> {
    let d = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| anyhow!("{flag} {text:?}: write the date as YYYY-MM-DD"))?;
    Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0))
}

async fn start(store: &EmbeddedStore, args: MigrateStartArgs) -> Result<()> {
    let since = args.since.as_deref().map(|d| parse_date("--since", d)).transpose()?;
    let before = args.before.as_deref().map(|d| parse_date("--before", d)).transpose()?;
    let pass = match args.pass {
        PassArg::Prestage => Pass::Prestage,
        PassArg::Full => Pass::Full,
        PassArg::Delta => Pass::Delta,
        PassArg::RetryErrors => Pass::RetryErrors,
    };
    let n = tern_admin::migrations::start(
        store,
        &args.which.selector(),
        PassRequest {
            pass,
            since,
            before,
            propagate_deletions: args.propagate_deletions,
        },
    )
    .await?;
    println!(
        "{} pass asked for {n} mailbox(es).{}",
        pass.name(),
        if pass.windowed() {
            " Pre-stage passes run inside the schedule's windows (tern migrate schedule)."
        } else {
            ""
        }
    );
    Ok(())
}

async fn control(data: &DataDir<'_>, which: MigrationSelector, what: Control) -> Result<()> {
    with_store(data, |store| async move {
        let n = tern_admin::migrations::control(&store, &which.selector(), what).await?;
        println!("{n} migration(s) {}.", what.past_tense());
        Ok(())
    })
    .await
}

async fn load_schedule(store: &EmbeddedStore) -> Result<Schedule> {
    Ok(match store.setting(schedule::SETTING).await? {
        Some(json) => serde_json::from_str(&json).context("the stored schedule is unreadable; set it again")?,
        None => Schedule::default(),
    })
}

async fn schedule_cmd(store: &EmbeddedStore, args: MigrateScheduleArgs) -> Result<()> {
    let mut s = load_schedule(store).await?;
    let mut changed = false;
    if !args.window.is_empty() {
        s.windows = args.window.clone();
        changed = true;
    }
    if args.always {
        s.windows.clear();
        changed = true;
    }
    if let Some(tz) = args.tz {
        s.tz = tz;
        changed = true;
    }
    if let Some(r) = &args.max_rate {
        s.max_rate = tern_migrate::throttle::parse_rate(r).map_err(|e| anyhow!("--max-rate: {e}"))?;
        changed = true;
    }
    if let Some(r) = &args.mailbox_max_rate {
        s.mailbox_max_rate = tern_migrate::throttle::parse_rate(r).map_err(|e| anyhow!("--mailbox-max-rate: {e}"))?;
        changed = true;
    }
    if let Some(n) = args.mailboxes_in_parallel {
        s.mailboxes_in_parallel = n;
        changed = true;
    }
    s.validate().map_err(|e| anyhow!(e))?;
    if changed {
        store
            .set_setting(schedule::SETTING, Some(&serde_json::to_string(&s)?))
            .await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let rate = |r: Option<u64>| {
        r.map(|r| format!("{}/s", human_bytes(r)))
            .unwrap_or_else(|| "no cap".into())
    };
    println!(
        "Pre-stage windows: {} ({})",
        if s.windows.is_empty() {
            "any time".to_string()
        } else {
            s.windows.join(", ")
        },
        s.tz
    );
    println!(
        "Rate: {} overall, {} per mailbox",
        rate(s.max_rate),
        rate(s.mailbox_max_rate)
    );
    println!("Mailboxes at once: {}", s.mailboxes_in_parallel);
    let now = chrono::Utc::now();
    if !s.is_open(now)
        && let Some(next) = s.next_open(now)
    {
        println!(
            "Closed now; the next window opens {}.",
            next.format("%Y-%m-%d %H:%M UTC")
        );
    }
    Ok(())
}

/// A text progress bar: `[######......] 52%`.
fn bar(done: u64, total: u64) -> String {
    const WIDTH: usize = 20;
    if total == 0 {
        return format!("[{}]   -", ".".repeat(WIDTH));
    }
    let share = (done.min(total) as f64) / total as f64;
    let filled = (share * WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:>3}%",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        (share * 100.0).floor() as u64
    )
}

async fn print_status_table(store: &EmbeddedStore, migrations: &[Migration]) -> Result<()> {
    let mut rows = Vec::new();
    for m in migrations {
        let report = Report::load(store, m).await?;
        let p = &report.progress;
        let (copied, total) = (report.copied(), report.source_messages());
        rows.push(vec![
            m.address.clone(),
            report.phase.name().to_string(),
            p.pass.map(|x| x.name().to_string()).unwrap_or_else(|| "-".into()),
            bar(copied, total),
            format!("{copied}/{total}"),
            human_bytes(p.copied_bytes),
            if report.phase == Phase::Running {
                format!("{}/s", human_bytes(p.rate as u64))
            } else {
                "-".into()
            },
            if report.phase == Phase::Running {
                p.eta().map(human_duration).unwrap_or_else(|| "-".into())
            } else {
                "-".into()
            },
            p.errors.to_string(),
        ]);
    }
    print_table(
        &[
            "MAILBOX", "STATE", "PASS", "PROGRESS", "MESSAGES", "COPIED", "RATE", "ETA", "ERRORS",
        ],
        &rows,
    );
    for m in migrations {
        let p = parse_progress(m);
        if let Some(e) = &p.last_error {
            match p.retry_at {
                Some(t) if p.phase == Phase::Failed => {
                    println!(
                        "{}: {e} (tried again at {})",
                        m.address,
                        tern_migrate::report::timestamp(t)
                    )
                }
                _ => println!("{}: {e}", m.address),
            }
        }
    }
    Ok(())
}

async fn status(store: &EmbeddedStore, args: MigrateStatusArgs) -> Result<()> {
    loop {
        let selected = select(store, &args.which).await?;
        if args.json {
            let mut out = Vec::new();
            for m in &selected {
                out.push(Report::load(store, m).await?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            if args.watch && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                // Clear the screen and start at the top (ANSI), like `watch`.
                print!("\x1b[2J\x1b[H");
            }
            print_status_table(store, &selected).await?;
            print_golive(store, &selected).await?;
        }
        let active = selected.iter().any(|m| {
            matches!(
                effective_phase(&parse_request(m), &parse_progress(m)),
                Phase::Running | Phase::Queued
            )
        });
        if !args.watch || !active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !args.json {
            println!();
        }
    }
}

/// Where each domain of the listed migrations is in going live.
async fn print_golive(store: &EmbeddedStore, migrations: &[Migration]) -> Result<()> {
    let mut domains: Vec<&str> = migrations
        .iter()
        .filter_map(|m| m.address.rsplit_once('@').map(|(_, d)| d))
        .collect();
    domains.sort_unstable();
    domains.dedup();
    if !domains.is_empty() {
        println!();
    }
    for domain in domains {
        let state = tern_dns::golive::load(store, domain).await?;
        println!("Go-live of {domain}: {}", state.summary());
    }
    Ok(())
}

/// Waits until the selected migrations are neither queued nor running.
async fn wait_for(store: &EmbeddedStore, which: &MigrationSelector) -> Result<()> {
    let started = std::time::Instant::now();
    let mut hinted = false;
    loop {
        let selected = select(store, which).await?;
        let phases: Vec<Phase> = selected
            .iter()
            .map(|m| effective_phase(&parse_request(m), &parse_progress(m)))
            .collect();
        if !phases.iter().any(|p| matches!(p, Phase::Running | Phase::Queued)) {
            print_status_table(store, &selected).await?;
            return Ok(());
        }
        if !hinted && started.elapsed() > Duration::from_secs(15) && !phases.contains(&Phase::Running) {
            eprintln!("Still queued: is `tern serve` running? (Or run the passes here with `tern migrate run`.)");
            hinted = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn verify(store: &EmbeddedStore, key: &std::path::Path, email: &str, json: bool) -> Result<()> {
    let m = store.migration(email).await?;
    let (source, settings) = tern_migrate::source::load(store, &m.source).await?;
    let secrets = SecretBox::open_or_create(key)?;
    let login = worker::login_for(&secrets, &m, &source, &settings)
        .map_err(|e| anyhow!("{e}; verify needs the source credentials, so run it before `finish`"))?;
    let request = parse_request(&m);
    let verdict =
        tern_migrate::verify::verify(store, m.account, &settings, &login, request.user_root.as_deref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", verdict.text());
    }
    if verdict.missing() > 0 {
        bail!("{} message(s) at the source are not in Tern", verdict.missing());
    }
    Ok(())
}
