//! `tern admin`: who may use the admin console, and the API tokens of the JSON API
//! (tern_admin::admins, tern_admin::tokens).

use anyhow::Result;

use super::{DataDir, print_table, with_store};
use tern_admin::tokens::{Access, NewToken};

use crate::cli::{AdminCommand, TokenCommand};

fn when(t: Option<i64>) -> String {
    t.map(tern_migrate::report::timestamp).unwrap_or_else(|| "never".into())
}

pub async fn run(data: DataDir<'_>, cmd: AdminCommand) -> Result<()> {
    with_store(&data, |store| async move {
        match cmd {
            AdminCommand::Grant { email } => {
                let address = tern_admin::admins::grant(&store, &email).await?;
                println!("{address} may now use the admin console (https://HOST/admin) with its own password.");
            }
            AdminCommand::Revoke { email } => {
                tern_admin::admins::revoke(&store, &email).await?;
                println!("{email} is no longer an administrator (open console pages refuse it from the next click).");
            }
            AdminCommand::List(f) => {
                let admins = tern_admin::admins::list(&store).await?;
                if f.json {
                    println!("{}", serde_json::to_string_pretty(&admins)?);
                } else if admins.is_empty() {
                    println!("No administrators yet; make one with `tern admin grant EMAIL`.");
                } else {
                    for a in admins {
                        println!("{a}");
                    }
                }
            }
            AdminCommand::Token(TokenCommand::Create {
                name,
                read_only,
                expires_in_days,
            }) => {
                let new = NewToken {
                    name: name.clone(),
                    access: if read_only { Access::ReadOnly } else { Access::Full },
                    valid_days: expires_in_days,
                };
                let token = tern_admin::tokens::create(&store, &new, "tern admin token create").await?;
                println!("{token}");
                let lasts = match expires_in_days {
                    Some(days) => format!("expires in {days} day(s)"),
                    None => "lasts until revoked".into(),
                };
                eprintln!(
                    "API token {name} ({} access, {lasts}): shown only now. Send it as `Authorization: Bearer TOKEN` \
                     to /admin/api/v1/ (docs/admin-console.md); revoke it with `tern admin token revoke {name}`.",
                    new.access.name()
                );
            }
            AdminCommand::Token(TokenCommand::List(f)) => {
                let tokens = tern_admin::tokens::list(&store).await?;
                if f.json {
                    println!("{}", serde_json::to_string_pretty(&tokens)?);
                    return Ok(());
                }
                let now = chrono::Utc::now().timestamp();
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        let expires = match t.expires {
                            Some(at) if t.expired_at(now) => format!("expired {}", when(Some(at))),
                            Some(at) => when(Some(at)),
                            None => "never".into(),
                        };
                        vec![
                            t.name.clone(),
                            t.access.name().into(),
                            when(Some(t.created)),
                            t.created_by.clone(),
                            when(t.last_used),
                            expires,
                        ]
                    })
                    .collect();
                print_table(&["NAME", "ACCESS", "CREATED", "BY", "LAST USED", "EXPIRES"], &rows);
            }
            AdminCommand::Token(TokenCommand::Revoke { name }) => {
                tern_admin::tokens::revoke(&store, &name).await?;
                println!("Revoked API token {name}.");
            }
        }
        Ok(())
    })
    .await
}
