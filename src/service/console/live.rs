//! The live numbers the pages poll every 2 seconds (`console.js`):
//! `GET /live` for the list, `GET /campaigns/{id}/live` for one campaign.
//! Under the console's session, not the bearer token; 401 without one.

use super::Console;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn signed_out() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized", "the console session ended: sign in again")
}

pub async fn list(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if console.sessions.of(&headers).is_none() {
        return signed_out();
    }
    match console.app.store.run(|store| super::view::overview(store)).await {
        Ok(Ok(o)) => Json(o.live).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the store thread stopped"),
    }
}

pub async fn campaign(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if console.sessions.of(&headers).is_none() {
        return signed_out();
    }
    let Some(id) = super::campaign_id(id) else {
        return error(StatusCode::NOT_FOUND, "unknown-campaign", "no such campaign");
    };
    let now = console.app.clock.now();
    let found = console.app.store.run(move |store| super::view::campaign(store, &id, now)).await;
    match found {
        Ok(Ok(Some(v))) => Json(v.live).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "unknown-campaign", "no such campaign"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the store thread stopped"),
    }
}
