//! The HTTP endpoints. Every body is validated; errors are JSON with a
//! stable code: `{"error": {"code": "…", "message": "…"}}`.

use super::store_thread::{Gone, NotDone, Refusal};
use super::{AppState, BODY_TIMEOUT, MAX_BODY, MAX_TRIGGER_CONTACTS, MAX_URI};
use crate::compile::codec;
use crate::compile::program::{Program, Trigger};
use crate::runtime::contacts::{self, Schema};
use crate::runtime::eval::{self, Ctx};
use crate::runtime::facts::{self, ContactEvent, Facts};
use crate::runtime::ingest::{self, FaultKind};
use crate::runtime::lifecycle::{self, State};
use crate::runtime::reentry;
use crate::runtime::store::{ContactId, Enrollment, EventOf, Store};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl From<crate::runtime::store::StoreError> for ApiError {
    fn from(e: crate::runtime::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl ApiError {
    /// The HTTP status it answers with.
    pub(super) fn status(&self) -> StatusCode {
        self.status
    }
    /// Its words for people (the console shows them).
    pub(super) fn message(&self) -> &str {
        &self.message
    }
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
        .route("/v1/balance", get(balance))
        .route("/v1/balance/top-up", post(top_up))
        .route("/v1/balance/auto-reload", post(auto_reload))
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/v1/openapi.json", get(|| async { Json(super::openapi::document()) }))
        .merge(api)
        // The console has routes of its own (`/`, `/campaigns/…`, `/assets/…`)
        // with their own layers: no /v1/ request passes through them.
        .merge(super::console::routes(state.clone()))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this endpoint does not take that method",
            )
        })
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(read_whole_request))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One stderr line per request: method, path (without the query), status
/// and latency. Never headers (the token) or bodies.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // A path is at most MAX_URI bytes (longer ones get 414); the log keeps its start.
    let path: String = req.uri().path().chars().take(200).collect();
    let start = Instant::now();
    let res = next.run(req).await;
    super::access_log(format_args!(
        "flowc serve: {method} {path} {} {:.1}ms",
        res.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3
    ));
    res
}

/// Refuses over-long URIs and reads the body in full, within `BODY_TIMEOUT`
/// and `MAX_BODY`, before any handler runs: a client that stalls in its body
/// gets 408 instead of holding a connection and a handler open.
async fn read_whole_request(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI {
        return ApiError::new(StatusCode::URI_TOO_LONG, "uri-too-long", format!("URIs are limited to {MAX_URI} bytes"))
            .into_response();
    }
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", format!("bodies are limited to {MAX_BODY} bytes"))
            .into_response()
    };
    let announced =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read_limited(body)).await {
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
            )
            .into_response()
        }
        Ok(Err(BodyError::TooLarge)) => return too_large(),
        Ok(Err(BodyError::Broken(e))) => return ApiError::bad(format!("cannot read the body: {e}")).into_response(),
        Ok(Ok(b)) => b,
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

enum BodyError {
    TooLarge,
    Broken(String),
}

async fn read_limited(body: Body) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// The safety net for errors answered outside the handlers (axum's
/// rejections): every error response carries the JSON error body.
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    // The console's pages answer errors as pages (`text/html`), for people.
    let answered = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || answered {
        return res;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid-request",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::URI_TOO_LONG => "uri-too-long",
        s if s.is_server_error() => "internal",
        _ => "invalid-request",
    };
    let text = axum::body::to_bytes(res.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.trim().is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    ApiError::new(status, code, message).into_response()
}

