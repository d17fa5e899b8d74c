//! `flowc graph`: the flow drawn like the builder's timeline.
//!
//! SVG is laid out here (no graphviz): steps run top to bottom, branches and
//! variants sit side by side and rejoin below. DOT and Mermaid are emitted
//! from the compiled program and laid out by their own tools.

use super::dis;
use super::program::{Op, Program};
use crate::check::model::{Campaign, Step, StepKind};
use crate::source::SourceText;
use std::fmt::Write;

const NODE_W: f64 = 230.0;
const NODE_H: f64 = 46.0;
const V_GAP: f64 = 34.0;
const H_GAP: f64 = 26.0;
const MARGIN: f64 = 30.0;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Start,
    Send,
    Wait,
    If,
    Split,
    Tag,
    End,
}

impl Kind {
    fn colors(self) -> (&'static str, &'static str) {
        match self {
            Kind::Start => ("#e0f2fe", "#0369a1"),
            Kind::Send => ("#dbeafe", "#1d4ed8"),
            Kind::Wait => ("#f3f4f6", "#4b5563"),
            Kind::If => ("#fef3c7", "#b45309"),
            Kind::Split => ("#ede9fe", "#6d28d9"),
            Kind::Tag => ("#d1fae5", "#047857"),
            Kind::End => ("#fee2e2", "#b91c1c"),
        }
    }
}

struct Label {
    kind: Kind,
    title: String,
    detail: String,
    id: String,
}

/// The layout tree: a sequence of boxes and forks.
enum Item {
    Node(Label),
    Fork { head: Label, arms: Vec<(String, Vec<Item>)> },
}

fn width(items: &[Item]) -> f64 {
    items.iter().map(item_width).fold(NODE_W, f64::max)
}

fn item_width(i: &Item) -> f64 {
    match i {
        Item::Node(_) => NODE_W,
        Item::Fork { arms, .. } => {
            let sum: f64 = arms.iter().map(|(_, a)| width(a)).sum::<f64>() + H_GAP * (arms.len().saturating_sub(1)) as f64;
            sum.max(NODE_W)
        }
    }
}

fn height(items: &[Item]) -> f64 {
    items.iter().map(|i| item_height(i) + V_GAP).sum::<f64>()
}

fn item_height(i: &Item) -> f64 {
    match i {
        Item::Node(_) => NODE_H,
        Item::Fork { arms, .. } => NODE_H + V_GAP + arms.iter().map(|(_, a)| height(a)).fold(0.0, f64::max) + V_GAP / 2.0,
    }
}

fn terminates(items: &[Item]) -> bool {
    match items.last() {
        Some(Item::Node(l)) => l.kind == Kind::End,
        Some(Item::Fork { head, arms }) => {
            let all_arms_end = arms.iter().all(|(_, a)| terminates(a));
            // An `if` without `else` has an implicit empty arm that falls through.
            all_arms_end && (head.kind == Kind::Split || arms.iter().any(|(l, _)| l == "else"))
        }
        None => false,
    }
}

fn snippet(src: &SourceText, span: crate::source::Span, max: usize) -> String {
    let text = src.text.get(span.range()).unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > max {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    } else {
        text
    }
}

