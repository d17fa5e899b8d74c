//! The frame every console page shares: the document head (the embedded
//! stylesheet and script, nothing from elsewhere), the top bar with the
//! sign-out form, and answers for pages and redirects.

use super::html::Html;
use super::session::Signed;
use super::view::Live as Numbers;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// What the page's script polls for live numbers, if anything.
pub enum Live<'a> {
    Poll { url: &'a str, set: &'a str },
    Still,
}

/// A whole page: `title`, the bar (with sign-out when `signed`), `body`.
pub fn page(title: &str, signed: Option<&Signed>, live: Live, body: Html) -> String {
    let mut h = Html::new();
    h.m("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .m("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .m("<title>")
        .t(title)
        .m(" · flowc console</title>")
        .m("<link rel=\"icon\" href=\"data:,\">")
        .m("<link rel=\"stylesheet\" href=\"/assets/console.css\">")
        .m("<script src=\"/assets/console.js\" defer></script></head>\n<body>")
        .m("<a class=\"skip\" href=\"#main\">Skip to content</a>")
        .m("<header class=\"bar\"><a class=\"brand\" href=\"/\">flowc console</a>");
    if let Some(s) = signed {
        h.m("<form class=\"signout\" method=\"post\" action=\"/logout\">")
            .html(csrf_field(s))
            .m("<button type=\"submit\">Sign out</button></form>");
    }
    h.m("</header>\n<main id=\"main\"");
    if let Live::Poll { url, set } = live {
        h.m(" data-live-url=\"").t(url).m("\" data-live-set=\"").t(set).m("\"");
    }
    h.m(">").html(body);
    if let Live::Poll { .. } = live {
        h.m("<p class=\"status\" id=\"live-status\" role=\"status\" aria-live=\"polite\">Live: numbers update every 2 seconds.</p>");
    }
    h.m("</main></body></html>\n");
    h.finish()
}

/// A number the page keeps live: its element names its key in the `Live`
/// map, and starts with the value the map has now.
pub fn live(h: &mut Html, numbers: &Numbers, key: &str) {
    h.m("<span data-live=\"").t(key).m("\">").t(numbers.get(key)).m("</span>");
}

/// The same as a table cell.
pub fn live_cell(h: &mut Html, numbers: &Numbers, key: &str) {
    h.m("<td data-live=\"").t(key).m("\">").t(numbers.get(key)).m("</td>");
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(s: &Signed) -> Html {
    let mut h = Html::new();
    h.m("<input type=\"hidden\" name=\"csrf\" value=\"").t(s.csrf.as_str()).m("\">");
    h
}

/// A state as a badge: the word always, the colour from the stylesheet
/// (`data-state`), updated live through `data-live-state=key`.
pub fn badge(key: &str, state: &str) -> Html {
    let mut h = Html::new();
    h.m("<span class=\"state\" data-state=\"")
        .t(state)
        .m("\" data-live-state=\"")
        .t(key)
        .m("\"><span class=\"dot\" aria-hidden=\"true\"></span><span data-live=\"")
        .t(if key == "campaign" { "state".to_string() } else { format!("c.{key}.state") })
        .m("\">")
        .t(state)
        .m("</span></span>");
    h
}

/// An HTML answer.
pub fn html(status: StatusCode, text: String) -> Response {
    let mut res = (status, text).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    res
}

/// `303 See Other` to `to` (after a form post, or to the sign-in page).
pub fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    // An empty HTML body: a redirect is a page answer like the others.
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    res
}

/// A page that says what went wrong, with a way back.
pub fn problem(status: StatusCode, signed: Option<&Signed>, title: &str, message: &str) -> Response {
    let mut body = Html::new();
    body.m("<h1>")
        .t(title)
        .m("</h1><p class=\"problem\">")
        .t(message)
        .m("</p><p><a href=\"/\">Back to the campaigns</a></p>");
    html(status, page(title, signed, Live::Still, body))
}