/// Bearer-token authentication; the token is never logged or echoed. The
/// scheme is case-insensitive (RFC 9110 §11.1).
async fn auth(AxState(state): AxState<Arc<AppState>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| bearer(v));
    match given {
        Some(t) if super::same_token(t, &state.token) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid bearer token").into_response(),
        // Another scheme (`Basic …`) is not a missing header.
        None if req.headers().contains_key(header::AUTHORIZATION) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the `Authorization` header must be `Bearer <token>`",
        )
        .into_response(),
        None => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing `Authorization: Bearer <token>`")
            .into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer(v: &HeaderValue) -> Option<&str> {
    let (scheme, token) = v.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A campaign id from the path; a path that does not decode (a bad
/// percent-escape) is a JSON 400 like every other error.
fn campaign_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let invalid = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid-path", why);
    let id = p
        .map(|Path(id)| id)
        .map_err(|_| invalid("the campaign id in the path is not valid percent-encoded UTF-8".into()))?;
    if !is_campaign_id(&id) {
        return Err(invalid(format!("`{id}` is not a campaign id (lowercase letters, digits and `_`)")));
    }
    Ok(id)
}

/// A campaign id is a language identifier; anything else (a `%` that did
/// not decode, spaces, capitals) names no campaign.
pub(super) fn is_campaign_id(id: &str) -> bool {
    id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn body_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    // `read_whole_request` has already read the body; this stays for the limit axum applies.
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", format!("bodies are limited to {MAX_BODY} bytes"))
        } else {
            ApiError::bad(r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-json", e.to_string()))
}

/// Runs `f` on the handlers' store, on its thread, alone.
async fn on_store<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Store) -> Result<T, ApiError> + Send + 'static,
{
    state.store.run(f).await.map_err(|Gone| ApiError::internal("the store thread stopped"))?
}

thread_local! {
    /// Programs the store thread decoded, by campaign and version (a
    /// version names one program's content): every trigger reads its
    /// campaign's program, and decoding it again each time cost the service
    /// more than the enrollment itself.
    static PROGRAMS: std::cell::RefCell<std::collections::HashMap<(String, String), Arc<Program>>> =
        Default::default();
}

/// How many decoded programs the store thread keeps.
const PROGRAMS_KEPT: usize = 64;

fn campaign(store: &dyn Store, id: &str) -> Result<(String, Arc<Program>), ApiError> {
    let row = store
        .campaign(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-campaign", format!("no campaign `{id}`")))?;
    let key = (row.name.clone(), row.version.clone());
    let known = PROGRAMS.with(|m| m.borrow().get(&key).cloned());
    let p = match known {
        Some(p) => p,
        None => {
            let p = Arc::new(codec::from_binary(&row.program).map_err(ApiError::internal)?);
            PROGRAMS.with(|m| {
                let mut m = m.borrow_mut();
                if m.len() >= PROGRAMS_KEPT {
                    m.clear();
                }
                m.insert(key, Arc::clone(&p));
            });
            p
        }
    };
    Ok((row.state.as_str().to_string(), p))
}

async fn list(AxState(state): AxState<Arc<AppState>>) -> ApiResult {
    let items = on_store(&state, |store| {
        let rows = store.campaigns().map_err(ApiError::internal)?;
        Ok(rows.iter().map(|c| json!({"id": c.name, "state": c.state, "version": c.version})).collect::<Vec<Value>>())
    })
    .await?;
    Ok(Json(json!({"campaigns": items})).into_response())
}

async fn status(AxState(state): AxState<Arc<AppState>>, id: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = campaign_id(id)?;
    let answer = on_store(&state, move |store| {
        let (st, p) = campaign(store, &id)?;
        let counts = store.counts(&id).map_err(ApiError::internal)?;
        let executions: Map<String, Value> = counts.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect();
        let balance = store.balance().map_err(ApiError::internal)? as f64 / 1e6;
        Ok(json!({"id": id, "state": st, "version": p.version.0, "executions": executions, "balance": {"amount": balance, "currency": "EUR"}}))
    })
    .await?;
    Ok(Json(answer).into_response())
}

/// The account: balance and auto-reload. While `flowc serve` holds the
/// database, this is how money gets in (the CLI is refused by the lock).
fn account(store: &dyn Store) -> Result<Value, ApiError> {
    let balance = store.balance()? as f64 / 1e6;
    let reload = store
        .auto_reload()?
        .map(|r| json!({"threshold": r.threshold_micros as f64 / 1e6, "amount": r.amount_micros as f64 / 1e6}));
    Ok(json!({"amount": balance, "currency": "EUR", "auto_reload": reload}))
}

/// A positive amount in EUR from field `name` of a JSON object.
fn amount_field(m: &Map<String, Value>, name: &str) -> Result<i64, ApiError> {
    let v = m.get(name).ok_or_else(|| ApiError::bad(format!("missing `{name}` (EUR)")))?;
    let micros = v.as_f64().and_then(crate::runtime::store::micros_of_eur).filter(|m| *m > 0);
    micros.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            format!("`{name}` must be an amount above 0 and at most 1,000,000,000 EUR"),
        )
    })
}

