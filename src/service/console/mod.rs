//! The operator console of `flowc serve` (docs/console.md): HTML pages at
//! `/` for the people running campaigns, beside the JSON API at `/v1/`.
//!
//! - `GET /`: the sign-in form without a session, else the campaign list;
//!   `POST /login` (form field `token`, the API token) starts a session,
//!   `POST /logout` ends it (`signin`, `session`).
//! - `GET /campaigns/{id}`: one campaign (`campaign`); `POST
//!   /campaigns/{id}/pause|resume` through the API's own lifecycle calls
//!   (`actions`).
//! - `GET /live`, `GET /campaigns/{id}/live`: the numbers the pages poll (`live`).
//! - `GET /assets/console.js|css`: embedded (`assets`).
//!
//! Invariants: the console reads only through the `Store` (on the handlers'
//! store thread) and changes state only through the functions the API
//! calls; it holds no SQL. Every text that came from a `.flow` file or a
//! contact goes through `html::Html::t` (escaped). Every answer carries
//! the security headers (`headers`); every state-changing request needs
//! the session's CSRF token.

mod actions;
mod assets;
mod campaign;
mod form;
mod headers;
pub mod html;
mod list;
mod live;
mod page;
mod session;
mod signin;
mod view;

use super::AppState;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{middleware, Router};
use session::Signed;
use std::sync::Arc;

/// What the console's handlers share: the service's state and the sessions.
pub struct Console {
    app: Arc<AppState>,
    sessions: session::Sessions,
}

impl Console {
    /// The session of a state-changing request whose form carries the
    /// session's CSRF token (compared in constant time).
    fn signed_with_csrf(&self, headers: &HeaderMap, body: &[u8]) -> Option<Signed> {
        let signed = self.sessions.of(headers)?;
        let given = form::field(body, "csrf")?;
        signed.csrf.matches(&given).then_some(signed)
    }
}

/// The console's routes, with their own security headers layer.
pub fn routes(app: Arc<AppState>) -> Router<Arc<AppState>> {
    let console = Arc::new(Console { app, sessions: session::Sessions::default() });
    Router::new()
        .route("/", get(index))
        .route("/login", post(signin::login))
        .route("/logout", post(signin::logout))
        .route("/live", get(live::list))
        .route("/campaigns/{id}", get(campaign_page))
        .route("/campaigns/{id}/live", get(live::campaign))
        .route("/campaigns/{id}/pause", post(actions::pause))
        .route("/campaigns/{id}/resume", post(actions::resume))
        .route("/assets/console.js", get(assets::js))
        .route("/assets/console.css", get(assets::css))
        .layer(middleware::from_fn(headers::secure))
        .with_state(console)
}

/// 403: a state-changing request without a live session and its CSRF token.
fn forbidden() -> Response {
    page::problem(
        StatusCode::FORBIDDEN,
        None,
        "Not allowed",
        "This form was not sent from a page of your current session. Sign in again and retry from the page.",
    )
}

/// A campaign id from the path: a language identifier, or nothing.
fn campaign_id(id: Result<Path<String>, PathRejection>) -> Option<String> {
    id.ok().map(|Path(id)| id).filter(|id| super::api::is_campaign_id(id))
}

fn no_campaign(signed: &Signed, id: &str) -> Response {
    page::problem(
        StatusCode::NOT_FOUND,
        Some(signed),
        "No such campaign",
        &format!("There is no campaign `{id}` in this database."),
    )
}

fn store_failed(signed: &Signed, why: &str) -> Response {
    page::problem(StatusCode::INTERNAL_SERVER_ERROR, Some(signed), "The database could not be read", why)
}

async fn index(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(signed) = console.sessions.of(&headers) else {
        return signin::form_page(StatusCode::OK, None);
    };
    match console.app.store.run(|store| view::overview(store)).await {
        Ok(Ok(o)) => list::render(&signed, &o),
        Ok(Err(e)) => store_failed(&signed, &e.to_string()),
        Err(_) => store_failed(&signed, "the store thread stopped"),
    }
}

async fn campaign_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(signed) = console.sessions.of(&headers) else { return page::see_other("/") };
    let Some(id) = campaign_id(id) else { return no_campaign(&signed, "(not a campaign id)") };
    let query = Bytes::from(query.unwrap_or_default());
    // Contact ids are at most 200 bytes (the API's limit); a longer one is none.
    let contact = form::field(&query, "contact").filter(|c| !c.trim().is_empty() && c.len() <= 200);
    let asked = form::field(&query, "contact").is_some_and(|c| !c.trim().is_empty());
    let done = match form::field(&query, "done").as_deref() {
        Some("pause") => Some("Paused."),
        Some("resume") => Some("Resumed."),
        _ => None,
    };
    let now = console.app.clock.now();
    let key = id.clone();
    let found = console
        .app
        .store
        .run(move |store| {
            let Some(v) = view::campaign(store, &key, now)? else { return Ok(None) };
            let c = match contact {
                Some(c) => Some(view::contact(store, &key, &c)?),
                None => None,
            };
            Ok::<_, crate::runtime::store::StoreError>(Some((v, c)))
        })
        .await;
    match found {
        Ok(Ok(Some((v, mut c)))) => {
            if asked && c.is_none() {
                // Too long to be anyone's id: say so rather than look it up.
                c = Some(view::ContactView {
                    id: "(longer than any contact id)".into(),
                    known: false,
                    enrolled: false,
                    variants: Vec::new(),
                    sent: Vec::new(),
                });
            }
            campaign::render(&signed, &v, c.as_ref(), done)
        }
        Ok(Ok(None)) => no_campaign(&signed, &id),
        Ok(Err(e)) => store_failed(&signed, &e.to_string()),
        Err(_) => store_failed(&signed, "the store thread stopped"),
    }
}
