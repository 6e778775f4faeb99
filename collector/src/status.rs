//! The one place errors become what a client is told: gRPC statuses and HTTP answers.
//!
//! | error                                   | gRPC                | HTTP |
//! |-----------------------------------------|---------------------|------|
//! | a request that cannot be answered as is | INVALID_ARGUMENT    | 400  |
//! | nothing by that name                    | NOT_FOUND           | 404  |
//! | a write the store refuses (a gap, …)    | FAILED_PRECONDITION | 409  |
//! | the database failed, or is newer        | UNAVAILABLE         | 503  |
//! | the collector is shutting down          | UNAVAILABLE         | 503  |
//!
//! A database failure's details (file paths, SQL, the engine's text) go to the collector's log,
//! written here; the client gets a sentence that says where to look.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::Status;

use crate::query::QueryError;
use crate::store::StoreError;

/// What clients are told when the collector stops.
pub const SHUTTING_DOWN: &str = "the collector is shutting down";

/// What a client is told of a store error; a database failure is logged here.
pub fn store_message(e: &StoreError) -> String {
    match e {
        StoreError::Database(detail) => {
            tracing::error!(error = %detail, "Database failure.");
            "the collector's database failed; its log has the details".to_owned()
        }
        other => other.to_string(),
    }
}

/// A store error for a gRPC client.
pub fn store(e: StoreError) -> Status {
    match e {
        StoreError::Rejected(m) => Status::failed_precondition(m),
        e => Status::unavailable(store_message(&e)),
    }
}

/// The collector is stopping: try another replica, or again later.
pub fn shutting_down() -> Status {
    Status::unavailable(SHUTTING_DOWN)
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Status {
        match e {
            QueryError::BadRequest(m) => Status::invalid_argument(m),
            QueryError::NotFound(m) => Status::not_found(m),
            QueryError::Store(e) => store(e),
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            QueryError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            QueryError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            QueryError::Store(StoreError::Rejected(m)) => (StatusCode::CONFLICT, m),
            QueryError::Store(e) => (StatusCode::SERVICE_UNAVAILABLE, store_message(&e)),
        };
        (code, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
