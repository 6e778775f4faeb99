//! The JSON API (`/api/v1/...`): the fleet queries over HTTP, answered with the same messages
//! as gRPC, serialized with serde. Query strings are read strictly.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use driftwatch_proto::v1;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Queries, QueryError};
use crate::store::Store;

/// A query string read strictly: a parameter the endpoint does not take, or a value of the
/// wrong type, is a 400 that names it (not a filter silently ignored).
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, QueryError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(params)| Params(params))
            .map_err(|e| QueryError::BadRequest(e.body_text()))
    }
}

/// The query-string forms of the requests (every field optional), one per endpoint.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct HostsParams {
    diverged: bool,
    severity: String,
    path: String,
    limit: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct PathsParams {
    severity: String,
    path: String,
    limit: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CausesParams {
    severity: String,
    path: String,
    min_hosts: u32,
    limit: u32,
    max_hosts: u32,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct HistoryParams {
    host: String,
    since: String,
    path: String,
    limit: u32,
}

/// No parameters at all.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// The JSON API routes.
pub fn json_api<S: Store>(queries: Queries<S>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/v1/hosts", get(api_hosts::<S>))
        .route("/api/v1/hosts/{host}", get(api_host::<S>))
        .route("/api/v1/paths", get(api_paths::<S>))
        .route("/api/v1/causes", get(api_causes::<S>))
        .route("/api/v1/history", get(api_history::<S>))
        .route("/api/v1/iac/status", get(api_status::<S>))
        .route("/api/v1/report", get(api_report::<S>))
        .with_state(queries)
}

type ApiResult<T> = Result<Json<T>, QueryError>;

async fn api_hosts<S: Store>(
    State(q): State<Queries<S>>,
    Params(p): Params<HostsParams>,
) -> ApiResult<v1::ListHostsResponse> {
    let r = v1::ListHostsRequest {
        diverged: p.diverged,
        severity: p.severity,
        path: p.path,
        limit: p.limit,
    };
    Ok(Json(q.list_hosts(r).await?))
}

async fn api_host<S: Store>(
    State(q): State<Queries<S>>,
    Path(host): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> ApiResult<v1::HostDetail> {
    Ok(Json(q.get_host(v1::GetHostRequest { host }).await?))
}

async fn api_paths<S: Store>(
    State(q): State<Queries<S>>,
    Params(p): Params<PathsParams>,
) -> ApiResult<v1::ListPathsResponse> {
    let r = v1::ListPathsRequest {
        path: p.path,
        severity: p.severity,
        limit: p.limit,
    };
    Ok(Json(q.list_paths(r).await?))
}

async fn api_causes<S: Store>(
    State(q): State<Queries<S>>,
    Params(p): Params<CausesParams>,
) -> ApiResult<v1::ListCausesResponse> {
    let r = v1::ListCausesRequest {
        path: p.path,
        severity: p.severity,
        min_hosts: p.min_hosts,
        limit: p.limit,
        max_hosts: p.max_hosts,
    };
    Ok(Json(q.list_causes(r).await?))
}

async fn api_history<S: Store>(
    State(q): State<Queries<S>>,
    Params(p): Params<HistoryParams>,
) -> ApiResult<v1::HistoryResponse> {
    let r = v1::HistoryRequest {
        host: p.host,
        since: p.since,
        path: p.path,
        limit: p.limit,
    };
    Ok(Json(q.history(r).await?))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct StatusParams {
    ghost_after: String,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ReportParams {
    ghost_after: String,
    severity: String,
}

async fn api_status<S: Store>(
    State(q): State<Queries<S>>,
    Params(p): Params<StatusParams>,
) -> ApiResult<v1::IacStatus> {
    let r = v1::IacStatusRequest {
        ghost_after: p.ghost_after,
    };
    Ok(Json(q.iac_status(r).await?))
}

async fn api_report<S: Store>(
    State(q): State<Queries<S>>,
    Params(p): Params<ReportParams>,
) -> ApiResult<v1::IacReport> {
    let r = v1::ReportRequest {
        ghost_after: p.ghost_after,
        severity: p.severity,
    };
    Ok(Json(q.report(r).await?))
}
