//! The syntax layer: text to typed syntax tree, with syntax diagnostics.
//!
//! Knows nothing of types, the stdlib, SQLite or LSP. `parse` never panics
//! and always returns every declaration that did parse.

pub mod ast;
mod build;
pub mod dump;
mod grammar;
pub mod print;
mod scan;
mod wording;

pub use scan::MAX_NESTING;

use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, Span};
use pest::Parser as _;

/// Stack for each parser thread: enough for MAX_NESTING levels in a debug
/// build with room to spare; only the pages touched are ever committed.
const PARSER_STACK: usize = 64 << 20;

/// Nesting that pest may parse on the caller's thread. Unoptimised pest
/// frames take over 100 KiB per level (a mutation test overflowed a 2 MiB
/// test thread at 8), so debug builds keep 4; optimised frames are a small
/// fraction of that. Real campaigns nest 3 or 4 deep.
pub const INLINE_DEPTH: usize = if cfg!(debug_assertions) { 4 } else { 12 };

/// Files at least this large are parsed on several threads.
const PARALLEL_THRESHOLD: usize = 512 * 1024;

/// The deepest nesting of braces, brackets and parentheses in `text`
/// (strings and comments aside): more than [`MAX_NESTING`] does not parse.
pub fn nesting(text: &str) -> usize {
    scan::scan(text).max_depth
}

/// Parses one file. A broken declaration yields one `syntax` diagnostic and
/// parsing restarts at the next line that opens a declaration, so the rest of
/// the file still reaches the checker and the language server.
///
/// Declarations are independent once the lexical scan has found where each
/// may start, so a large file is cut at those points and its pieces parsed
/// in parallel; the result is identical to a sequential parse.
pub fn parse(text: &str, file: FileId) -> (ast::SourceFile, Vec<Diagnostic>) {
    let threads = if text.len() >= PARALLEL_THRESHOLD {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
    } else {
        1
    };
    parse_with(text, file, ParseOptions { threads })
}

#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Threads to parse on; 1 parses sequentially.
    pub threads: usize,
}

pub fn parse_with(text: &str, file: FileId, opts: ParseOptions) -> (ast::SourceFile, Vec<Diagnostic>) {
    let scanned = scan::scan(text);
    let mut diags = Vec::new();
    if let Some(at) = scanned.unterminated_comment {
        diags.push(
            Diagnostic::new(Code::Syntax, file, Span::new(at, at + 2), "unterminated block comment")
                .with_label("this `/*` is never closed")
                .with_help("close the comment with `*/`"),
        );
    }
    let cuts =
        if opts.threads > 1 { cut_points(text.len(), &scanned.decl_starts, opts.threads) } else { vec![0, text.len()] };
    // pest recurses per brace and parenthesis with large frames (over 100 KiB
    // per level in a debug build), so deep text runs on threads whose stack
    // is sized for MAX_NESTING levels rather than on whatever thread called
    // us. Shallow text (nearly every real file) fits any thread's stack and
    // skips the thread start.
    if cuts.len() <= 2 && scanned.max_depth <= INLINE_DEPTH {
        let mut items = Vec::new();
        parse_range(text, file, &scanned, 0, text.len(), &mut items, &mut diags);
        return (ast::SourceFile { items, comments: scanned.comments }, diags);
    }
    let results: Vec<std::io::Result<(Vec<ast::Item>, Vec<Diagnostic>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (from, to, scanned) = (w[0], w[1], &scanned);
                std::thread::Builder::new().stack_size(PARSER_STACK).spawn_scoped(s, move || {
                    let (mut items, mut diags) = (Vec::new(), Vec::new());
                    parse_range(text, file, scanned, from, to, &mut items, &mut diags);
                    (items, diags)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))).collect()
    });
    let mut items = Vec::new();
    for r in results {
        match r {
            Ok((i, d)) => {
                items.extend(i);
                diags.extend(d);
            }
            Err(e) => diags.push(Diagnostic::new(
                Code::Syntax,
                file,
                Span::default(),
                format!("could not start the parser: {e}"),
            )),
        }
    }
    (ast::SourceFile { items, comments: scanned.comments }, diags)
}

/// Splits `[0, len)` into about `n` pieces of similar size, cutting only where
/// a declaration starts.
fn cut_points(len: usize, starts: &[usize], n: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    for k in 1..n {
        let want = len * k / n;
        let at = match starts.binary_search(&want) {
            Ok(i) | Err(i) => starts.get(i).copied(),
        };
        if let Some(at) = at {
            if at > *cuts.last().unwrap_or(&0) && at < len {
                cuts.push(at);
            }
        }
    }
    cuts.push(len);
    cuts
}

/// Parses the declarations that start in `[from, to)`.
fn parse_range(
    text: &str,
    file: FileId,
    scanned: &scan::Scan,
    from: usize,
    to: usize,
    items: &mut Vec<ast::Item>,
    diags: &mut Vec<Diagnostic>,
) {
    // A leading byte-order mark is skipped, not parsed: spans stay offsets
    // into the text as read.
    let from = from.max(crate::source::bom_len(text));
    let mut pos = skip_trivia(text, from, &scanned.comments);
    while pos < to {
        // Never let pest see past a place that nests too deep, nor into an
        // unterminated comment (already reported above).
        let deep = scanned.too_deep.iter().copied().find(|&v| v >= pos);
        let comment = scanned.unterminated_comment.filter(|&c| c >= pos);
        let next_decl = match scanned.decl_starts.binary_search(&pos) {
            Ok(i) => scanned.decl_starts.get(i + 1),
            Err(i) => scanned.decl_starts.get(i),
        };
        let limit = deep.into_iter().chain(comment).chain(next_decl.copied()).min().unwrap_or(text.len()).min(to);
        match grammar::FlowParser::parse(grammar::Rule::decl, &text[pos..limit]) {
            Ok(mut pairs) => {
                let Some(pair) = pairs.next() else { break };
                let end = pos + pair.as_span().end();
                let mut ctx = build::Ctx { base: pos, file, diags, text, comments: &scanned.comments };
                if let Some(item) = build::item(&mut ctx, pair) {
                    items.push(item);
                }
                pos = skip_trivia(text, end.max(pos + 1), &scanned.comments);
            }
            Err(err) => {
                let at = pos + wording::error_offset(&err);
                let resume = if at >= limit && Some(limit) == comment {
                    None
                } else if at >= limit && Some(limit) == deep {
                    diags.push(
                        Diagnostic::new(Code::Syntax, file, Span::new(limit, limit + 1), format!("nesting deeper than {} levels", MAX_NESTING))
                            .with_label("too deep")
                            .with_help("flatten the nested blocks or parentheses; real campaigns rarely need more than a few levels"),
                    );
                    scan::next_declaration(text, limit, scan::SearchFrom::NextLine)
                } else {
                    diags.push(wording::syntax_error(text, file, pos, at, &err));
                    // An error on the declaration's own first line: that line
                    // cannot restart parsing.
                    let search = if text[pos..at.min(text.len())].find(['\n', '\r']).is_none() {
                        scan::SearchFrom::NextLine
                    } else {
                        scan::SearchFrom::ThisLine
                    };
                    scan::next_declaration(text, at, search)
                };
                match resume {
                    Some(next) if next > pos && next < to => pos = skip_trivia(text, next, &scanned.comments),
                    _ => break,
                }
            }
        }
    }
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
