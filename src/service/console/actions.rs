//! Pause and Resume from the console: `POST /campaigns/{id}/pause|resume`
//! with the session's CSRF token. Without `confirm=yes` the answer is a
//! page asking to confirm; with it, the same lifecycle call as the API's
//! `POST /v1/campaigns/{id}/pause|resume` (`api::pause_campaign`,
//! `api::resume_campaign`), then back to the campaign page.

use super::html::Html;
use super::page::{self, csrf_field, Live};
use super::session::Signed;
use super::{form, Console};
use crate::service::api;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

#[derive(Clone, Copy)]
pub enum Action {
    Pause,
    Resume,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Action::Pause => "No new messages go out until someone resumes it. Contacts stay where they are.",
            Action::Resume => {
                "Sending starts again from where each contact stopped. After a provider outage (PAUSED_ERROR) \
                 the first send is a probe; after PAUSED_BALANCE make sure the balance was topped up."
            }
        }
    }
}

pub async fn pause(
    console: State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    act(console, headers, id, body, Action::Pause).await
}

pub async fn resume(
    console: State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    act(console, headers, id, body, Action::Resume).await
}

async fn act(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
    action: Action,
) -> Response {
    // The CSRF check comes first: a forged request learns nothing else.
    let Some(signed) = console.signed_with_csrf(&headers, &body) else { return super::forbidden() };
    let Some(id) = super::campaign_id(id) else { return super::no_campaign(&signed, "?") };
    if form::field(&body, "confirm").as_deref() != Some("yes") {
        return confirm(&signed, &id, action);
    }
    let app = console.app.clone();
    let done = match action {
        Action::Pause => api::pause_campaign(&app, id.clone()).await,
        Action::Resume => api::resume_campaign(&app, id.clone()).await,
    };
    match done {
        Ok(_) => page::see_other(&format!("/campaigns/{id}?done={}", action.verb())),
        Err(e) if e.status() == StatusCode::NOT_FOUND => super::no_campaign(&signed, &id),
        Err(e) => page::problem(e.status(), Some(&signed), &format!("Cannot {} {id}", action.verb()), e.message()),
    }
}

/// The confirmation step: what the action does, and a button that does it.
fn confirm(signed: &Signed, id: &str, action: Action) -> Response {
    let verb = action.verb();
    let mut b = Html::new();
    b.m("<section class=\"confirm\"><h1>").t(format!("{}{} {id}?", &verb[..1].to_uppercase(), &verb[1..])).m("</h1>");
    b.m("<p>").t(action.consequence()).m("</p>");
    b.m("<form method=\"post\" action=\"/campaigns/").t(id).m("/").t(verb).m("\">").html(csrf_field(signed));
    b.m("<input type=\"hidden\" name=\"confirm\" value=\"yes\">");
    b.m("<button type=\"submit\" class=\"primary\">").t(format!("Yes, {verb} {id}")).m("</button> ");
    b.m("<a class=\"cancel\" href=\"/campaigns/").t(id).m("\">Cancel</a></form></section>");
    page::html(StatusCode::OK, page::page(&format!("{verb} {id}"), Some(signed), Live::Still, b))
}
