//! A single lexical pass before pest: comments, nesting depth, and where
//! top-level declarations may restart after an error.
//!
//! pest recurses once per brace or parenthesis, and a stack overflow cannot be
//! caught, so the depth is measured here, in a loop, before pest ever sees
//! the text.

use crate::source::Span;
use crate::syntax::ast::Comment;

/// Deepest nesting of `{ ( [` the parser accepts. Real campaigns stay under
/// ten. The bound also bounds every later walk over the tree (checker,
/// compiler, formatter), which run on the caller's thread: at 64, nested
/// A/B tests overflowed a 2 MiB debug-build thread in the checker.
pub const MAX_NESTING: usize = 32;

#[derive(Debug, Default)]
pub struct Scan {
    pub comments: Vec<Comment>,
    /// Offsets where the nesting first went past [`MAX_NESTING`].
    pub too_deep: Vec<usize>,
    /// Start of an unterminated block comment, if any.
    pub unterminated_comment: Option<usize>,
    /// Offsets of declaration keywords that open a line outside any braces:
    /// where one declaration must end at the latest. pest is given only the
    /// text up to the next one, which keeps each parse call (and the line
    /// index pest builds over its input) proportional to one declaration.
    pub decl_starts: Vec<usize>,
    /// Deepest nesting seen.
    pub max_depth: usize,
}

pub fn scan(text: &str) -> Scan {
    let bytes = text.as_bytes();
    let mut out = Scan::default();
    let mut depth = 0usize;
    // A byte-order mark is no part of the first line's text.
    let mut i = crate::source::bom_len(text);
    let mut line_start = true;
    while i < bytes.len() {
        let b = bytes[i];
        if line_start && b != b' ' && b != b'\t' {
            line_start = false;
            if depth == 0 && b.is_ascii_lowercase() && starts_declaration(text, i) {
                out.decl_starts.push(i);
            }
        }
        match b {
            // `\r\n`, `\n` and a lone `\r` each end a line.
            b'\n' | b'\r' => {
                line_start = true;
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = bytes[i..].iter().position(|b| matches!(b, b'\n' | b'\r')).map_or(bytes.len(), |n| i + n);
                out.comments.push(Comment { span: Span::new(i, end), block: false });
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => match find(&bytes[i + 2..], b"*/") {
                Some(n) => {
                    let end = i + 2 + n + 2;
                    out.comments.push(Comment { span: Span::new(i, end), block: true });
                    i = end;
                }
                None => {
                    out.comments.push(Comment { span: Span::new(i, bytes.len()), block: true });
                    out.unterminated_comment = Some(i);
                    i = bytes.len();
                }
            },
            b'"' => {
                // Strings end at the closing quote or, unterminated, at the line's end.
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'(' | b'[' => {
                depth += 1;
                out.max_depth = out.max_depth.max(depth);
                if depth == MAX_NESTING + 1 {
                    out.too_deep.push(i);
                }
                i += 1;
            }
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const TOP_LEVEL: &[&str] =
    &["campaign", "segment", "template", "contact", "event", "channel", "import", "pricing", "policy"];

/// Does a top-level declaration keyword start at `offset` (after indentation)?
pub fn starts_declaration(text: &str, offset: usize) -> bool {
    let rest = &text[offset..];
    TOP_LEVEL.iter().any(|kw| {
        rest.starts_with(kw) && !rest[kw.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Where [`next_declaration`] starts looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchFrom {
    /// The line holding `from` may itself open the next declaration.
    ThisLine,
    /// The line holding `from` is broken; start at the one after it.
    NextLine,
}

/// The first line at or after the line holding `from` (or the one after it,
/// with [`SearchFrom::NextLine`]) that opens with a declaration keyword:
/// where parsing restarts after a syntax error. Returns the keyword's offset.
pub fn next_declaration(text: &str, from: usize, search: SearchFrom) -> Option<usize> {
    let from = crate::source::floor_char_boundary(text, from.min(text.len()));
    let line_start = match search {
        SearchFrom::ThisLine => text[..from].rfind(['\n', '\r']).map_or(0, |n| n + 1),
        SearchFrom::NextLine => text[from..].find(['\n', '\r']).map(|n| from + n + 1)?,
    };
    let mut cursor = line_start;
    while cursor < text.len() {
        let line_end = text[cursor..].find(['\n', '\r']).map_or(text.len(), |n| cursor + n);
        let indent = text[cursor..line_end].len() - text[cursor..line_end].trim_start().len();
        if starts_declaration(text, cursor + indent) {
            return Some(cursor + indent);
        }
        cursor = line_end + 1;
    }
    None
}
