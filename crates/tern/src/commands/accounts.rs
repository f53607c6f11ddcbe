//! `tern domain`, `tern user` and `tern alias`: the directory of who receives mail here.

use anyhow::{Context, Result, bail};
use tern_admin::users::{self, Created, NewUser};
use tern_store::Store;

use super::{DataDir, human_size, password_from_stdin, print_table, with_store};
use crate::cli::{AliasCommand, DomainCommand, UserCommand};

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn domain(data: DataDir<'_>, cmd: DomainCommand) -> Result<()> {
    with_store(&data, |store| async move {
        match cmd {
            DomainCommand::Add { domain } => {
                let d = tern_admin::domains::add(&store, &domain).await?;
                println!("Added domain {} with DKIM keys for signing its outgoing mail.", d.name);
                println!("Next: `tern user add someone@{}` to create an account;", d.name);
                println!("`tern domain dkim {}` prints the DNS records to publish.", d.name);
            }
            DomainCommand::Dkim { domain, rotate, delete } => {
                super::mail::dkim(&store, &domain, rotate, delete).await?;
            }
            DomainCommand::Receiving { domain, receiving } => {
                let on = receiving == "yes";
                store.set_domain_receiving(&domain, on).await?;
                if on {
                    println!("The MX now accepts mail for {domain}.");
                } else {
                    println!("The MX now asks senders to retry mail for {domain} later (451 4.3.2).");
                }
            }
            DomainCommand::List(f) => {
                let domains = store.domains().await?;
                if f.json {
                    return print_json(&domains);
                }
                let rows: Vec<Vec<String>> = domains
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            d.accounts.to_string(),
                            d.aliases.to_string(),
                            d.catch_all.clone().unwrap_or_else(|| "-".into()),
                            if d.receiving { "yes" } else { "not yet" }.into(),
                        ]
                    })
                    .collect();
                print_table(&["DOMAIN", "ACCOUNTS", "ALIASES", "CATCH-ALL", "RECEIVING"], &rows);
            }
            DomainCommand::Remove { domain } => {
                store.delete_domain(&domain).await?;
                println!("Removed domain {domain}.");
            }
            DomainCommand::CatchAll { domain, target, off: _ } => {
                store.set_catch_all(&domain, target.as_deref()).await?;
                match target {
                    Some(t) => println!("Mail to unknown addresses at {domain} now goes to {t}."),
                    None => println!("Mail to unknown addresses at {domain} is refused again."),
                }
            }
        }
        Ok(())
    })
    .await
}

/// The password given on standard input, or `None` to have one generated.
fn given_password(from_stdin: bool) -> Result<Option<String>> {
    Ok(if from_stdin { Some(password_from_stdin()?) } else { None })
}

/// Says which role addresses now reach a new account, and its generated password.
fn print_created(created: &Created) {
    println!("Created {}.", created.account.address);
    for address in &created.role_aliases {
        println!(
            "{address} now delivers to {} (RFC 5321 requires postmaster).",
            created.account.address
        );
    }
}

pub async fn user(data: DataDir<'_>, cmd: UserCommand) -> Result<()> {
    with_store(&data, |store| async move {
        match cmd {
            UserCommand::Add {
                email,
                name,
                quota,
                password_stdin,
            } => {
                let created = users::add(
                    &store,
                    NewUser {
                        address: email,
                        display_name: name,
                        password: given_password(password_stdin)?,
                        quota: quota.and_then(|q| q.0),
                    },
                )
                .await?;
                print_created(&created);
                if let Some(p) = &created.password {
                    println!("Password: {p}");
                    println!(
                        "(shown only now; change it with `tern user passwd {}`)",
                        created.account.address
                    );
                }
            }
            UserCommand::List { domain, json } => {
                let accounts = store.accounts(domain.as_deref()).await?;
                if json.json {
                    return print_json(&accounts);
                }
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|a| {
                        vec![
                            a.address.clone(),
                            a.display_name.clone().unwrap_or_default(),
                            if a.enabled { "enabled".into() } else { "disabled".into() },
                            human_size(a.used),
                            a.quota.map_or_else(|| "unlimited".into(), human_size),
                        ]
                    })
                    .collect();
                print_table(&["ADDRESS", "NAME", "STATE", "USED", "QUOTA"], &rows);
            }
            UserCommand::Passwd { email, password_stdin } => {
                let shown = users::reset_password(&store, &email, given_password(password_stdin)?.as_deref()).await?;
                println!("Changed the password of {email}.");
                if let Some(p) = shown {
                    println!("New password: {p}");
                }
            }
            UserCommand::Disable { email } => {
                store.set_enabled(&email, false).await?;
                println!("Disabled {email}: it can no longer log in; its mail is kept.");
            }
            UserCommand::Enable { email } => {
                store.set_enabled(&email, true).await?;
                println!("Enabled {email}.");
            }
            UserCommand::Quota { email, size } => {
                store.set_quota(&email, size.0).await?;
                println!(
                    "Quota of {email}: {}.",
                    size.0.map_or_else(|| "unlimited".into(), human_size)
                );
            }
            UserCommand::Remove { email, yes } => {
                let a = store.account(&email).await?;
                if !yes {
                    bail!(
                        "this deletes {} and all its mail ({}); run again with --yes to confirm",
                        a.address,
                        human_size(a.used)
                    );
                }
                users::remove(&store, &email).await?;
                println!("Removed {} and its mail.", a.address);
            }
            UserCommand::Import { file, json } => {
                let input = std::fs::File::open(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let import = users::import_csv(&store, std::io::BufReader::new(input)).await?;
                if json.json {
                    return print_json(&import);
                }
                if import.created.is_empty() && !import.skipped.is_empty() {
                    let why: Vec<String> = import
                        .skipped
                        .iter()
                        .map(|(line, why)| format!("line {line}: {why}"))
                        .collect();
                    bail!("no account was created from {}: {}", file.display(), why.join("; "));
                }
                for created in &import.created {
                    print_created(created);
                    if let Some(p) = &created.password {
                        println!("  password: {p}");
                    }
                }
                for (line, why) in &import.skipped {
                    eprintln!("line {line} skipped: {why}");
                }
                println!(
                    "{} account(s) created, {} line(s) skipped.",
                    import.created.len(),
                    import.skipped.len()
                );
                if import.created.iter().any(|c| c.password.is_some()) {
                    println!("The generated passwords are shown only now: hand them out, then clear this screen.");
                }
            }
        }
        Ok(())
    })
    .await
}

pub async fn alias(data: DataDir<'_>, cmd: AliasCommand) -> Result<()> {
    with_store(&data, |store| async move {
        match cmd {
            AliasCommand::Add { address, target } => {
                let a = store.create_alias(&address, &target).await?;
                println!("Mail to {} now reaches {}.", a.address, a.target);
            }
            AliasCommand::List { domain, json } => {
                let aliases = store.aliases(domain.as_deref()).await?;
                if json.json {
                    return print_json(&aliases);
                }
                let rows: Vec<Vec<String>> = aliases
                    .iter()
                    .map(|a| vec![a.address.clone(), a.target.clone()])
                    .collect();
                print_table(&["ALIAS", "DELIVERS TO"], &rows);
            }
            AliasCommand::Remove { address } => {
                store.delete_alias(&address).await?;
                println!("Removed alias {address}.");
            }
        }
        Ok(())
    })
    .await
}