fn items(steps: &[Step], src: &SourceText) -> Vec<Item> {
    steps
        .iter()
        .map(|s| {
            let id = s.id.0.clone();
            match &s.kind {
                StepKind::Send { target, fallback, .. } => Item::Node(Label {
                    kind: Kind::Send,
                    title: format!("SEND {}.{}", target.channel, target.message),
                    detail: match fallback {
                        Some(f) => format!("{} ↳ {}", target.template, f.template),
                        None => target.template.clone(),
                    },
                    id,
                }),
                StepKind::Wait { minutes } => Item::Node(Label { kind: Kind::Wait, title: format!("WAIT {}", dis::duration(*minutes)), detail: String::new(), id }),
                StepKind::Tag { add, tag } => Item::Node(Label { kind: Kind::Tag, title: format!("TAG {} {tag:?}", if *add { "add" } else { "remove" }), detail: String::new(), id }),
                StepKind::End => Item::Node(Label { kind: Kind::End, title: "END".into(), detail: String::new(), id }),
                StepKind::If { arms, otherwise } => {
                    let first = arms.first().map(|(c, _)| snippet(src, c.span, 30)).unwrap_or_default();
                    let mut out: Vec<(String, Vec<Item>)> = Vec::new();
                    for (k, (c, body)) in arms.iter().enumerate() {
                        let label = if k == 0 { "yes".to_string() } else { format!("else if {}", snippet(src, c.span, 22)) };
                        out.push((label, items(body, src)));
                    }
                    out.push(("else".into(), items(otherwise, src)));
                    Item::Fork { head: Label { kind: Kind::If, title: "IF".into(), detail: first, id }, arms: out }
                }
                StepKind::AbTest { name, variants } => Item::Fork {
                    head: Label { kind: Kind::Split, title: format!("A/B {name}"), detail: format!("{} variants", variants.len()), id },
                    arms: variants.iter().map(|v| (format!("{} {}%", v.name, dis::percent(v.weight_bp)), items(&v.steps, src))).collect(),
                },
            }
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

struct Svg {
    out: String,
}

impl Svg {
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64) {
        let _ = writeln!(self.out, r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#94a3b8" stroke-width="1.5"/>"##);
    }
    fn arrow(&mut self, x: f64, y1: f64, y2: f64) {
        let _ = writeln!(self.out, r##"<line x1="{x:.1}" y1="{y1:.1}" x2="{x:.1}" y2="{y2:.1}" stroke="#94a3b8" stroke-width="1.5" marker-end="url(#arrow)"/>"##);
    }
    fn text(&mut self, x: f64, y: f64, size: u32, weight: &str, fill: &str, s: &str) {
        let _ = writeln!(self.out, r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" font-weight="{weight}" fill="{fill}" text-anchor="middle">{}</text>"#, esc(s));
    }

    fn node(&mut self, cx: f64, top: f64, l: &Label) {
        let (fill, stroke) = l.kind.colors();
        let (x, w, h) = (cx - NODE_W / 2.0, NODE_W, NODE_H);
        let shape = match l.kind {
            Kind::If => format!(
                r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}""#,
                cx, top, x + w, top + h / 2.0, cx, top + h, x, top + h / 2.0
            ),
            Kind::Split => format!(
                r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}""#,
                x + 16.0, top, x + w - 16.0, top, x + w, top + h / 2.0, x + w - 16.0, top + h, x + 16.0, top + h, x, top + h / 2.0
            ),
            Kind::End | Kind::Start => format!(r#"<rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" rx="{:.1}""#, h / 2.0),
            Kind::Wait | Kind::Tag => format!(r#"<rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" rx="10""#),
            Kind::Send => format!(r#"<rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" rx="3""#),
        };
        let _ = writeln!(self.out, r#"<g class="step" data-step="{}">"#, esc(&l.id));
        let _ = writeln!(self.out, r#"{shape} fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>"#);
        let _ = writeln!(self.out, "<title>{}</title>", esc(&l.id));
        if l.detail.is_empty() {
            self.text(cx, top + h / 2.0 + 5.0, 13, "600", stroke, &l.title);
        } else {
            self.text(cx, top + 19.0, 13, "600", stroke, &l.title);
            self.text(cx, top + 35.0, 11, "400", "#334155", &l.detail);
        }
        let _ = writeln!(self.out, "</g>");
    }

    /// Draws a sequence centred on `cx` from `top`; returns the open exit
    /// (bottom y) or `None` when every path ends inside it.
    fn seq(&mut self, items: &[Item], cx: f64, mut top: f64, mut entry: Option<f64>) -> Option<f64> {
        for item in items {
            if let Some(from) = entry {
                self.arrow(cx, from, top);
            }
            entry = self.item(item, cx, top);
            top += item_height(item) + V_GAP;
        }
        entry
    }

    fn item(&mut self, item: &Item, cx: f64, top: f64) -> Option<f64> {
        match item {
            Item::Node(l) => {
                self.node(cx, top, l);
                (l.kind != Kind::End).then_some(top + NODE_H)
            }
            Item::Fork { head, arms } => {
                self.node(cx, top, head);
                let total = item_width(item);
                let mut x = cx - total / 2.0;
                let arms_top = top + NODE_H + V_GAP;
                let merge_y = top + item_height(item) - V_GAP / 2.0;
                let mut any_open = false;
                let widths: Vec<f64> = arms.iter().map(|(_, a)| width(a)).collect();
                let used: f64 = widths.iter().sum::<f64>() + H_GAP * (arms.len().saturating_sub(1)) as f64;
                x += (total - used) / 2.0;
                for ((label, arm), w) in arms.iter().zip(widths) {
                    let acx = x + w / 2.0;
                    // From the head down into the arm's column.
                    let mid = top + NODE_H + V_GAP / 2.0;
                    self.line(cx, top + NODE_H, cx, mid);
                    self.line(cx, mid, acx, mid);
                    let _ = writeln!(
                        self.out,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" font-weight="500" fill="#475569" text-anchor="start">{}</text>"##,
                        acx + 5.0,
                        mid + 13.0,
                        esc(label)
                    );
                    let exit = if arm.is_empty() {
                        self.line(acx, mid, acx, arms_top);
                        Some(arms_top)
                    } else {
                        self.arrow(acx, mid, arms_top);
                        self.seq(arm, acx, arms_top, None)
                    };
                    if let Some(from) = exit {
                        any_open = true;
                        self.line(acx, from, acx, merge_y);
                        self.line(acx, merge_y, cx, merge_y);
                    }
                    x += w + H_GAP;
                }
                let falls_through = !terminates(std::slice::from_ref(item));
                (any_open && falls_through).then_some(merge_y)
            }
        }
    }
}

/// An SVG picture of the campaign as the builder draws it.
pub fn svg(c: &Campaign, src: &SourceText) -> String {
    let body = items(&c.steps, src);
    let start = Item::Node(Label {
        kind: Kind::Start,
        title: c.display_name.clone().unwrap_or_else(|| c.name.clone()),
        detail: format!("trigger: {}", trigger_text(c)),
        id: format!("{}/trigger", c.name),
    });
    let mut all = vec![start];
    all.extend(body);
    if !terminates(&all) {
        all.push(Item::Node(Label { kind: Kind::End, title: "END".into(), detail: String::new(), id: format!("{}/end", c.name) }));
    }
    let w = width(&all) + 2.0 * MARGIN;
    let h = height(&all) + 2.0 * MARGIN;
    let mut svg = Svg { out: String::new() };
    let _ = writeln!(svg.out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg.out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="Inter, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(svg.out, "<title>{}</title>", esc(&c.name));
    let _ = writeln!(
        svg.out,
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>"##
    );
    let _ = writeln!(svg.out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    svg.seq(&all, w / 2.0, MARGIN, None);
    svg.out.push_str("</svg>\n");
    svg.out
}

fn trigger_text(c: &Campaign) -> String {
    use crate::check::model::Trigger;
    match &c.trigger {
        Trigger::Scheduled { at, zone } => format!("{} {zone}", at.format("%Y-%m-%d %H:%M")),
        Trigger::Event { event, .. } => format!("event {event}"),
        Trigger::Manual | Trigger::Missing => "manual".into(),
        Trigger::Api => "api".into(),
    }
}

fn dot_shape(op: &Op) -> (&'static str, &'static str) {
    match op {
        Op::Send { .. } => ("box", "#dbeafe"),
        Op::Wait { .. } => ("box", "#f3f4f6"),
        Op::Branch { .. } => ("diamond", "#fef3c7"),
        Op::Split { .. } => ("hexagon", "#ede9fe"),
        Op::Tag { .. } => ("box", "#d1fae5"),
        Op::Jump { .. } => ("point", "#94a3b8"),
        Op::End => ("oval", "#fee2e2"),
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT of the compiled program.
pub fn dot(p: &Program) -> String {
    let mut out = format!("digraph \"{}\" {{\n  rankdir=TB;\n  node [style=filled, fontname=\"Helvetica\"];\n", dot_escape(&p.campaign));
    for (i, n) in p.nodes.iter().enumerate() {
        let (shape, fill) = dot_shape(&n.op);
        let label = format!("{}\\n{}", dot_escape(&dis::instruction(p, &n.op)), dot_escape(&n.id.0));
        let _ = writeln!(out, "  n{i} [shape={shape}, fillcolor=\"{fill}\", label=\"{label}\"];");
    }
    for (i, n) in p.nodes.iter().enumerate() {
        match &n.op {
            Op::Branch { then, otherwise, .. } => {
                let _ = writeln!(out, "  n{i} -> n{} [label=\"yes\"];\n  n{i} -> n{} [label=\"no\"];", then.0, otherwise.0);
            }
            Op::Split { variants, .. } => {
                for v in variants {
                    let _ = writeln!(out, "  n{i} -> n{} [label=\"{} {}%\"];", v.target.0, dot_escape(&v.name), dis::percent(v.weight_bp));
                }
            }
            op => {
                for s in op.successors() {
                    let _ = writeln!(out, "  n{i} -> n{};", s.0);
                }
            }
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// A Mermaid flowchart of the compiled program.
pub fn mermaid(p: &Program) -> String {
    let mut out = String::from("flowchart TD\n");
    for (i, n) in p.nodes.iter().enumerate() {
        let t = mermaid_text(&format!("{}<br/><small>{}</small>", dis::instruction(p, &n.op), n.id.0));
        let node = match &n.op {
            Op::Send { .. } => format!("n{i}[\"{t}\"]"),
            Op::Wait { .. } => format!("n{i}([\"{t}\"])"),
            Op::Branch { .. } => format!("n{i}{{\"{t}\"}}"),
            Op::Split { .. } => format!("n{i}{{{{\"{t}\"}}}}"),
            Op::Tag { .. } => format!("n{i}[/\"{t}\"/]"),
            Op::Jump { .. } => format!("n{i}((\" \"))"),
            Op::End => format!("n{i}((\"{t}\"))"),
        };
        let _ = writeln!(out, "  {node}");
    }
    for (i, n) in p.nodes.iter().enumerate() {
        match &n.op {
            Op::Branch { then, otherwise, .. } => {
                let _ = writeln!(out, "  n{i} -->|yes| n{}\n  n{i} -->|no| n{}", then.0, otherwise.0);
            }
            Op::Split { variants, .. } => {
                for v in variants {
                    let _ = writeln!(out, "  n{i} -->|\"{} {}%\"| n{}", mermaid_text(&v.name), dis::percent(v.weight_bp), v.target.0);
                }
            }
            op => {
                for s in op.successors() {
                    let _ = writeln!(out, "  n{i} --> n{}", s.0);
                }
            }
        }
    }
    out
}
