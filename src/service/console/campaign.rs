//! `GET /campaigns/{id}`: one campaign for the people running it — the
//! timeline with live counts in every box, the per-step table, the A/B
//! comparison, the audit log, Pause and Resume (with the explicit-resume
//! rule), and a contact lookup (`?contact=ID`).

use super::html::{Html, Svg};
use super::page::{self, badge, csrf_field, live, live_cell as cell, Live};
use super::session::Signed;
use super::view::{self, CampaignView, ContactView, Live as Numbers, AUDIT_ROWS};
use crate::compile::graph;
use crate::runtime::report::AbTest;
use crate::runtime::store::ExecState;
use axum::http::StatusCode;
use axum::response::Response;

pub fn render(signed: &Signed, v: &CampaignView, contact: Option<&ContactView>, done: Option<&str>) -> Response {
    let p = &v.program;
    let id = p.campaign.as_str();
    let n = &v.live;
    let mut b = Html::new();
    b.m("<nav class=\"crumbs\"><a href=\"/\">Campaigns</a> / ").t(id).m("</nav>");
    b.m("<div class=\"title\"><h1>");
    match &p.display_name {
        Some(name) => {
            b.t(name).m(" <span class=\"id\">").t(id).m("</span>");
        }
        None => {
            b.t(id);
        }
    }
    b.m("</h1>").html(badge("campaign", v.state.as_str())).m("</div>");
    b.m("<p class=\"meaning\">");
    live(&mut b, n, "meaning");
    b.m(" · version <code>").t(&p.version.0).m("</code> · clock ");
    live(&mut b, n, "clock");
    b.m("</p>");
    if let Some(d) = done {
        b.m("<p class=\"done\" role=\"status\">").t(d).m("</p>");
    }
    actions(&mut b, signed, id, n);

    b.m("<section><h2>Progress</h2><dl class=\"progress\">");
    for s in ExecState::ALL {
        b.m("<div><dt>").t(s.as_str()).m("</dt><dd>");
        live(&mut b, n, &format!("exec.{}", s.as_str()));
        b.m("</dd></div>");
    }
    b.m("<div><dt>total</dt><dd>");
    live(&mut b, n, "exec.total");
    b.m("</dd></div></dl><p class=\"cost\"><span class=\"label\">Cost so far</span> ");
    live(&mut b, n, "cost");
    b.m("</p><p><span class=\"label\">Balance</span> ");
    live(&mut b, n, "balance");
    b.m("</p>");
    if v.report.goal.is_some() {
        b.m("<p>");
        live(&mut b, n, "goal");
        b.m("</p>");
    }
    b.m("</section>");

    // The timeline: the builder's picture, each box with its live counts.
    let counts = |step: &str| Some(n.get(&format!("badge.{step}")).to_string());
    let svg = Svg(graph::svg_of_program(p, &counts));
    b.m("<section><h2>Timeline</h2><figure class=\"timeline\" aria-label=\"The campaign's steps with their counts\">")
        .svg(&svg)
        .m("</figure></section>");

    steps_table(&mut b, v);
    ab_tables(&mut b, v);
    contact_lookup(&mut b, id, contact);
    audit(&mut b, v);

    let url = format!("/campaigns/{id}/live");
    let body = page::page(id, Some(signed), Live::Poll { url: &url, set: &n.set }, b);
    page::html(StatusCode::OK, body)
}

/// Pause and Resume: real buttons, disabled with the reason when the state
/// does not allow them; each leads to a confirmation first.
fn actions(b: &mut Html, signed: &Signed, id: &str, n: &Numbers) {
    b.m("<section class=\"actions\" aria-label=\"Actions\">");
    for (what, label) in [("pause", "Pause…"), ("resume", "Resume…")] {
        let enabled = n.enabled.get(what).copied().unwrap_or(false);
        b.m("<form method=\"post\" action=\"/campaigns/").t(id).m("/").t(what).m("\">").html(csrf_field(signed));
        b.m("<button type=\"submit\" data-live-enabled=\"").t(what).m("\"");
        if !enabled {
            b.m(" disabled");
        }
        b.m(" aria-describedby=\"").t(what).m("-why\">").t(label).m("</button>");
        b.m("<p class=\"why\" id=\"").t(what).m("-why\" data-live=\"").t(format!("{what}.why")).m("\">");
        b.t(n.get(&format!("{what}.why"))).m("</p></form>");
    }
    b.m("<p class=\"rule\">A campaign paused by flowc itself — <strong>PAUSED_BALANCE</strong> (the balance ran out) or ")
        .m("<strong>PAUSED_ERROR</strong> (the provider kept failing) — never resumes by itself: an operator resumes it ")
        .m("explicitly, here or with <code>flowc campaign resume</code>, after fixing the cause.</p></section>");
}

