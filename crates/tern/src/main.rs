//! The `tern` binary: parses the command line and hands each command to its module.
//! Every failure ends as one readable line on stderr and exit status 1.

mod cli;
mod commands;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::DataDir;

fn main() {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        fail(&e);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data = DataDir(&cli.data);
    match cli.command {
        Command::Quickstart(args) => commands::server::quickstart(data, args).await,
        Command::Init(args) => commands::server::init(data, args).await,
        Command::Serve => commands::server::serve(data).await,
        Command::Domain(cmd) => commands::accounts::domain(data, cmd).await,
        Command::User(cmd) => commands::accounts::user(data, cmd).await,
        Command::Alias(cmd) => commands::accounts::alias(data, cmd).await,
        Command::Import(cmd) => commands::import::run(data, cmd).await,
        Command::Migrate(cmd) => commands::migrate::run(data, cmd).await,
        Command::Queue(cmd) => commands::mail::queue(data, cmd).await,
        Command::Admin(cmd) => commands::admin::run(data, cmd).await,
        Command::Cert(cmd) => commands::cert::run(data, cmd).await,
        Command::Dns(cmd) => commands::dns::run(data, cmd).await,
        Command::Doctor(args) => commands::doctor::run(data, args).await,
    }
}

/// glibc gives every thread that allocates under contention an arena of its own, up to
/// 8 per core, and memory freed in one arena is not reused by another: a migration
/// pass, whose buffers are allocated on one thread and freed on another, peaked at
/// 164 MB with the default and 82 MB with one arena per core (docs/BENCHMARKS.md, at
/// the same speed). `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = cores.clamp(2, 8) as libc::c_int;
        // SAFETY: mallopt only sets a tuning parameter; called before any thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Prints the error and its causes on one line and exits.
fn fail(e: &anyhow::Error) -> ! {
    let mut line = format!("tern: error: {e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        // Some errors repeat their cause in their own message; say it once.
        if !line.contains(&c) {
            line.push_str(": ");
            line.push_str(&c);
        }
    }
    eprintln!("{line}");
    std::process::exit(1);
}
