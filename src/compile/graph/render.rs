//! A [`Layout`] as an SVG document.
//!
//! Each box is a `<g>` (class `step` with `data-step`, or class `arm` for an
//! arm's chip) holding its `<title>` tooltip (the whole text), its shape and
//! its lines of text. Wires are drawn first so boxes sit on top of them.

use super::layout::{Kind, Layout, Node, Style, Wire, HEX_INSET, SPLIT_BAR};
use super::metrics;
use super::wrap;
use std::fmt::Write;

const WIRE: &str = "#94a3b8";

/// Fill and stroke of a box.
fn colors(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Start => ("#e0f2fe", "#0369a1"),
        Kind::Send => ("#dbeafe", "#1d4ed8"),
        Kind::Wait => ("#f3f4f6", "#4b5563"),
        Kind::If => ("#fef3c7", "#b45309"),
        Kind::Split => ("#ede9fe", "#6d28d9"),
        Kind::Tag => ("#d1fae5", "#047857"),
        Kind::End => ("#fee2e2", "#b91c1c"),
        Kind::Arm => ("#ffffff", "#cbd5e1"),
    }
}

fn text_color(style: Style, stroke: &'static str) -> &'static str {
    match style {
        Style::Label | Style::Title => stroke,
        Style::Detail | Style::Condition => "#334155",
        Style::Arm => "#475569",
        Style::Count => "#0f172a",
    }
}

/// Text as XML character data or an attribute value.
fn esc(s: &str) -> String {
    wrap::clean(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn wire(out: &mut String, w: &Wire) {
    let points: Vec<String> = w.points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let marker = if w.arrow { r#" marker-end="url(#arrow)""# } else { "" };
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{WIRE}" stroke-width="1.5"{marker}/>"#,
        points.join(" ")
    );
}

fn shape(out: &mut String, n: &Node) {
    let (fill, stroke) = colors(n.kind);
    let (x, y, w, h) = (n.x, n.y, n.w, n.h);
    let paint = format!(r#"fill="{fill}" stroke="{stroke}" stroke-width="1.5""#);
    match n.kind {
        Kind::If => {
            let pts = [
                (x + HEX_INSET, y),
                (x + w - HEX_INSET, y),
                (x + w, y + h / 2.0),
                (x + w - HEX_INSET, y + h),
                (x + HEX_INSET, y + h),
                (x, y + h / 2.0),
            ];
            let pts: Vec<String> = pts.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
            let _ = writeln!(out, r#"<polygon points="{}" {paint}/>"#, pts.join(" "));
        }
        _ => {
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="{:.1}" {paint}/>"#,
                n.kind.radius(h)
            );
        }
    }
    if n.kind == Kind::Split {
        for bx in [x + SPLIT_BAR, x + w - SPLIT_BAR] {
            let _ = writeln!(
                out,
                r#"<line x1="{bx:.1}" y1="{y:.1}" x2="{bx:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="1"/>"#,
                y + h
            );
        }
    }
}

fn node(out: &mut String, n: &Node) {
    match n.kind {
        Kind::Arm => out.push_str("<g class=\"arm\">\n"),
        _ => {
            let _ = writeln!(out, r#"<g class="step" data-step="{}">"#, esc(&n.step));
        }
    }
    let _ = writeln!(out, "<title>{}</title>", esc(&n.tooltip));
    shape(out, n);
    let (_, stroke) = colors(n.kind);
    for l in &n.lines {
        let f = l.style.font();
        // A count line is found by its step, to be updated in place.
        let mark = match l.style {
            Style::Count => format!(r#" class="count" data-count="{}""#, esc(&n.step)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            r#"<text{mark} x="{:.1}" y="{:.1}" font-size="{}" font-weight="{}" fill="{}" text-anchor="middle">{}</text>"#,
            l.x,
            l.y,
            f.size,
            f.weight.as_svg(),
            text_color(l.style, stroke),
            esc(&l.text)
        );
    }
    out.push_str("</g>\n");
}

/// The SVG document of a layout.
pub fn svg(l: &Layout) -> String {
    let (w, h) = (l.width.ceil(), l.height.ceil());
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{}">"#,
        metrics::FAMILY
    );
    let _ = writeln!(out, "<title>{}</title>", esc(&l.title));
    let _ = writeln!(
        out,
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{WIRE}"/></marker></defs>"##
    );
    out.push_str("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
    for wr in &l.wires {
        wire(&mut out, wr);
    }
    for n in &l.nodes {
        node(&mut out, n);
    }
    out.push_str("</svg>\n");
    out
}
