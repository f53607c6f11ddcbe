//! The domains pages: the list with "Add domain", one domain (DKIM keys, receiving,
//! going live with its cutover, the zone snippet to publish) and its DNS status (the
//! same checks as `tern dns check`, on a page of its own because asking the DNS can
//! take seconds).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tern_dns::check::{Finding, Status};
use tern_dns::golive::{CutoverError, GoLive};
use tern_dns::records::DomainPlan;
use tern_dns::resolve::Lookup;
use tracing::info;

use super::{Admin, ConfirmPage, Frame, admin_error, done, store_error};
use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::page::{self, WebError, WebResult, url_encode};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/domains", get(list).post(add))
        .route("/admin/domains/{domain}", get(show))
        .route("/admin/domains/{domain}/dns", get(dns))
        .route("/admin/domains/{domain}/dkim/rotate", post(rotate))
        .route("/admin/domains/{domain}/dkim/{selector}/delete", post(delete_key))
        .route("/admin/domains/{domain}/receiving", post(receiving))
        .route("/admin/domains/{domain}/cutover", post(cutover))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    done: String,
}

/// A row of the domains table.
pub struct DomainRow {
    pub name: String,
    pub accounts: u64,
    pub aliases: u64,
    pub receiving: bool,
    /// The go-live stage, for a domain with migrations; "" otherwise.
    pub stage: &'static str,
}

#[derive(Template)]
#[template(path = "admin/domains.html")]
struct DomainsPage {
    frame: Frame,
    domains: Vec<DomainRow>,
}

async fn list(State(app): State<AppState>, admin: Admin, Query(params): Query<Params>) -> WebResult {
    let store = app.store.as_ref();
    let migrations = store.migrations().await.map_err(store_error)?;
    let mut domains = Vec::new();
    for d in store.domains().await.map_err(store_error)? {
        let migrating = migrations.iter().any(|m| tern_admin::domain_of(&m.address) == d.name);
        let stage = if migrating {
            tern_dns::golive::load(store, &d.name)
                .await
                .map_err(store_error)?
                .stage
                .name()
        } else {
            ""
        };
        domains.push(DomainRow {
            name: d.name,
            accounts: d.accounts,
            aliases: d.aliases,
            receiving: d.receiving,
            stage,
        });
    }
    Ok(page::render(&DomainsPage {
        frame: admin.frame(&app, "domains", &params.done),
        domains,
    }))
}

async fn add(State(app): State<AppState>, admin: Admin, body: Bytes) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    let domain = tern_admin::domains::add(app.store.as_ref(), field(&pairs, "domain"))
        .await
        .map_err(admin_error)?;
    info!(admin = %admin.address(), domain = %domain.name, "console: domain added");
    Ok(done(&domain_path(&domain.name), "domain-added"))
}

fn domain_path(domain: &str) -> String {
    format!("/admin/domains/{}", url_encode(domain))
}

/// A DKIM key as the domain page shows it.
pub struct KeyRow {
    pub selector: String,
    pub algorithm: &'static str,
    pub active: bool,
    pub created: String,
    /// Its TXT record, as a zone-file line.
    pub zone_line: String,
}

#[derive(Template)]
#[template(path = "admin/domain.html")]
struct DomainPage {
    frame: Frame,
    name: String,
    accounts: u64,
    aliases: u64,
    receiving: bool,
    keys: Vec<KeyRow>,
    /// Mailboxes of the domain being migrated.
    migrations: usize,
    golive: GoLive,
    golive_summary: String,
    events: Vec<(String, String)>,
    zone: String,
}

async fn show(
    State(app): State<AppState>,
    admin: Admin,
    Path(domain): Path<String>,
    Query(params): Query<Params>,
) -> WebResult {
    let store = app.store.as_ref();
    let d = store.domain(&domain).await.map_err(store_error)?;
    let keys = store
        .dkim_keys(Some(&d.name))
        .await
        .map_err(store_error)?
        .iter()
        .map(|k| KeyRow {
            selector: k.selector.clone(),
            algorithm: k.algorithm.name(),
            active: k.active,
            created: super::when(k.created),
            zone_line: tern_dns::records::dkim_record(k).zone_line(),
        })
        .collect();
    let migrations = tern_dns::golive::migrations_of(store, &d.name)
        .await
        .map_err(store_error)?
        .len();
    let golive = tern_dns::golive::load(store, &d.name).await.map_err(store_error)?;
    let plan = DomainPlan::load(store, &d.name, app.endpoints(), &app.config.public_addresses, None)
        .await
        .map_err(store_error)?;
    Ok(page::render(&DomainPage {
        frame: admin.frame(&app, "domains", &params.done),
        golive_summary: golive.summary(),
        events: golive
            .events
            .iter()
            .rev()
            .map(|e| (super::when(e.at), e.text.clone()))
            .collect(),
        golive,
        zone: tern_dns::records::zone_snippet(&plan),
        name: d.name,
        accounts: d.accounts,
        aliases: d.aliases,
        receiving: d.receiving,
        keys,
        migrations,
    }))
}

async fn rotate(State(app): State<AppState>, admin: Admin, Path(domain): Path<String>) -> WebResult<Response> {
    let keys = tern_admin::domains::rotate_dkim(app.store.as_ref(), &domain)
        .await
        .map_err(admin_error)?;
    let selectors: Vec<&str> = keys.iter().map(|k| k.selector.as_str()).collect();
    info!(admin = %admin.address(), domain = %domain, new = ?selectors, "console: DKIM keys rotated");
    Ok(done(&domain_path(&domain), "dkim-rotated"))
}

