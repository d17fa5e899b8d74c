//! The syntax layer: text to typed syntax tree, with syntax diagnostics.
//!
//! Knows nothing of types, the stdlib, SQLite or LSP. `parse` never panics
//! and always returns every declaration that did parse.

pub mod ast;
mod build;
mod grammar;
mod scan;
mod wording;

pub use scan::MAX_NESTING;

use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, Span};
use pest::Parser as _;

/// Parses one file. A broken declaration yields one `syntax` diagnostic and
/// parsing restarts at the next line that opens a declaration, so the rest of
/// the file still reaches the checker and the language server.
pub fn parse(text: &str, file: FileId) -> (ast::SourceFile, Vec<Diagnostic>) {
    let scanned = scan::scan(text);
    let mut diags = Vec::new();
    let mut items = Vec::new();
    if let Some(at) = scanned.unterminated_comment {
        diags.push(
            Diagnostic::new(Code::Syntax, file, Span::new(at, at + 2), "unterminated block comment")
                .with_label("this `/*` is never closed")
                .with_help("close the comment with `*/`"),
        );
    }
    let mut pos = skip_trivia(text, 0, &scanned.comments);
    while pos < text.len() {
        // Never let pest see past a place that nests too deep.
        let limit = scanned.too_deep.iter().copied().find(|&v| v >= pos).unwrap_or(text.len());
        match grammar::FlowParser::parse(grammar::Rule::decl, &text[pos..limit]) {
            Ok(mut pairs) => {
                let Some(pair) = pairs.next() else { break };
                let end = pos + pair.as_span().end();
                let mut ctx = build::Ctx { base: pos, file, diags: &mut diags };
                if let Some(item) = build::item(&mut ctx, pair) {
                    items.push(item);
                }
                pos = skip_trivia(text, end.max(pos + 1), &scanned.comments);
            }
            Err(err) => {
                let at = pos + wording::error_offset(&err);
                let resume = if limit < text.len() && at >= limit {
                    diags.push(
                        Diagnostic::new(Code::Syntax, file, Span::new(limit, limit + 1), format!("nesting deeper than {} levels", MAX_NESTING))
                            .with_label("too deep")
                            .with_help("flatten the nested blocks or parentheses; real campaigns rarely need more than a few levels"),
                    );
                    scan::next_declaration(text, limit, true)
                } else {
                    diags.push(wording::syntax_error(text, file, at, &err));
                    let same_line = text[pos..at.min(text.len())].find('\n').is_none();
                    scan::next_declaration(text, at, same_line)
                };
                match resume {
                    Some(next) if next > pos => pos = skip_trivia(text, next, &scanned.comments),
                    _ => break,
                }
            }
        }
    }
    (ast::SourceFile { items, comments: scanned.comments }, diags)
}

/// Skips whitespace and comments from `pos`; comments are already located.
fn skip_trivia(text: &str, mut pos: usize, comments: &[ast::Comment]) -> usize {
    let bytes = text.as_bytes();
    loop {
        while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t' | b'\r' | b'\n') {
            pos += 1;
        }
        match comments.binary_search_by_key(&(pos as u32), |c| c.span.start) {
            Ok(i) => pos = comments[i].span.end as usize,
            Err(_) => return pos.min(text.len()),
        }
    }
}
