//! `GET /`: the campaigns of the database, each with its state (word and
//! colour), executions by state, cost so far against the launch estimate
//! and the latest audit entry; the account's balance above them.

use super::html::Html;
use super::page::{self, badge, live, Live};
use super::session::Signed;
use super::view::Overview;
use crate::runtime::store::ExecState;
use axum::http::StatusCode;
use axum::response::Response;

pub fn render(signed: &Signed, o: &Overview) -> Response {
    let mut b = Html::new();
    b.m("<h1>Campaigns</h1><p class=\"summary\">Balance <strong>");
    live(&mut b, &o.live, "balance");
    b.m("</strong></p>");
    if o.rows.is_empty() {
        b.m("<p>No campaigns in this database yet: <code>flowc campaign launch FILE</code> adds one.</p>");
    }
    b.m("<ul class=\"campaigns\">");
    for r in &o.rows {
        let k = |what: &str| format!("c.{}.{what}", r.id);
        b.m("<li class=\"card\"><div class=\"card-head\"><h2><a href=\"/campaigns/").t(&r.id).m("\">");
        match &r.display_name {
            Some(name) => {
                b.t(name).m(" <span class=\"id\">").t(&r.id).m("</span>");
            }
            None => {
                b.t(&r.id);
            }
        }
        b.m("</a></h2>").html(badge(&r.id, r.state.as_str())).m("</div><p class=\"meaning\">");
        live(&mut b, &o.live, &k("meaning"));
        b.m("</p><dl class=\"progress\">");
        for s in ExecState::ALL {
            b.m("<div><dt>").t(s.as_str()).m("</dt><dd>");
            live(&mut b, &o.live, &k(&format!("exec.{}", s.as_str())));
            b.m("</dd></div>");
        }
        b.m("<div><dt>total</dt><dd>");
        live(&mut b, &o.live, &k("exec.total"));
        b.m("</dd></div></dl><p class=\"cost\"><span class=\"label\">Cost so far</span> ");
        live(&mut b, &o.live, &k("cost"));
        b.m("</p><p class=\"audit\"><span class=\"label\">Last audit entry</span> ");
        live(&mut b, &o.live, &k("audit"));
        b.m("</p></li>");
    }
    b.m("</ul>");
    let body = page::page("Campaigns", Some(signed), Live::Poll { url: "/live", set: &o.live.set }, b);
    page::html(StatusCode::OK, body)
}
