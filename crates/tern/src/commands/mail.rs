//! `tern domain dkim` and `tern queue`: a domain's signing keys, and outgoing mail
//! waiting for delivery.

use anyhow::Result;
use tern_smtp::queue::{Envelope, Status};
use tern_store::{QueueId, Store};

use super::{DataDir, human_size, print_table, with_store};
use crate::cli::QueueCommand;

pub async fn dkim(store: &dyn Store, domain: &str, rotate: bool, delete: Option<String>) -> Result<()> {
    let domain = store.domain(domain).await?.name;
    if let Some(selector) = delete {
        tern_admin::domains::delete_dkim_key(store, &domain, &selector).await?;
        println!("Deleted DKIM key {selector} of {domain}; remove its DNS record too.");
        return Ok(());
    }
    if rotate {
        tern_admin::domains::rotate_dkim(store, &domain).await?;
        println!("New DKIM keys for {domain}; outgoing mail is signed with them from now on.");
        println!("Publish their records (below) now; delete the old keys' records after a few days.");
        println!();
    }
    let keys = store.dkim_keys(Some(&domain)).await?;
    if keys.is_empty() {
        println!("{domain} has no DKIM keys; make them with `tern domain dkim {domain} --rotate`.");
        return Ok(());
    }
    println!("; DKIM records for {domain} (RFC 6376): publish these TXT records.");
    for key in &keys {
        let state = if key.active {
            "signing"
        } else {
            "retired: remove once mail signed with it is delivered"
        };
        println!("; {} ({}, {state})", key.selector, key.algorithm.name());
        println!("{}", tern_dns::records::dkim_record(key).zone_line());
    }
    Ok(())
}

fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Delivered => "delivered",
        Status::Failed => "failed",
    }
}

pub async fn queue(data: DataDir<'_>, cmd: QueueCommand) -> Result<()> {
    with_store(&data, |store| async move {
        match cmd {
            QueueCommand::List(f) => {
                let entries = store.queue_entries().await?;
                if f.json {
                    let items: Vec<serde_json::Value> = entries
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "id": e.id.0,
                                "sender": e.sender,
                                "size": e.size,
                                "created": e.created,
                                "next_attempt": e.next_attempt,
                                "envelope": Envelope::parse(e),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&items)?);
                    return Ok(());
                }
                if entries.is_empty() {
                    println!("The queue is empty.");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        let env = Envelope::parse(e);
                        let pending: Vec<&str> = env.pending().map(|r| r.address.as_str()).collect();
                        vec![
                            e.id.to_string(),
                            if e.sender.is_empty() {
                                "<>".into()
                            } else {
                                e.sender.clone()
                            },
                            pending.join(", "),
                            human_size(e.size),
                            env.attempts.to_string(),
                            when(e.next_attempt),
                        ]
                    })
                    .collect();
                print_table(&["ID", "SENDER", "PENDING", "SIZE", "ATTEMPTS", "NEXT TRY"], &rows);
            }
            QueueCommand::Show { id, json } => {
                let e = store.queue_entry(QueueId(id)).await?;
                let env = Envelope::parse(&e);
                if json {
                    println!("{}", serde_json::to_string_pretty(&env)?);
                    return Ok(());
                }
                println!("Message {}: {} from <{}>", e.id, human_size(e.size), e.sender);
                println!("Queued:   {}", when(e.created));
                println!("Next try: {} (after {} attempts)", when(e.next_attempt), env.attempts);
                if let Some(by) = &env.submitted_by {
                    println!("Sent by:  {by}");
                }
                let rows: Vec<Vec<String>> = env
                    .recipients
                    .iter()
                    .map(|r| {
                        vec![
                            r.address.clone(),
                            status_name(r.status).into(),
                            r.attempts.to_string(),
                            r.remote_host.clone().unwrap_or_else(|| "-".into()),
                            r.last_reply.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                println!();
                print_table(&["RECIPIENT", "STATE", "ATTEMPTS", "HOST", "LAST REPLY"], &rows);
            }
            QueueCommand::Retry { id, all: _ } => {
                let now = chrono::Utc::now().timestamp();
                let ids: Vec<QueueId> = match id {
                    Some(id) => vec![QueueId(id)],
                    None => store.queue_entries().await?.into_iter().map(|e| e.id).collect(),
                };
                for id in &ids {
                    store.set_queue_next_attempt(*id, now).await?;
                }
                println!(
                    "{} message(s) will be tried again within seconds by the running server.",
                    ids.len()
                );
            }
            QueueCommand::Delete { id } => {
                store.delete_queue_entry(QueueId(id)).await?;
                println!("Deleted message {id} from the queue; its sender is not told.");
            }
        }
        Ok(())
    })
    .await
}
