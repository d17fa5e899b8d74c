//! Lint levels: `// flowc: allow(code)` comments in the source and the
//! `[lints]` table of `flowc.toml`, applied to the checker's diagnostics.
//!
//! Only warnings have levels. An error says the campaign cannot run as
//! written, so nothing silences it; a warning is a judgement that the author
//! may overrule, in one place (a comment) or for the whole workspace.

use crate::diag::{Code, Diagnostic, Severity};
use crate::source::{FileId, Span};
use crate::syntax::ast;
use crate::workspace::Workspace;
use std::collections::BTreeMap;

/// What to do with one warning code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Allow,
    Warn,
    Deny,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "allow" => Some(Level::Allow),
            "warn" => Some(Level::Warn),
            "deny" => Some(Level::Deny),
            _ => None,
        }
    }
}

/// The workspace's levels, by code; codes not named keep their default.
pub type Lints = BTreeMap<Code, Level>;

/// Why a lint setting was refused.
pub fn settable(code: Code) -> Result<(), String> {
    match code.default_severity() {
        Severity::Warning => Ok(()),
        Severity::Error => Err(format!("`{code}` is an error; only warnings can be allowed, warned or denied")),
    }
}

/// One `// flowc: allow(…)` comment and where it applies.
struct Allow {
    file: FileId,
    comment: Span,
    code: Option<Code>,
    written: String,
    scope: Option<Span>,
    used: bool,
}

const MARKER: &str = "flowc:";

/// Applies the source's allow comments, then the workspace's levels.
pub fn apply(ws: &Workspace, diags: &mut Vec<Diagnostic>, lints: &Lints) {
    let mut allows = Vec::new();
    for (file, source) in ws.sources.iter() {
        if ws.is_stdlib(file) {
            continue;
        }
        let tree = ws.tree(file);
        for c in &tree.comments {
            let text = &source.text[c.span.range()];
            if let Some(codes) = allow_codes(text) {
                let scope = scope_after(&source.text, tree, c.span.end as usize);
                for written in codes {
                    allows.push(Allow {
                        file,
                        comment: c.span,
                        code: Code::parse(&written),
                        written,
                        scope,
                        used: false,
                    });
                }
            }
        }
    }
    diags.retain(|d| {
        let silenced = allows.iter_mut().find(|a| {
            a.file == d.file
                && a.code == Some(d.code)
                && d.severity == Severity::Warning
                && a.scope.is_some_and(|s| s.contains(d.span.start as usize))
        });
        match silenced {
            Some(a) => {
                a.used = true;
                false
            }
            None => true,
        }
    });
    for a in allows.iter().filter(|a| !a.used) {
        diags.push(unused(a));
    }
    diags.retain_mut(|d| match lints.get(&d.code) {
        Some(Level::Allow) => false,
        Some(Level::Warn) => {
            d.severity = Severity::Warning;
            true
        }
        Some(Level::Deny) => {
            d.severity = Severity::Error;
            true
        }
        None => true,
    });
}

fn unused(a: &Allow) -> Diagnostic {
    let d = Diagnostic::new(Code::UnusedAllow, a.file, a.comment, format!("`allow({})` silences nothing", a.written));
    match a.code {
        None => {
            let all = Code::ALL.iter().filter(|c| c.default_severity() == Severity::Warning).map(|c| c.as_str());
            let help = crate::suggest::help(&a.written, all)
                .unwrap_or_else(|| "`flowc explain CODE` lists what each code means".into());
            d.with_label("no such warning").with_help(help)
        }
        Some(code) if code.default_severity() == Severity::Error => d
            .with_label("errors cannot be allowed")
            .with_help(format!("`{code}` means the campaign cannot run as written; fix it instead")),
        Some(_) if a.scope.is_none() => d
            .with_label("applies to nothing")
            .with_help("put it on the line before a step, or before a campaign to cover all of it"),
        Some(_) => d.with_label("nothing to silence").with_help("remove it"),
    }
}

/// `// flowc: allow(a, b)` → `["a", "b"]`.
fn allow_codes(comment: &str) -> Option<Vec<String>> {
    let body = comment.strip_prefix("//").or_else(|| comment.strip_prefix("/*").map(|c| c.trim_end_matches("*/")))?;
    let rest = body.trim().strip_prefix(MARKER)?.trim();
    let inner = rest.strip_prefix("allow")?.trim().strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    Some(inner.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
}

/// What a comment ending at `end` applies to: the step or campaign that
/// starts at the next token, or the campaign whose settings or steps it sits
/// among (the top of a campaign).
fn scope_after(text: &str, tree: &ast::SourceFile, end: usize) -> Option<Span> {
    let next = next_token(text, tree, end);
    for item in &tree.items {
        let ast::Item::Campaign(c) = item else { continue };
        if c.span.start as usize == next {
            return Some(c.span);
        }
        if c.span.contains(next) {
            return Some(step_at(&c.steps, next).unwrap_or(c.span));
        }
    }
    None
}

fn step_at(steps: &[ast::Step], at: usize) -> Option<Span> {
    for s in steps {
        if s.span.start as usize == at {
            return Some(s.span);
        }
        if s.span.contains(at) {
            let inner: Vec<&[ast::Step]> = match &s.kind {
                ast::StepKind::If(i) => i
                    .arms
                    .iter()
                    .map(|(_, b)| b.steps.as_slice())
                    .chain(i.otherwise.iter().map(|b| b.steps.as_slice()))
                    .collect(),
                ast::StepKind::AbTest(t) => t.variants.iter().map(|v| v.block.steps.as_slice()).collect(),
                _ => Vec::new(),
            };
            return inner.into_iter().find_map(|b| step_at(b, at));
        }
    }
    None
}

/// The offset of the first character after `from` that is neither blank nor
/// inside a comment.
fn next_token(text: &str, tree: &ast::SourceFile, mut from: usize) -> usize {
    loop {
        from += text[from.min(text.len())..].len() - text[from.min(text.len())..].trim_start().len();
        match tree.comments.iter().find(|c| c.span.start as usize == from) {
            Some(c) => from = c.span.end as usize,
            None => return from,
        }
    }
}
