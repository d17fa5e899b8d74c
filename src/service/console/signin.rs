//! Signing in and out: the form, `POST /login` (the API token for a
//! session cookie) and `POST /logout`.

use super::html::Html;
use super::page::{self, Live};
use super::session;
use super::{form, Console};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// The sign-in page, with `message` above the form when there is one.
pub fn form_page(status: StatusCode, message: Option<&str>) -> Response {
    let mut body = Html::new();
    body.m("<section class=\"signin\"><h1>Sign in</h1>")
        .m("<p>Use the API token this server was started with (<code>FLOWC_API_TOKEN</code> or <code>--token-file</code>).</p>");
    if let Some(m) = message {
        body.m("<p class=\"problem\" role=\"alert\">").t(m).m("</p>");
    }
    body.m("<form method=\"post\" action=\"/login\"><label for=\"token\">API token</label>")
        .m("<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>")
        .m("<button type=\"submit\">Sign in</button></form></section>");
    page::html(status, page::page("Sign in", None, Live::Still, body))
}

/// `POST /login`: the right token starts a session; anything else is 401
/// with the form again (the token given is never echoed).
pub async fn login(State(console): State<Arc<Console>>, body: Bytes) -> Response {
    let given = form::field(&body, "token").unwrap_or_default();
    if given.is_empty() || !crate::service::same_token(given.trim(), &console.app.token) {
        return form_page(StatusCode::UNAUTHORIZED, Some("That is not this server's API token."));
    }
    let Ok(signed) = console.sessions.start() else {
        return page::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Cannot sign in",
            "The system has no randomness to make a session id with.",
        );
    };
    let mut res = page::see_other("/");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&signed.id)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `POST /logout`: ends the session (with its CSRF token) and clears the cookie.
pub async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(signed) = console.signed_with_csrf(&headers, &body) else { return super::forbidden() };
    console.sessions.end(&signed.id);
    let mut res = page::see_other("/");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}