async fn delete_key(
    State(app): State<AppState>,
    admin: Admin,
    Path((domain, selector)): Path<(String, String)>,
    body: Bytes,
) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    if !super::yes(field(&pairs, "confirm")) {
        return Ok(page::render(&ConfirmPage {
            frame: admin.frame(&app, "domains", ""),
            title: format!("Delete DKIM key {selector}?"),
            message: format!(
                "Mail signed with key {selector} of {domain} no longer verifies once its DNS record is removed. \
                 Delete it only when messages signed with it have been delivered (a few days after the rotation)."
            ),
            action: format!("{}/dkim/{}/delete", domain_path(&domain), url_encode(&selector)),
            fields: Vec::new(),
            checkbox: None,
            button: "Delete the key".into(),
            cancel: domain_path(&domain),
        }));
    }
    tern_admin::domains::delete_dkim_key(app.store.as_ref(), &domain, &selector)
        .await
        .map_err(admin_error)?;
    info!(admin = %admin.address(), domain = %domain, selector = %selector, "console: DKIM key deleted");
    Ok(done(&domain_path(&domain), "dkim-deleted"))
}

async fn receiving(
    State(app): State<AppState>,
    admin: Admin,
    Path(domain): Path<String>,
    body: Bytes,
) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    let on = match field(&pairs, "receiving") {
        "yes" => true,
        "no" => false,
        _ => return Err(WebError::bad_request("Say receiving=yes or receiving=no.")),
    };
    let store = app.store.as_ref();
    let name = store.domain(&domain).await.map_err(store_error)?.name;
    store.set_domain_receiving(&name, on).await.map_err(store_error)?;
    info!(admin = %admin.address(), domain = %name, receiving = on, "console: domain receiving changed");
    Ok(done(
        &domain_path(&name),
        if on { "receiving-on" } else { "receiving-off" },
    ))
}

async fn cutover(
    State(app): State<AppState>,
    admin: Admin,
    Path(domain): Path<String>,
    body: Bytes,
) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    let store = app.store.as_ref();
    let name = store.domain(&domain).await.map_err(store_error)?.name;
    if !super::yes(field(&pairs, "confirm")) || !super::yes(field(&pairs, "checked")) {
        return Ok(page::render(&ConfirmPage {
            frame: admin.frame(&app, "domains", ""),
            title: format!("Declare the cutover of {name}?"),
            message: format!(
                "Tern starts delivering {name}'s mail here and runs a delta pass for every mailbox of the domain; \
                 deletions at the old provider are no longer copied. Do this once the domain's MX record names \
                 this server (the MX watch declares it by itself when it sees that)."
            ),
            action: format!("{}/cutover", domain_path(&name)),
            fields: Vec::new(),
            checkbox: Some(format!("I have changed the MX record of {name} to this server")),
            button: "Declare the cutover".into(),
            cancel: domain_path(&name),
        }));
    }
    let by = format!("admin console ({})", admin.address());
    match tern_dns::golive::declare_cutover(store, &name, &by, &app.config.golive, tern_migrate::now()).await {
        Ok(_) => {
            info!(admin = %admin.address(), domain = %name, "console: cutover declared");
            Ok(done(&domain_path(&name), "cutover"))
        }
        Err(e @ (CutoverError::NoMigrations(_) | CutoverError::Already { .. })) => {
            Err(WebError::bad_request(format!("{}.", capital(&e.to_string()))))
        }
        Err(CutoverError::Store(e)) => Err(store_error(e)),
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A finding as the DNS page shows it.
pub struct FindingRow {
    pub status: &'static str,
    pub check: String,
    pub published: String,
    pub detail: String,
    pub publish: Vec<String>,
}

impl From<&Finding> for FindingRow {
    fn from(f: &Finding) -> FindingRow {
        FindingRow {
            status: f.status.label(),
            check: f.check.clone(),
            published: f.published.clone(),
            detail: f.detail.clone(),
            publish: f.publish.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/dns.html")]
struct DnsPage {
    frame: Frame,
    domain: String,
    hostname: String,
    migrating: bool,
    /// (resolver, its findings).
    reports: Vec<(String, Vec<FindingRow>)>,
    differences: Vec<FindingRow>,
    counts: (usize, usize, usize),
}

async fn dns(State(app): State<AppState>, admin: Admin, Path(domain): Path<String>) -> WebResult {
    let store = app.store.as_ref();
    let lookup = Lookup::servers(&app.config.nameservers)
        .map_err(|e| WebError::internal(format!("No DNS resolver can be used ({e}); check [dns] nameservers.")))?;
    let report =
        tern_dns::check::check_hosted(store, &domain, app.endpoints(), &app.config.public_addresses, &[lookup])
            .await
            .map_err(store_error)?;
    // Said on the page: while the domain's mail still goes to the old provider, its MX
    // pointing there is expected.
    let migrating = store.domain_receiving(&report.domain).await.map_err(store_error)? == Some(false);
    let count = |s: Status| report.count(s);
    Ok(page::render(&DnsPage {
        frame: admin.frame(&app, "domains", ""),
        counts: (count(Status::Ok), count(Status::Warning), count(Status::Error)),
        reports: report
            .reports
            .iter()
            .map(|r| (r.resolver.clone(), r.findings.iter().map(FindingRow::from).collect()))
            .collect(),
        differences: report.differences.iter().map(FindingRow::from).collect(),
        domain: report.domain,
        hostname: report.hostname,
        migrating,
    }))
}
