//! The unified diff `flowc fmt --check` prints between a file and its
//! formatted text, in time about linear in the file's size.
//!
//! `similar::TextDiff` took minutes on a large file that is mostly
//! reformatted (40,000 campaigns: 269 s), for two reasons: Myers' algorithm
//! takes time proportional to the size times the number of differences, and
//! its clean-up pass (`Compact`) inserts into and removes from the middle of
//! one vector of edits, which is quadratic in their number. Here patience
//! diff anchors on lines that occur once on each side (campaign and step
//! names, tags), which leaves only small gaps for Myers; a deadline bounds
//! the rest (past it the diff is still correct but may not be the shortest);
//! and the edits go straight to the hunks, without the clean-up pass.

use similar::algorithms::{patience, Capture, Replace};
use similar::{ChangeTag, DiffOp};
use std::fmt::Write;
use std::time::{Duration, Instant};

/// Past this, the remaining differences are shown as whole replaced ranges.
/// Only a file with few unique lines gets near it: 32,000 reformatted
/// campaigns take under a second in a debug build.
const DEADLINE: Duration = Duration::from_secs(5);

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// A unified diff of `old` to `new`, headed with `name`; empty when equal.
pub fn unified(name: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let mut hook = Replace::new(Capture::new());
    let deadline = Instant::now().checked_add(DEADLINE);
    match patience::diff_deadline(&mut hook, &a, 0..a.len(), &b, 0..b.len(), deadline) {
        Ok(()) => {}
        Err(never) => match never {},
    }
    let hunks = similar::group_diff_ops(hook.into_inner().into_ops(), CONTEXT);
    let mut out = String::new();
    if hunks.is_empty() {
        return out;
    }
    let _ = writeln!(out, "--- {name}\n+++ {name} (formatted)");
    for ops in &hunks {
        hunk(&mut out, ops, &a, &b);
    }
    out
}

fn hunk(out: &mut String, ops: &[DiffOp], a: &[&str], b: &[&str]) {
    let (Some(first), Some(last)) = (ops.first(), ops.last()) else { return };
    let _ = writeln!(
        out,
        "@@ -{} +{} @@",
        range(first.old_range().start, last.old_range().end),
        range(first.new_range().start, last.new_range().end)
    );
    for op in ops {
        for change in op.iter_changes(a, b) {
            let sign = match change.tag() {
                ChangeTag::Equal => ' ',
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
            };
            out.push(sign);
            let line = change.value();
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
}

/// A hunk's line range as unified diffs write it: `start,len` from 1, just
/// `start` for one line, and the line before for an empty range.
fn range(start: usize, end: usize) -> String {
    match end.saturating_sub(start) {
        1 => format!("{}", start + 1),
        0 => format!("{start},0"),
        len => format!("{},{len}", start + 1),
    }
}