fn object_with(body: &Value, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(m) = body else { return Err(ApiError::bad("expected a JSON object")) };
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad(format!("unknown field `{k}` (allowed: {})", allowed.join(", "))));
    }
    Ok(m.clone())
}

async fn balance(AxState(state): AxState<Arc<AppState>>) -> ApiResult {
    Ok(Json(on_store(&state, |store| account(store)).await?).into_response())
}

/// Adds money. Like the CLI's top-up it never resumes a paused campaign.
async fn top_up(AxState(state): AxState<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let m = object_with(&body_json(body)?, &["amount"])?;
    let micros = amount_field(&m, "amount")?;
    let now = state.clock.now();
    let answer = on_store(&state, move |store| {
        store.ledger_add(micros, "top-up", now)?;
        account(store)
    })
    .await?;
    Ok(Json(answer).into_response())
}

/// Sets (`threshold` and `amount`) or turns off (`{"off": true}`) auto-reload.
async fn auto_reload(AxState(state): AxState<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let m = object_with(&body_json(body)?, &["threshold", "amount", "off"])?;
    let setting = match m.get("off") {
        Some(Value::Bool(true)) if m.len() == 1 => None,
        Some(_) => return Err(ApiError::bad("`off` is `true`, alone")),
        None => Some(crate::runtime::store::AutoReload {
            threshold_micros: amount_field(&m, "threshold")?,
            amount_micros: amount_field(&m, "amount")?,
        }),
    };
    let answer = on_store(&state, move |store| {
        store.set_auto_reload(setting)?;
        account(store)
    })
    .await?;
    Ok(Json(answer).into_response())
}

async fn pause(AxState(state): AxState<Arc<AppState>>, id: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = campaign_id(id)?;
    Ok(Json(pause_campaign(&state, id).await?).into_response())
}

async fn resume(AxState(state): AxState<Arc<AppState>>, id: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = campaign_id(id)?;
    Ok(Json(resume_campaign(&state, id).await?).into_response())
}

/// Pauses campaign `id` through the lifecycle: the one path of the API's
/// `POST /v1/campaigns/{id}/pause` and the console's Pause button.
pub(super) async fn pause_campaign(state: &AppState, id: String) -> Result<Value, ApiError> {
    let now = state.clock.now();
    on_store(state, move |store| {
        campaign(store, &id)?;
        lifecycle::pause(store, &id, now)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "invalid-transition", e.to_string()))?;
        Ok(json!({"id": id, "state": "PAUSED"}))
    })
    .await
}

/// Resumes campaign `id` from any paused state: the one path of the API's
/// `POST /v1/campaigns/{id}/resume` and the console's Resume button.
pub(super) async fn resume_campaign(state: &AppState, id: String) -> Result<Value, ApiError> {
    let now = state.clock.now();
    on_store(state, move |store| {
        campaign(store, &id)?;
        let from = lifecycle::resume(store, &id, now)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "invalid-transition", e.to_string()))?;
        Ok(json!({"id": id, "state": "RUNNING", "was": from.as_str()}))
    })
    .await
}

