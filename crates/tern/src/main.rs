//! The `tern` binary: parses the command line and hands each command to its module.
//! Every failure ends as one readable line on stderr and exit status 1.

mod cli;
mod commands;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::DataDir;

fn main() {
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
