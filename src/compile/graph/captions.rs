//! What each box of the DOT and Mermaid pictures says, as plain text; each
//! format escapes it its own way.

use crate::check::model::{Campaign, Step, StepId, StepKind};
use crate::compile::dis;
use crate::compile::program::{Node, Op, Program};
use std::collections::HashSet;

/// What the source says that the program does not keep: the sends written
/// with `fallback none` (the program has no fallback either way).
pub struct Written {
    no_fallback: HashSet<StepId>,
}

impl Written {
    pub fn of(c: &Campaign) -> Written {
        fn walk(steps: &[Step], out: &mut HashSet<StepId>) {
            for s in steps {
                match &s.kind {
                    StepKind::Send { explicit_no_fallback: true, .. } => {
                        out.insert(s.id.clone());
                    }
                    StepKind::If { arms, otherwise } => {
                        for (_, body) in arms {
                            walk(body, out);
                        }
                        walk(otherwise, out);
                    }
                    StepKind::AbTest { variants, .. } => {
                        for v in variants {
                            walk(&v.steps, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut no_fallback = HashSet::new();
        walk(&c.steps, &mut no_fallback);
        Written { no_fallback }
    }
}

/// A box's text: main lines, and a small line under them (the step id).
pub struct Caption {
    pub lines: Vec<String>,
    pub small: String,
}

/// The box before the first step: the campaign, its trigger and audience.
pub fn start(p: &Program) -> Caption {
    let mut lines = vec![p.display_name.clone().unwrap_or_else(|| p.campaign.clone())];
    lines.push(format!("TRIGGER {}", dis::trigger(p)));
    if let Some(a) = &p.audience {
        lines.push(format!("AUDIENCE {}", dis::cond(p, a, &[])));
    }
    let small = if p.display_name.is_some() { format!("campaign {}", p.campaign) } else { String::new() };
    Caption { lines, small }
}

/// One instruction, with its step id (its label, or its structural path).
pub fn node(p: &Program, written: &Written, n: &Node) -> Caption {
    let mut text = dis::instruction(p, &n.op);
    // A send on a channel that needs a device capability, without a
    // fallback, skips contacts without it: what `fallback none` says.
    if let Op::Send { target, fallback: None, .. } = &n.op {
        if target.requires_capability || written.no_fallback.contains(&n.id) {
            text.push_str(" fallback none");
        }
    }
    Caption { lines: vec![text], small: n.id.0.clone() }
}
