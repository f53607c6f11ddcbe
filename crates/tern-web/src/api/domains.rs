//! Hosted domains: adding and removing them, whether their mail is accepted yet, their
//! DKIM keys, their DNS (what to publish and what is published), and going live.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use tern_dns::golive::{CutoverError, GoLive, Stage};
use tern_dns::records::{DomainPlan, Suggested};
use tern_dns::resolve::Lookup;
use tern_store::{DkimKey, Domain};

use super::auth::ApiToken;
use super::{ApiError, ApiResult, Body, PathParams, done, json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/domains", get(list).post(add))
        .route("/domains/{domain}", get(show).delete(remove))
        .route("/domains/{domain}/receiving", put(receiving))
        .route("/domains/{domain}/dkim/rotate", post(rotate))
        .route("/domains/{domain}/dkim/{selector}", delete(delete_key))
        .route("/domains/{domain}/dns", get(dns_check))
        .route("/domains/{domain}/records", get(records))
        .route("/domains/{domain}/golive", get(golive))
        .route("/domains/{domain}/cutover", post(cutover))
}

/// A domain in a listing: the stored record and where it is in going live.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    domain: Domain,
    golive_stage: Stage,
}

async fn list(_: ApiToken, State(app): State<AppState>) -> ApiResult<Response> {
    let mut out = Vec::new();
    for domain in app.store.domains().await? {
        let golive_stage = tern_dns::golive::load(app.store.as_ref(), &domain.name).await?.stage;
        out.push(Listed { domain, golive_stage });
    }
    json(StatusCode::OK, &out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
}

async fn add(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(new): Body<NewDomain>,
) -> ApiResult<Response> {
    // tern_admin::domains::add words "exists already" as any refusal; asked first so a
    // script can tell it apart (409).
    let name = new.name.trim().trim_end_matches('.').to_ascii_lowercase();
    if app.store.domain_receiving(&name).await?.is_some() {
        return Err(ApiError::conflict(format!("domain {name} exists already")));
    }
    let domain = tern_admin::domains::add(app.store.as_ref(), &new.name).await?;
    tracing::info!(token = %token, domain = %domain.name, "API: domain added");
    json(StatusCode::CREATED, &domain)
}

/// One DKIM key as shown: never its private half.
#[derive(Serialize)]
struct Key {
    selector: String,
    algorithm: &'static str,
    created: i64,
    active: bool,
    record: Suggested,
    zone_line: String,
}

impl Key {
    fn of(k: &DkimKey) -> Key {
        let record = tern_dns::records::dkim_record(k);
        Key {
            selector: k.selector.clone(),
            algorithm: k.algorithm.name(),
            created: k.created,
            active: k.active,
            zone_line: record.zone_line(),
            record,
        }
    }
}

#[derive(Serialize)]
struct Detail {
    domain: Domain,
    dkim: Vec<Key>,
    golive: GoLiveView,
}

/// A domain's go-live state with its one-line summary.
#[derive(Serialize)]
struct GoLiveView {
    #[serde(flatten)]
    state: GoLive,
    summary: String,
    final_pass_due: Option<i64>,
}

impl GoLiveView {
    fn of(state: GoLive) -> GoLiveView {
        GoLiveView {
            summary: state.summary(),
            final_pass_due: state.final_pass_due(),
            state,
        }
    }
}

async fn show(_: ApiToken, State(app): State<AppState>, PathParams(domain): PathParams<String>) -> ApiResult<Response> {
    let domain = app.store.domain(&domain).await?;
    let dkim = app
        .store
        .dkim_keys(Some(&domain.name))
        .await?
        .iter()
        .map(Key::of)
        .collect();
    let golive = GoLiveView::of(tern_dns::golive::load(app.store.as_ref(), &domain.name).await?);
    json(StatusCode::OK, &Detail { domain, dkim, golive })
}

async fn remove(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(domain): PathParams<String>,
) -> ApiResult<Response> {
    let found = app.store.domain(&domain).await?;
    if found.accounts + found.aliases > 0 {
        return Err(ApiError::conflict(format!(
            "domain {} still has {} account(s) and {} alias(es); remove them first",
            found.name, found.accounts, found.aliases
        )));
    }
    app.store.delete_domain(&found.name).await?;
    tracing::info!(token = %token, domain = %found.name, "API: domain removed");
    done()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Receiving {
    receiving: bool,
}

async fn receiving(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(domain): PathParams<String>,
    Body(body): Body<Receiving>,
) -> ApiResult<Response> {
    let name = app.store.domain(&domain).await?.name;
    app.store.set_domain_receiving(&name, body.receiving).await?;
    tracing::info!(token = %token, domain = %name, receiving = body.receiving, "API: domain receiving set");
    json(StatusCode::OK, &app.store.domain(&name).await?)
}

async fn rotate(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(domain): PathParams<String>,
) -> ApiResult<Response> {
    let keys = tern_admin::domains::rotate_dkim(app.store.as_ref(), &domain).await?;
    tracing::info!(token = %token, domain = %domain, "API: DKIM keys rotated");
    let keys: Vec<Key> = keys.iter().map(Key::of).collect();
    json(StatusCode::CREATED, &keys)
}

async fn delete_key(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams((domain, selector)): PathParams<(String, String)>,
) -> ApiResult<Response> {
    let name = app.store.domain(&domain).await?.name;
    if !app
        .store
        .dkim_keys(Some(&name))
        .await?
        .iter()
        .any(|k| k.selector == selector)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("domain {name} has no DKIM key with selector {selector:?}; GET /domains/{name} lists its keys"),
        ));
    }
    tern_admin::domains::delete_dkim_key(app.store.as_ref(), &name, &selector).await?;
    tracing::info!(token = %token, domain = %name, selector = %selector, "API: DKIM key deleted");
    done()
}