fn only_keys(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad(format!("unknown field `{k}` (allowed: {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

/// Facts of a stored contact for audience and rule checks.
fn facts_of(store: &dyn Store, p: &Program, c: &facts::ContactRecord) -> Result<Facts, ApiError> {
    let events = store.events_for(&[&c.id]).map_err(ApiError::internal)?.into_iter().map(|e| e.event).collect();
    Ok(facts::of_record(p, c, events))
}

fn contact(store: &dyn Store, id: &ContactId) -> Result<Option<facts::ContactRecord>, ApiError> {
    store.contact(id).map_err(ApiError::internal)
}

async fn trigger(
    AxState(state): AxState<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = campaign_id(id)?;
    let body = body_json(body)?;
    let Value::Object(m) = &body else { return Err(ApiError::bad("expected a JSON object")) };
    only_keys(m, &["contacts", "data"])?;
    let Some(Value::Array(ids)) = m.get("contacts") else {
        return Err(ApiError::bad("`contacts` must be an array of contact ids"));
    };
    if ids.is_empty() || ids.len() > MAX_TRIGGER_CONTACTS {
        return Err(ApiError::bad(format!("`contacts` must hold 1 to {MAX_TRIGGER_CONTACTS} ids")));
    }
    let ids: Vec<ContactId> = ids
        .iter()
        .map(|v| v.as_str().filter(|s| !s.is_empty() && s.len() <= 200).map(ContactId::from))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::bad("contact ids are non-empty strings of at most 200 bytes"))?;
    let data = match m.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(d)) => d.clone(),
        Some(_) => return Err(ApiError::bad("`data` must be an object")),
    };
    let now = state.clock.now();
    // Triggers that queue up meanwhile share one transaction; the answer
    // comes after it committed (`store_thread`).
    let answer = state.store.grouped(move |store| enroll_trigger(store, &id, &ids, &data, now)).await;
    match answer {
        Ok(counts) => Ok((StatusCode::ACCEPTED, Json(counts)).into_response()),
        Err(NotDone::Own(e)) => Err(e),
        Err(NotDone::Commit(why)) => Err(ApiError::internal(format!("nothing was enrolled: {why}"))),
        Err(NotDone::Gone) => Err(ApiError::internal("the store thread stopped")),
    }
}

