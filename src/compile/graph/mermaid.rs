//! A Mermaid flowchart of a compiled program; Mermaid does the layout.
//!
//! Labels are quoted strings that Mermaid renders as HTML, so every
//! character that means something there (`<`, `>`, `&`, `"`, and `#` and
//! `` ` `` that start Mermaid's own entity codes and Markdown strings) is
//! written as a Mermaid entity code (`#lt;`, `#35;`). Only the `<br/>` and
//! `<small>` written here are markup.

use super::captions::{self, Caption, Written};
use crate::check::model::Campaign;
use crate::compile::dis;
use crate::compile::program::{Op, Program};
use std::fmt::Write;

fn esc(s: &str) -> String {
    let mut out = String::new();
    for c in super::wrap::clean(s).chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            c => out.push(c),
        }
    }
    out
}

fn label(c: &Caption) -> String {
    let mut out: Vec<String> = c.lines.iter().map(|l| esc(l)).collect();
    if !c.small.is_empty() {
        out.push(format!("<small>{}</small>", esc(&c.small)));
    }
    out.join("<br/>")
}

/// A Mermaid flowchart of the compiled program.
///
/// `c` is the campaign `p` was compiled from; it adds what the program
/// does not keep (a written `fallback none`).
pub fn mermaid(p: &Program, c: &Campaign) -> String {
    let written = Written::of(c);
    let mut out = String::from("flowchart TD\n");
    let _ = writeln!(out, "  start([\"{}\"])", label(&captions::start(p)));
    for (i, n) in p.nodes.iter().enumerate() {
        let t = label(&captions::node(p, &written, n));
        let node = match &n.op {
            Op::Send { .. } => format!("n{i}[\"{t}\"]"),
            Op::Wait { .. } => format!("n{i}([\"{t}\"])"),
            Op::Branch { .. } => format!("n{i}{{\"{t}\"}}"),
            Op::Split { .. } => format!("n{i}{{{{\"{t}\"}}}}"),
            Op::Tag { .. } | Op::Set { .. } => format!("n{i}[/\"{t}\"/]"),
            Op::WaitUntil { .. } => format!("n{i}{{{{\"{t}\"}}}}"),
            Op::Jump { .. } => format!("n{i}((\" \"))"),
            Op::End => format!("n{i}((\"{t}\"))"),
        };
        let _ = writeln!(out, "  {node}");
    }
    if !p.nodes.is_empty() {
        let _ = writeln!(out, "  start --> n0");
    }
    for (i, n) in p.nodes.iter().enumerate() {
        match &n.op {
            Op::Branch { then, otherwise, .. } => {
                let _ = writeln!(out, "  n{i} -->|yes| n{}\n  n{i} -->|no| n{}", then.0, otherwise.0);
            }
            Op::Split { variants, .. } => {
                for v in variants {
                    let _ = writeln!(
                        out,
                        "  n{i} -->|\"{} {}%\"| n{}",
                        esc(&v.name),
                        dis::percent(v.weight_bp),
                        v.target.0
                    );
                }
            }
            Op::WaitUntil { arms, timeout_minutes, timeout } => {
                let targets = arms.iter().map(|a| a.target).chain([*timeout]);
                for (to, l) in targets.zip(dis::wait_paths(p, arms, *timeout_minutes)) {
                    let _ = writeln!(out, "  n{i} -->|\"{}\"| n{}", esc(&l), to.0);
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
