//! The HTTP endpoints. Every body is validated; errors are JSON with a
//! stable code: `{"error": {"code": "…", "message": "…"}}`.

use super::{AppState, MAX_BODY, MAX_TRIGGER_CONTACTS};
use crate::compile::codec;
use crate::compile::program::{Program, Trigger};
use crate::runtime::contacts::{self, Format, Schema};
use crate::runtime::eval::{self, Ctx, Props};
use crate::runtime::facts::{self, ContactEvent, Facts};
use crate::runtime::lifecycle::{self, State};
use crate::runtime::sqlite::SqliteStore;
use crate::runtime::store::Store;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State as AxState};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-body", message)
    }
    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/campaigns", get(list))
        .route("/v1/campaigns/{id}", get(status))
        .route("/v1/campaigns/{id}/trigger", post(trigger))
        .route("/v1/campaigns/{id}/pause", post(pause))
        .route("/v1/campaigns/{id}/resume", post(resume))
        .route("/v1/contacts", post(upsert_contacts))
        .route("/v1/events", post(ingest_event))
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/v1/openapi.json", get(|| async { Json(super::openapi::document()) }))
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Bearer-token authentication; the token is never logged or echoed.
async fn auth(AxState(state): AxState<Arc<AppState>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if super::same_token(t.trim(), &state.token) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid bearer token").into_response(),
        None => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing `Authorization: Bearer <token>`").into_response(),
    }
}

fn body_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", format!("bodies are limited to {MAX_BODY} bytes"))
        } else {
            ApiError::bad(r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-json", e.to_string()))
}

fn lock(state: &AppState) -> Result<std::sync::MutexGuard<'_, SqliteStore>, ApiError> {
    state.store.lock().map_err(|_| ApiError::internal("store lock poisoned"))
}

fn campaign(store: &SqliteStore, id: &str) -> Result<(String, Program), ApiError> {
    let row = store.campaign(id).map_err(ApiError::internal)?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-campaign", format!("no campaign `{id}`")))?;
    let p = codec::from_binary(&row.program).map_err(ApiError::internal)?;
    Ok((row.state, p))
}

async fn list(AxState(state): AxState<Arc<AppState>>) -> ApiResult {
    let store = lock(&state)?;
    let rows = store.campaigns().map_err(ApiError::internal)?;
    let items: Vec<Value> = rows.iter().map(|c| json!({"id": c.name, "state": c.state, "version": c.version})).collect();
    Ok(Json(json!({"campaigns": items})).into_response())
}

async fn status(AxState(state): AxState<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let store = lock(&state)?;
    let (st, p) = campaign(&store, &id)?;
    let counts = store.counts(&id).map_err(ApiError::internal)?;
    let executions: Map<String, Value> = counts.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect();
    let balance = store.balance().map_err(ApiError::internal)? as f64 / 1e6;
    Ok(Json(json!({"id": id, "state": st, "version": p.version.0, "executions": executions, "balance": {"amount": balance, "currency": "EUR"}})).into_response())
}

async fn pause(AxState(state): AxState<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let mut store = lock(&state)?;
    campaign(&store, &id)?;
    let now = state.clock.now();
    lifecycle::pause(&mut *store, &id, now).map_err(|e| ApiError::new(StatusCode::CONFLICT, "invalid-transition", e.to_string()))?;
    Ok(Json(json!({"id": id, "state": "PAUSED"})).into_response())
}

async fn resume(AxState(state): AxState<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let mut store = lock(&state)?;
    campaign(&store, &id)?;
    let now = state.clock.now();
    let from = lifecycle::resume(&mut *store, &id, now).map_err(|e| ApiError::new(StatusCode::CONFLICT, "invalid-transition", e.to_string()))?;
    Ok(Json(json!({"id": id, "state": "RUNNING", "was": from.as_str()})).into_response())
}

