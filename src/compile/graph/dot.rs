//! Graphviz DOT of a compiled program; Graphviz does the layout.

use super::captions::{self, Caption, Written};
use crate::check::model::Campaign;
use crate::compile::dis;
use crate::compile::program::{Op, Program};
use std::fmt::Write;

fn shape(op: &Op) -> (&'static str, &'static str) {
    match op {
        Op::Send { .. } => ("box", "#dbeafe"),
        Op::Wait { .. } => ("box", "#f3f4f6"),
        Op::Branch { .. } => ("diamond", "#fef3c7"),
        Op::Split { .. } => ("hexagon", "#ede9fe"),
        Op::Tag { .. } | Op::Set { .. } => ("box", "#d1fae5"),
        Op::WaitUntil { .. } => ("hexagon", "#f3f4f6"),
        Op::Jump { .. } => ("point", "#94a3b8"),
        Op::End => ("oval", "#fee2e2"),
    }
}

/// Text inside a DOT quoted string: `"` and `\` escaped (so no `\N`-style
/// escape of Graphviz's own applies), and no raw line breaks.
fn esc(s: &str) -> String {
    super::wrap::clean(s).replace('\\', "\\\\").replace('"', "\\\"")
}

fn label(c: &Caption) -> String {
    let mut parts: Vec<String> = c.lines.iter().map(|l| esc(l)).collect();
    if !c.small.is_empty() {
        parts.push(esc(&c.small));
    }
    parts.join("\\n")
}

/// Graphviz DOT of the compiled program.
///
/// `c` is the campaign `p` was compiled from; it adds what the program
/// does not keep (a written `fallback none`).
pub fn dot(p: &Program, c: &Campaign) -> String {
    let written = Written::of(c);
    let mut out =
        format!("digraph \"{}\" {{\n  rankdir=TB;\n  node [style=filled, fontname=\"Helvetica\"];\n", esc(&p.campaign));
    let _ = writeln!(
        out,
        "  start [shape=box, style=\"rounded,filled\", fillcolor=\"#e0f2fe\", label=\"{}\"];",
        label(&captions::start(p))
    );
    if !p.nodes.is_empty() {
        let _ = writeln!(out, "  start -> n0;");
    }
    for (i, n) in p.nodes.iter().enumerate() {
        let (shape, fill) = shape(&n.op);
        let _ = writeln!(
            out,
            "  n{i} [shape={shape}, fillcolor=\"{fill}\", label=\"{}\"];",
            label(&captions::node(p, &written, n))
        );
    }
    for (i, n) in p.nodes.iter().enumerate() {
        match &n.op {
            Op::Branch { then, otherwise, .. } => {
                let _ =
                    writeln!(out, "  n{i} -> n{} [label=\"yes\"];\n  n{i} -> n{} [label=\"no\"];", then.0, otherwise.0);
            }
            Op::Split { variants, .. } => {
                for v in variants {
                    let _ = writeln!(
                        out,
                        "  n{i} -> n{} [label=\"{} {}%\"];",
                        v.target.0,
                        esc(&v.name),
                        dis::percent(v.weight_bp)
                    );
                }
            }
            Op::WaitUntil { arms, timeout_minutes, timeout } => {
                let targets = arms.iter().map(|a| a.target).chain([*timeout]);
                for (to, l) in targets.zip(dis::wait_paths(p, arms, *timeout_minutes)) {
                    let _ = writeln!(out, "  n{i} -> n{} [label=\"{}\"];", to.0, esc(&l));
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
