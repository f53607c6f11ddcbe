//! Migrations: their progress, their reports, and asking for passes, pausing, resuming,
//! cancelling and finishing them, for one mailbox, a domain's, or all (`"all": true`,
//! so a script never acts on every mailbox by leaving a field out).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tern_admin::migrations::{Control, Overview, PassRequest, Selector};
use tern_migrate::report::Report;
use tern_migrate::state::Pass;

use super::auth::ApiToken;
use super::{ApiError, ApiResult, Body, DomainFilter, PathParams, QueryParams, done, json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/migrations", get(list))
        .route("/migrations/start", post(start))
        .route("/migrations/retry-errors", post(retry_errors))
        .route("/migrations/pause", post(pause))
        .route("/migrations/resume", post(resume))
        .route("/migrations/cancel", post(cancel))
        .route("/migrations/finish", post(finish))
        .route("/migrations/{address}", get(show).delete(remove))
}

async fn list(
    _: ApiToken,
    State(app): State<AppState>,
    QueryParams(filter): QueryParams<DomainFilter>,
) -> ApiResult<Response> {
    let items: Vec<Overview> = tern_admin::migrations::overview(app.store.as_ref(), filter.domain())
        .await?
        .into_iter()
        .map(|(overview, _)| overview)
        .collect();
    json(StatusCode::OK, &items)
}

async fn show(
    _: ApiToken,
    State(app): State<AppState>,
    PathParams(address): PathParams<String>,
) -> ApiResult<Response> {
    let m = app.store.migration(&address).await?;
    let report = Report::load(app.store.as_ref(), &m)
        .await
        .map_err(tern_admin::AdminError::from)?;
    json(StatusCode::OK, &report)
}

/// Which migrations: exactly one of the three.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Which {
    user: Option<String>,
    domain: Option<String>,
    #[serde(default)]
    all: bool,
}

impl Which {
    fn selector(self) -> ApiResult<Selector> {
        match (self.user, self.domain, self.all) {
            (Some(u), None, false) => Ok(Selector::user(u.trim())),
            (None, Some(d), false) => Ok(Selector::domain(d.trim())),
            (None, None, true) => Ok(Selector::default()),
            _ => Err(ApiError::invalid(
                "say which migrations with exactly one of: \"user\" (an address), \"domain\", or \"all\": true",
            )),
        }
    }
}

/// `YYYY-MM-DD` as unix seconds at midnight UTC.
fn date(field: &str, text: Option<&str>) -> ApiResult<Option<i64>> {
    text.map(|t| {
        chrono::NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp())
            .ok_or_else(|| ApiError::invalid(format!("{field} {t:?}: write the date as YYYY-MM-DD")))
    })
    .transpose()
}

/// The passes `start` asks for (the final one is `finish`).
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum PassName {
    Prestage,
    Full,
    Delta,
    RetryErrors,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    user: Option<String>,
    domain: Option<String>,
    #[serde(default)]
    all: bool,
    pass: PassName,
    since: Option<String>,
    before: Option<String>,
    #[serde(default)]
    propagate_deletions: bool,
}

/// The same without the pass (`retry-errors`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    user: Option<String>,
    domain: Option<String>,
    #[serde(default)]
    all: bool,
    since: Option<String>,
    before: Option<String>,
}

#[derive(Serialize)]
struct Count {
    /// How many migrations the request was written to.
    migrations: usize,
}

async fn ask(
    app: &AppState,
    token: &str,
    which: Which,
    pass: Pass,
    since: Option<String>,
    before: Option<String>,
    propagate_deletions: bool,
) -> ApiResult<Response> {
    let selector = which.selector()?;
    let ask = PassRequest {
        pass,
        since: date("since", since.as_deref())?,
        before: date("before", before.as_deref())?,
        propagate_deletions,
    };
    if let (Some(s), Some(b)) = (ask.since, ask.before)
        && s >= b
    {
        return Err(ApiError::invalid("since must be before before; no message could match"));
    }
    let n = tern_admin::migrations::start(app.store.as_ref(), &selector, ask).await?;
    tracing::info!(token = %token, pass = pass.name(), user = ?selector.user, domain = ?selector.domain, migrations = n, "API: pass asked for");
    json(StatusCode::OK, &Count { migrations: n })
}

async fn start(State(app): State<AppState>, ApiToken(token): ApiToken, Body(s): Body<Start>) -> ApiResult<Response> {
    let pass = match s.pass {
        PassName::Prestage => Pass::Prestage,
        PassName::Full => Pass::Full,
        PassName::Delta => Pass::Delta,
        PassName::RetryErrors => Pass::RetryErrors,
    };
    let which = Which {
        user: s.user,
        domain: s.domain,
        all: s.all,
    };
    ask(&app, &token, which, pass, s.since, s.before, s.propagate_deletions).await
}

async fn retry_errors(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(r): Body<Retry>,
) -> ApiResult<Response> {
    let which = Which {
        user: r.user,
        domain: r.domain,
        all: r.all,
    };
    ask(&app, &token, which, Pass::RetryErrors, r.since, r.before, false).await
}

async fn control(app: &AppState, token: &str, which: Which, what: Control) -> ApiResult<Response> {
    let selector = which.selector()?;
    let n = tern_admin::migrations::control(app.store.as_ref(), &selector, what).await?;
    tracing::info!(token = %token, action = what.past_tense(), user = ?selector.user, domain = ?selector.domain, migrations = n, "API: migrations steered");
    json(StatusCode::OK, &Count { migrations: n })
}

async fn pause(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(which): Body<Which>,
) -> ApiResult<Response> {
    control(&app, &token, which, Control::Pause).await
}

async fn resume(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(which): Body<Which>,
) -> ApiResult<Response> {
    control(&app, &token, which, Control::Resume).await
}

async fn cancel(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(which): Body<Which>,
) -> ApiResult<Response> {
    control(&app, &token, which, Control::Cancel).await
}

async fn finish(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(which): Body<Which>,
) -> ApiResult<Response> {
    let selector = which.selector()?;
    let n = tern_admin::migrations::finish(app.store.as_ref(), &selector).await?;
    tracing::info!(token = %token, user = ?selector.user, domain = ?selector.domain, migrations = n, "API: final pass asked for");
    json(StatusCode::OK, &Count { migrations: n })
}

async fn remove(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(address): PathParams<String>,
) -> ApiResult<Response> {
    tern_admin::migrations::remove(app.store.as_ref(), &address).await?;
    tracing::info!(token = %token, user = %address, "API: migration removed");
    done()
}