/// A trigger's work inside its group's transaction: checks (refusals come
/// before any write), then the `campaign.triggered` events and the
/// enrollments.
fn enroll_trigger(
    store: &mut dyn Store,
    id: &str,
    ids: &[ContactId],
    data: &Map<String, Value>,
    now: i64,
) -> Result<Value, Refusal<ApiError>> {
    let (st, p) = campaign(store, id).map_err(Refusal::Refused)?;
    if !matches!(p.trigger, Trigger::Api) {
        return Err(Refusal::Refused(ApiError::new(
            StatusCode::CONFLICT,
            "wrong-trigger",
            format!("campaign `{id}` is not triggered by the API"),
        )));
    }
    let st = State::parse(&st).unwrap_or(State::Draft);
    if matches!(st, State::Draft | State::Completed | State::CompletedPartial) {
        return Err(Refusal::Refused(ApiError::new(
            StatusCode::CONFLICT,
            "not-accepting",
            format!("campaign `{id}` is {}", st.as_str()),
        )));
    }
    // The data is the `campaign.triggered` event's: checked as an ingested
    // event's properties are (the schema read only when there is data).
    if !data.is_empty() {
        let schema = schema(store).map_err(Refusal::Refused)?;
        contacts::check_trigger_data(&schema, data).map_err(|why| {
            Refusal::Refused(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", format!("`data`: {why}")))
        })?;
    }
    let mut unknown = Vec::new();
    let mut entries = Vec::new();
    let mut outside = 0;
    let mut events = Vec::new();
    for cid in ids {
        let fits = match &p.audience {
            // No audience to check: whether the contact is stored is enough.
            None => store.contact_exists(cid).map_err(|e| Refusal::Refused(ApiError::internal(e)))?.then_some(true),
            Some(audience) => match contact(store, cid).map_err(Refusal::Refused)? {
                None => None,
                Some(c) => {
                    let f = facts_of(store, &p, &c).map_err(Refusal::Refused)?;
                    Some(eval::eval(&Ctx { program: &p, facts: &f, now }, audience))
                }
            },
        };
        match fits {
            None => unknown.push(cid.clone()),
            Some(false) => outside += 1,
            Some(true) => entries.push(Enrollment { contact: cid.clone(), step: p.nodes[0].id.clone(), wake_at: now }),
        }
    }
    if !unknown.is_empty() {
        return Err(Refusal::Refused(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-contacts",
            format!("no such contact(s): {}", unknown.join(", ")),
        )));
    }
    // Re-entry: a contact the campaign's rule keeps out (`once`: already
    // in; `after D`: its latest execution started less than D ago) is not
    // enrolled and gets no `campaign.triggered` event. Only this job
    // enrolls API campaigns, and the store thread runs one job at a time
    // (a group's jobs in turn, each seeing the ones before), so the check
    // cannot go stale before the enrollment below.
    let asked = entries.len() as u64;
    let ids_in: Vec<&ContactId> = entries.iter().map(|e| &e.contact).collect();
    let latest = store.latest_starts(id, &ids_in).map_err(|e| Refusal::Refused(ApiError::internal(e)))?;
    let rule = p.delivery.reentry;
    entries.retain(|e| reentry::admits(rule, latest.get(&e.contact).copied(), e.wake_at));
    // The same contact named twice in one trigger enters once.
    let mut named = std::collections::HashSet::new();
    entries.retain(|e| named.insert(e.contact.clone()));
    for Enrollment { contact: cid, .. } in &entries {
        let mut props = data.clone();
        props.insert("campaign".into(), json!(id));
        let event = ContactEvent { name: crate::runtime::store::TRIGGERED.into(), at: now, props };
        events.push(EventOf { contact: cid.clone(), event });
    }
    let failed = |e| Refusal::Failed(ApiError::internal(e));
    let enrolled = store.enroll_triggered(&p, &entries, &events, now).map_err(failed)?;
    let already = asked.saturating_sub(enrolled);
    Ok(json!({"enrolled": enrolled, "already_enrolled": already, "not_in_audience": outside}))
}

/// The schema the service validates against: the one the database keeps
/// (stored by `flowc contacts import --schema` and by every launch).
fn schema(store: &dyn Store) -> Result<Schema, ApiError> {
    match contacts::stored_schema(store).map_err(ApiError::internal)? {
        Some(s) => Ok(s),
        None => legacy_schema(store),
    }
}

/// For databases launched before the schema was kept: the built-ins plus
/// every field a launched campaign reads, and the built-in events plus
/// those event triggers name (their properties unchecked, as no types were kept).
fn legacy_schema(store: &dyn Store) -> Result<Schema, ApiError> {
    use crate::check::model::{Field, Origin, Type};
    let mut s = Schema::from_model(crate::check::stdlib_model());
    for c in store.campaigns().map_err(ApiError::internal)? {
        let Ok(p) = codec::from_binary(&c.program) else { continue };
        if let Trigger::Event { event, props, .. } = &p.trigger {
            let props = props.iter().map(|n| {
                (n.clone(), Field { name: n.clone(), ty: Type::Unknown, optional: true, origin: Origin::Registry })
            });
            s.events.entry(event.clone()).or_default().extend(props);
        }
        for f in p.fields {
            s.fields.entry(f.name.clone()).or_insert(Field {
                name: f.name,
                ty: f.ty.checked(),
                optional: f.optional,
                origin: Origin::Registry,
            });
        }
    }
    Ok(s)
}