fn steps_table(b: &mut Html, v: &CampaignView) {
    let n = &v.live;
    let engagement = v.report.steps.iter().any(|s| s.delivered.is_some());
    let conversions = v.report.steps.iter().any(|s| s.conversions.is_some());
    b.m("<section><h2>Steps</h2><div class=\"scroll\"><table class=\"numbers\"><thead><tr>")
        .m("<th scope=\"col\">step</th><th scope=\"col\">kind</th><th scope=\"col\">entered</th><th scope=\"col\">sent</th>")
        .m("<th scope=\"col\">skipped (by reason)</th><th scope=\"col\">held</th><th scope=\"col\">failed</th>");
    if engagement {
        b.m("<th scope=\"col\">delivered</th><th scope=\"col\">opened</th><th scope=\"col\">clicked</th>");
    }
    if conversions {
        b.m("<th scope=\"col\">conversions</th>");
    }
    b.m("<th scope=\"col\">cost</th></tr></thead><tbody>");
    for s in &v.report.steps {
        let k = |what: &str| format!("step.{}.{what}", s.id);
        b.m("<tr><th scope=\"row\"><code>").t(&s.id).m("</code></th><td>").t(s.kind).m("</td>");
        for what in ["entered", "sent", "skipped", "held", "failed"] {
            cell(b, n, &k(what));
        }
        if engagement {
            for what in ["delivered", "opened", "clicked"] {
                cell(b, n, &k(what));
            }
        }
        if conversions {
            cell(b, n, &k("conversions"));
        }
        cell(b, n, &k("cost"));
        b.m("</tr>");
    }
    b.m("</tbody></table></div></section>");
}

fn ab_tables(b: &mut Html, v: &CampaignView) {
    let n = &v.live;
    for (ab, test) in &v.report.ab_tests {
        b.m("<section><h2>A/B test <code>")
            .t(ab)
            .m("</code></h2><div class=\"scroll\"><table class=\"numbers\"><thead><tr>");
        b.m("<th scope=\"col\">variant</th><th scope=\"col\">entered</th>");
        let outcomes = matches!(test, AbTest::Outcomes(_));
        if outcomes {
            b.m("<th scope=\"col\">converted</th><th scope=\"col\">rate</th><th scope=\"col\">uplift vs first</th><th scope=\"col\">confidence</th>");
        }
        b.m("</tr></thead><tbody>");
        // Variants in program order: the baseline first.
        let mut variants: Vec<(usize, &String)> = match test {
            AbTest::Counts(vs) => vs.keys().enumerate().collect(),
            AbTest::Outcomes(vs) => vs.iter().map(|(k, o)| (o.order, k)).collect(),
        };
        variants.sort();
        for (_, var) in variants {
            let k = |what: &str| format!("ab.{ab}.{var}.{what}");
            b.m("<tr><th scope=\"row\">").t(var).m("</th>");
            cell(b, n, &k("entered"));
            if outcomes {
                for what in ["converted", "rate", "uplift", "confidence"] {
                    cell(b, n, &k(what));
                }
            }
            b.m("</tr>");
        }
        b.m("</tbody></table></div></section>");
    }
}

fn contact_lookup(b: &mut Html, id: &str, contact: Option<&ContactView>) {
    b.m("<section><h2>Find a contact</h2><form class=\"lookup\" method=\"get\" action=\"/campaigns/")
        .t(id)
        .m("\"><label for=\"contact\">Contact id</label><input id=\"contact\" name=\"contact\" maxlength=\"200\"");
    if let Some(c) = contact {
        b.m(" value=\"").t(&c.id).m("\"");
    }
    b.m("><button type=\"submit\">Look up</button></form>");
    if let Some(c) = contact {
        b.m("<div class=\"found\" role=\"status\"><p>Contact <code>").t(&c.id).m("</code>: ");
        match (c.known, c.enrolled) {
            (false, _) => b.m("no such contact in this database.</p>"),
            (true, false) => b.m("not in this campaign.</p>"),
            (true, true) => b.m("in this campaign.</p>"),
        };
        if !c.variants.is_empty() {
            b.m("<p>A/B: ");
            for (i, (ab, var)) in c.variants.iter().enumerate() {
                if i > 0 {
                    b.m(", ");
                }
                b.t(ab).m(" → ").t(var);
            }
            b.m("</p>");
        }
        if !c.sent.is_empty() {
            b.m("<ul>");
            for (step, at) in &c.sent {
                b.m("<li>sent at step <code>").t(step).m("</code>, ").t(view::time(*at)).m("</li>");
            }
            b.m("</ul>");
        }
        b.m("</div>");
    }
    b.m("</section>");
}

fn audit(b: &mut Html, v: &CampaignView) {
    let n = &v.live;
    b.m("<section><h2>Audit log</h2><div class=\"scroll\"><table class=\"audit\"><thead><tr>")
        .m("<th scope=\"col\">when</th><th scope=\"col\">change</th><th scope=\"col\">why</th></tr></thead><tbody>");
    // A fixed number of rows, the empty ones hidden: new entries fill them live.
    for i in 0..AUDIT_ROWS {
        let k = |what: &str| format!("audit.{i}.{what}");
        b.m("<tr data-live-row=\"").t(k("at")).m("\"");
        if i >= v.audit.len() {
            b.m(" hidden");
        }
        b.m(">");
        for what in ["at", "change", "why"] {
            cell(b, n, &k(what));
        }
        b.m("</tr>");
    }
    b.m("</tbody></table></div></section>");
}