fn only_keys(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad(format!("unknown field `{k}` (allowed: {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

/// Facts of a stored contact for audience and rule checks.
fn facts_of(store: &SqliteStore, p: &Program, c: &facts::ContactRecord) -> Result<Facts, ApiError> {
    let mut events: Vec<ContactEvent> = store.events_for(&[c.id.as_str()]).map_err(ApiError::internal)?.into_iter().map(|(_, e)| e).collect();
    if let Some(t) = c.attrs.get("created_at").and_then(|v| v.as_str()).and_then(facts::parse_datetime) {
        events.push(ContactEvent { name: "contact.created".into(), at: t, props: Map::new() });
    }
    Ok(Facts { contact_id: c.id.clone(), fields: facts::fields_for(p, c), tags: c.tags.clone(), consent: c.consent.clone(), capabilities: c.capabilities.clone(), addresses: facts::addresses_of(c), sent: vec![], events })
}

fn contact(store: &SqliteStore, id: &str) -> Result<Option<facts::ContactRecord>, ApiError> {
    store.contact(id).map_err(ApiError::internal)
}

async fn trigger(AxState(state): AxState<Arc<AppState>>, Path(id): Path<String>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body_json(body)?;
    let Value::Object(m) = &body else { return Err(ApiError::bad("expected a JSON object")) };
    only_keys(m, &["contacts", "data"])?;
    let Some(Value::Array(ids)) = m.get("contacts") else { return Err(ApiError::bad("`contacts` must be an array of contact ids")) };
    if ids.is_empty() || ids.len() > MAX_TRIGGER_CONTACTS {
        return Err(ApiError::bad(format!("`contacts` must hold 1 to {MAX_TRIGGER_CONTACTS} ids")));
    }
    let ids: Vec<String> = ids.iter().map(|v| v.as_str().filter(|s| !s.is_empty() && s.len() <= 200).map(str::to_string)).collect::<Option<_>>().ok_or_else(|| ApiError::bad("contact ids are non-empty strings of at most 200 bytes"))?;
    let data = match m.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(d)) => d.clone(),
        Some(_) => return Err(ApiError::bad("`data` must be an object")),
    };
    let mut store = lock(&state)?;
    let (st, p) = campaign(&store, &id)?;
    if !matches!(p.trigger, Trigger::Api) {
        return Err(ApiError::new(StatusCode::CONFLICT, "wrong-trigger", format!("campaign `{id}` is not triggered by the API")));
    }
    let st = State::parse(&st).unwrap_or(State::Draft);
    if matches!(st, State::Draft | State::Completed | State::CompletedPartial) {
        return Err(ApiError::new(StatusCode::CONFLICT, "not-accepting", format!("campaign `{id}` is {}", st.as_str())));
    }
    let now = state.clock.now();
    let mut unknown = Vec::new();
    let mut entries = Vec::new();
    let mut outside = 0;
    let mut events = Vec::new();
    for cid in &ids {
        let Some(c) = contact(&store, cid)? else {
            unknown.push(cid.clone());
            continue;
        };
        let f = facts_of(&store, &p, &c)?;
        let cx = Ctx { program: &p, facts: &f, now };
        if p.audience.as_ref().is_some_and(|a| !eval::eval(&cx, a)) {
            outside += 1;
            continue;
        }
        let mut props = data.clone();
        props.insert("campaign".into(), json!(id));
        events.push((cid.clone(), ContactEvent { name: "campaign.triggered".into(), at: now, props }));
        entries.push((cid.clone(), p.nodes[0].id.0.clone(), now));
    }
    if !unknown.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-contacts", format!("no such contact(s): {}", unknown.join(", "))));
    }
    store.upsert_contacts(&[], &events).map_err(ApiError::internal)?;
    // Re-entry: a contact already in the campaign is not enrolled again.
    let enrolled = store.enroll(&id, &p.version.0, &entries, now).map_err(ApiError::internal)?;
    let already = entries.len() as u64 - enrolled;
    Ok((StatusCode::ACCEPTED, Json(json!({"enrolled": enrolled, "already_enrolled": already, "not_in_audience": outside}))).into_response())
}