/// Upserts contacts: each one merges the fields it gives into the stored
/// contact (absent = unchanged, `null` clears an optional field); a new
/// contact without `created_at` is created at the service clock's now.
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
    let now = state.clock.now();
    let upserted = items.len();
    on_store(&state, move |store| upsert(store, &items, now)).await?;
    Ok(Json(json!({"upserted": upserted})).into_response())
}

fn upsert(store: &mut dyn Store, items: &[Value], now: i64) -> Result<(), ApiError> {
    let schema = schema(store)?;
    let mut patches = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let invalid = |field: Option<&str>, message: &str| {
            let at = field.map(|f| format!(".{f}")).unwrap_or_default();
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-contact", format!("contacts[{i}]{at}: {message}"))
        };
        let Value::Object(obj) = item else { return Err(invalid(None, "expected a JSON object")) };
        match contacts::patch(i + 1, obj, &schema) {
            Ok(p) => patches.push(p),
            Err(errors) => {
                return Err(errors
                    .first()
                    .map_or_else(|| invalid(None, "invalid contact"), |e| invalid(e.field.as_deref(), &e.message)))
            }
        }
    }
    // Read, merge and write in one transaction: the runner (another
    // connection) cannot commit a tag change in between and have it
    // overwritten by the merged record.
    crate::runtime::store::atomically(store, |store| {
        // Later items of the same request see the earlier ones' changes.
        let mut merged: Vec<facts::ContactRecord> = Vec::with_capacity(patches.len());
        // What each contact was before this request, to wake what reads a changed field.
        let mut before: Vec<(ContactId, Option<facts::ContactRecord>)> = Vec::new();
        let mut events = Vec::new();
        for mut p in patches {
            let earlier = merged.iter().position(|c| c.id == p.id);
            let existing = match earlier {
                Some(k) => Some(merged.swap_remove(k)),
                None => {
                    let stored = store.contact(&p.id).map_err(ApiError::internal)?;
                    before.push((p.id.clone(), stored.clone()));
                    stored
                }
            };
            events.extend(
                std::mem::take(&mut p.events).into_iter().map(|event| EventOf { contact: p.id.clone(), event }),
            );
            merged.push(p.apply(existing, now));
        }
        store.upsert_contacts(&merged, &events).map_err(ApiError::internal)?;
        let changes: Vec<_> = before
            .into_iter()
            .filter_map(|(id, b)| merged.iter().find(|c| c.id == id).map(|a| (b, a.clone())))
            .collect();
        crate::runtime::wake::contacts_changed(store, &changes, &events, now).map_err(ApiError::internal)
    })?;
    Ok(())
}

/// Ingests one event; event-triggered campaigns whose rule it matches
/// enroll the contact (once).
async fn ingest_event(AxState(state): AxState<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let body = body_json(body)?;
    let now = state.clock.now();
    let answer = on_store(&state, move |store| ingest_one(store, &body, now)).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

fn ingest_one(store: &mut dyn Store, body: &Value, now: i64) -> Result<Value, ApiError> {
    // One check for the API, `flowc events import` and `flowc run --events`.
    let incoming = ingest::check(body, &schema(store)?, now).map_err(|f| match f.kind {
        FaultKind::Malformed => ApiError::bad(f.message),
        FaultKind::UnknownEvent => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-event", f.message),
        FaultKind::InvalidEvent => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", f.message),
    })?;
    if contact(store, &incoming.contact)?.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-contacts",
            format!("no such contact: {}", incoming.contact),
        ));
    }
    let (woken, enrolled_in) = crate::runtime::store::atomically(store, |s| {
        let woken = ingest::store_and_wake(s, std::slice::from_ref(&incoming))?.woken;
        let enrolled_in = ingest::Triggered::load(s)?.enroll(s, &incoming, now)?;
        Ok::<_, crate::runtime::store::StoreError>((woken, enrolled_in))
    })
    .map_err(ApiError::internal)?;
    Ok(json!({"stored": true, "enrolled_in": enrolled_in, "woken": woken}))
}