/// The resolver the checks ask (`[dns] nameservers`, else the system's).
fn lookup(app: &AppState) -> ApiResult<Lookup> {
    Lookup::servers(&app.config.nameservers).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn plan(app: &AppState, domain: &str, lookup: &Lookup) -> ApiResult<DomainPlan> {
    Ok(DomainPlan::load(
        app.store.as_ref(),
        domain,
        app.endpoints(),
        &app.config.public_addresses,
        Some(lookup),
    )
    .await?)
}

async fn dns_check(
    _: ApiToken,
    State(app): State<AppState>,
    PathParams(domain): PathParams<String>,
) -> ApiResult<Response> {
    let lookup = lookup(&app)?;
    let report = tern_dns::check::check_hosted(
        app.store.as_ref(),
        &domain,
        app.endpoints(),
        &app.config.public_addresses,
        &[lookup],
    )
    .await?;
    json(StatusCode::OK, &report)
}

#[derive(Serialize)]
struct Records {
    domain: String,
    records: Vec<Suggested>,
    /// PTR records, set where the addresses are hosted.
    reverse: Vec<Suggested>,
    /// The records as a zone-file snippet (`tern dns records`).
    zone: String,
}

async fn records(
    _: ApiToken,
    State(app): State<AppState>,
    PathParams(domain): PathParams<String>,
) -> ApiResult<Response> {
    let lookup = lookup(&app)?;
    let plan = plan(&app, &domain, &lookup).await?;
    json(
        StatusCode::OK,
        &Records {
            records: tern_dns::records::suggested(&plan),
            reverse: tern_dns::records::reverse(&plan),
            zone: tern_dns::records::zone_snippet(&plan),
            domain: plan.domain,
        },
    )
}

async fn golive(
    _: ApiToken,
    State(app): State<AppState>,
    PathParams(domain): PathParams<String>,
) -> ApiResult<Response> {
    let name = app.store.domain(&domain).await?.name;
    json(
        StatusCode::OK,
        &GoLiveView::of(tern_dns::golive::load(app.store.as_ref(), &name).await?),
    )
}

async fn cutover(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(domain): PathParams<String>,
) -> ApiResult<Response> {
    let name = app.store.domain(&domain).await?.name;
    let by = format!("API token {token}");
    let state =
        tern_dns::golive::declare_cutover(app.store.as_ref(), &name, &by, &app.config.golive, tern_migrate::now())
            .await
            .map_err(|e| match e {
                CutoverError::NoMigrations(_) => ApiError::invalid(e.to_string()),
                CutoverError::Already { .. } => ApiError::conflict(e.to_string()),
                CutoverError::Store(s) => ApiError::from(s),
            })?;
    tracing::info!(token = %token, domain = %name, "API: cutover declared");
    json(StatusCode::OK, &GoLiveView::of(state))
}