/// The contact schema the service accepts: built-ins plus every field a
/// launched campaign reads.
fn schema(store: &SqliteStore) -> Result<Schema, ApiError> {
    use crate::check::model::{Field, Origin, Type};
    use crate::compile::program::FieldType;
    let mut s = Schema::from_model(&crate::workspace::stdlib_model());
    for c in store.campaigns().map_err(ApiError::internal)? {
        let Ok(p) = codec::from_binary(&c.program) else { continue };
        for f in p.fields {
            let ty = match f.ty {
                FieldType::String => Type::String,
                FieldType::Number => Type::Number,
                FieldType::Bool => Type::Bool,
                FieldType::Datetime => Type::DateTime,
                FieldType::Date => Type::Date,
                FieldType::Duration => Type::Duration,
                FieldType::Timezone => Type::Timezone,
                FieldType::SetString => Type::SetString,
                FieldType::Enum(v) => Type::Enum(v.into()),
            };
            s.fields.entry(f.name.clone()).or_insert(Field { name: f.name, ty, optional: f.optional, origin: Origin::Registry });
        }
    }
    Ok(s)
}

async fn upsert_contacts(AxState(state): AxState<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body_json(body)?;
    let items = match body {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err(ApiError::bad("expected a contact object or an array of them")),
    };
    if items.is_empty() || items.len() > 1000 {
        return Err(ApiError::bad("send 1 to 1000 contacts per request"));
    }
    let text = items.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    let mut store = lock(&state)?;
    let parsed = contacts::parse(&text, Format::JsonLines, &schema(&store)?);
    if let Some(e) = parsed.errors.first() {
        let message = format!("contacts[{}]{}: {}", e.line - 1, e.field.as_ref().map(|f| format!(".{f}")).unwrap_or_default(), e.message);
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-contact", message));
    }
    store.upsert_contacts(&parsed.contacts, &parsed.events).map_err(ApiError::internal)?;
    Ok(Json(json!({"upserted": parsed.contacts.len()})).into_response())
}

/// Ingests one event; event-triggered campaigns whose rule it matches
/// enroll the contact (once).
async fn ingest_event(AxState(state): AxState<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body_json(body)?;
    let Value::Object(m) = &body else { return Err(ApiError::bad("expected a JSON object")) };
    only_keys(m, &["contact", "name", "at", "props"])?;
    let cid = m.get("contact").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad("`contact` must be a contact id"))?;
    let name = m.get("name").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 200).ok_or_else(|| ApiError::bad("`name` must be an event name"))?;
    let props = match m.get("props") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(ApiError::bad("`props` must be an object")),
    };
    let now = state.clock.now();
    let at = match m.get("at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => facts::parse_datetime(s).ok_or_else(|| ApiError::bad("`at` must be a datetime like 2026-11-27T09:00:00Z"))?,
        Some(_) => return Err(ApiError::bad("`at` must be a datetime string")),
    };
    let mut store = lock(&state)?;
    let Some(c) = contact(&store, cid)? else {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-contacts", format!("no such contact: {cid}")));
    };
    let event = ContactEvent { name: name.to_string(), at, props: props.clone() };
    store.upsert_contacts(&[], &[(cid.to_string(), event)]).map_err(ApiError::internal)?;
    let mut enrolled_in = Vec::new();
    for row in store.campaigns().map_err(ApiError::internal)? {
        if !matches!(State::parse(&row.state), Some(State::Running | State::Scheduled)) {
            continue;
        }
        let Ok(p) = codec::from_binary(&row.program) else { continue };
        let Trigger::Event { event: want, props: names, filter } = &p.trigger else { continue };
        if want != name {
            continue;
        }
        let f = facts_of(&store, &p, &c)?;
        let cx = Ctx { program: &p, facts: &f, now };
        let rule = filter.as_ref().is_none_or(|flt| eval::eval_with(&cx, flt, Props::Event { names, values: &props }));
        let audience = p.audience.as_ref().is_none_or(|a| eval::eval(&cx, a));
        if rule && audience && store.enroll(&p.campaign, &p.version.0, &[(cid.to_string(), p.nodes[0].id.0.clone(), at.max(now))], now).map_err(ApiError::internal)? > 0 {
            enrolled_in.push(p.campaign.clone());
        }
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"stored": true, "enrolled_in": enrolled_in}))).into_response())
}
