//! The console's script and stylesheet, embedded in the binary: the pages
//! load nothing from anywhere else, and work offline.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const JS: &str = include_str!("assets/console.js");
const CSS: &str = include_str!("assets/console.css");

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Revalidated each time: a new flowc binary brings new assets.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

pub async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

pub async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}
