//! The security headers of every console answer (pages, assets, the live
//! numbers, redirects and errors): a strict Content-Security-Policy, no
//! MIME sniffing, no referrer. Pages and the live numbers are never cached.
//! Only the console's routes pass through this layer; the `/v1/` API does not.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// Nothing but this server's own scripts, styles, fetches and form posts;
/// no inline script or style, no frames, no `<base>`. Pictures are inline
/// SVG (`img-src data:` only for the favicon placeholder).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn secure(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Assets set their own caching; everything else holds live numbers or a session.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
