//! Mapping the steps of one program version onto the next, for migrating
//! running executions: same step id, same step.

use super::program::*;
use crate::check::model::StepId;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionMap {
    /// Steps present in both, old index → new index, and whether the
    /// instruction itself changed (a different template, duration, …).
    pub kept: Vec<(StepId, NodeIdx, NodeIdx, bool)>,
    /// Steps of the old version with no counterpart: executions waiting there
    /// cannot be moved automatically.
    pub removed: Vec<(StepId, NodeIdx)>,
    pub added: Vec<(StepId, NodeIdx)>,
}

impl VersionMap {
    /// Where an execution at `old` continues in the new version.
    pub fn map(&self, old: NodeIdx) -> Option<NodeIdx> {
        self.kept.iter().find(|(_, o, _, _)| *o == old).map(|(_, _, n, _)| *n)
    }
}

pub fn map_versions(old: &Program, new: &Program) -> VersionMap {
    let new_ids: HashMap<&str, NodeIdx> =
        new.nodes.iter().enumerate().map(|(i, n)| (n.id.0.as_str(), NodeIdx(i as u32))).collect();
    let old_ids: HashMap<&str, NodeIdx> =
        old.nodes.iter().enumerate().map(|(i, n)| (n.id.0.as_str(), NodeIdx(i as u32))).collect();
    let mut m = VersionMap::default();
    for (i, n) in old.nodes.iter().enumerate() {
        let oi = NodeIdx(i as u32);
        match new_ids.get(n.id.0.as_str()) {
            Some(&ni) => {
                let changed = !same_instruction(old, &n.op, new, &new.nodes[ni.get()].op);
                m.kept.push((n.id.clone(), oi, ni, changed));
            }
            None => m.removed.push((n.id.clone(), oi)),
        }
    }
    for (i, n) in new.nodes.iter().enumerate() {
        if !old_ids.contains_key(n.id.0.as_str()) {
            m.added.push((n.id.clone(), NodeIdx(i as u32)));
        }
    }
    m
}

/// Same instruction, ignoring where its successors sit (indices shift when
/// other steps are added or removed).
fn same_instruction(pa: &Program, a: &Op, pb: &Program, b: &Op) -> bool {
    super::dis::instruction(pa, a) == super::dis::instruction(pb, b)
}

pub fn render(old: &Program, new: &Program, m: &VersionMap) -> String {
    let mut out = format!("campaign {}: version {} → {}\n", new.campaign, old.version, new.version);
    for (id, o, n, changed) in &m.kept {
        let note = if *changed {
            format!(
                "  changed: {} → {}",
                super::dis::instruction(old, &old.nodes[o.get()].op),
                super::dis::instruction(new, &new.nodes[n.get()].op)
            )
        } else {
            String::new()
        };
        out.push_str(&format!("  = {id}  {} → {}{note}\n", o.0, n.0));
    }
    for (id, o) in &m.removed {
        out.push_str(&format!("  - {id}  {} (removed: executions waiting here need a decision)\n", o.0));
    }
    for (id, n) in &m.added {
        out.push_str(&format!("  + {id}  → {}\n", n.0));
    }
    out
}
