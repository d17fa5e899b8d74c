//! What a rendered diagnostic shows of its file: the lines around its
//! spans, each cut to a window around the span, and messages with overlong
//! words shortened.
//!
//! A 30 MB identifier once made a 167 MB report: the whole line, an
//! underline as long, and the name again in the message. Here a line is at
//! most `2 × RADIUS` columns plus an ellipsis on each cut side, wherever on
//! it the span is, and every line break (`\n`, `\r\n`, a lone `\r`) becomes
//! `\n`, so the snippet's line numbers are the file's.

use crate::source::{floor_char_boundary, SourceText, Span};
use std::borrow::Cow;
use std::ops::Range;

/// Columns kept on each side of where a span starts.
pub const RADIUS: usize = 120;

/// Lines shown before and after the spans (the report handler is set to the same).
pub const CONTEXT_LINES: usize = 1;

/// Words (runs without whitespace) longer than this are shortened in messages.
pub const MAX_WORD: usize = 80;

const ELLIPSIS: &str = "…";

/// The shown text and how to find original offsets in it.
pub struct Excerpt {
    /// The shown lines, each ending in `\n`.
    pub text: String,
    /// 0-based number of the first shown line in the file.
    pub first_line: usize,
    lines: Vec<Shown>,
}

/// One shown line.
struct Shown {
    /// Where the line starts in [`Excerpt::text`].
    at: usize,
    /// The bytes of the file's line that are kept, verbatim.
    kept: Range<usize>,
    /// Column (0-based, in scalar values) of `kept.start` in the file's line.
    column: usize,
    /// Bytes of the leading ellipsis (0 when the line is kept from its start).
    prefix: usize,
    /// Length of the shown line without its `\n`.
    len: usize,
}

impl Excerpt {
    /// The lines of `file` that `spans` touch, with [`CONTEXT_LINES`] around.
    pub fn new(file: &SourceText, spans: &[Span]) -> Excerpt {
        let text = &file.text;
        let clamp = |o: u32| (o as usize).min(text.len());
        let first = spans.iter().map(|s| file.line_of(clamp(s.start))).min().unwrap_or(0);
        let last = spans.iter().map(|s| file.line_of(clamp(s.end).max(clamp(s.start)))).max().unwrap_or(0);
        let first_line = first.saturating_sub(CONTEXT_LINES);
        let mut last_line = (last + CONTEXT_LINES).min(file.line_count().saturating_sub(1));
        // The "line" after a file's final line break is no line to show as context.
        if last_line > last && file.line_start(last_line) == text.len() {
            last_line -= 1;
        }
        let mut out = Excerpt { text: String::new(), first_line, lines: Vec::new() };
        for line in first_line..=last_line {
            let full = file.line_text(line);
            // A byte-order mark is not shown: it is no column of the line.
            let skip = if line == 0 { crate::source::bom_len(full) } else { 0 };
            let start = file.line_start(line) + skip;
            let body = &full[skip..];
            // Where on this line to look: the first span (the primary comes
            // first) that starts here, else one that ends here.
            let on_line = |o: &usize| (start..=start + body.len()).contains(o);
            let anchor = spans
                .iter()
                .map(|s| clamp(s.start))
                .find(on_line)
                .or_else(|| spans.iter().map(|s| clamp(s.end)).find(on_line));
            let anchor_col = anchor.map_or(0, |o| body[..floor_char_boundary(body, o - start)].chars().count());
            out.push_line(start, body, anchor_col);
        }
        out
    }

    fn push_line(&mut self, start: usize, body: &str, anchor_col: usize) {
        let chars = body.chars().count();
        let (lo, hi) = if chars <= 2 * RADIUS {
            (0, chars)
        } else {
            let lo = anchor_col.saturating_sub(RADIUS).min(chars - 2 * RADIUS);
            (lo, lo + 2 * RADIUS)
        };
        let byte_at = |col: usize| body.char_indices().nth(col).map_or(body.len(), |(i, _)| i);
        let kept = byte_at(lo)..byte_at(hi);
        let at = self.text.len();
        let prefix = if lo > 0 { ELLIPSIS.len() } else { 0 };
        if lo > 0 {
            self.text.push_str(ELLIPSIS);
        }
        self.text.push_str(&body[kept.clone()]);
        if hi < chars {
            self.text.push_str(ELLIPSIS);
        }
        let len = self.text.len() - at;
        self.text.push('\n');
        self.lines.push(Shown { at, kept: start + kept.start..start + kept.end, column: lo, prefix, len });
    }

    /// Where the file's byte `offset` is shown: a cut-off part maps to the
    /// ellipsis that stands for it.
    pub fn offset(&self, file: &SourceText, offset: usize) -> usize {
        let offset = floor_char_boundary(&file.text, offset.min(file.text.len()));
        let line = file.line_of(offset).clamp(self.first_line, self.first_line + self.lines.len().saturating_sub(1));
        let Some(shown) = self.lines.get(line - self.first_line) else { return 0 };
        if offset < shown.kept.start {
            shown.at
        } else if offset <= shown.kept.end {
            shown.at + shown.prefix + (offset - shown.kept.start)
        } else {
            shown.at + shown.len
        }
    }

    /// A span of the file, in the excerpt.
    pub fn span(&self, file: &SourceText, span: Span) -> Range<usize> {
        let start = self.offset(file, span.start as usize);
        let end = self.offset(file, span.end as usize).max(start);
        start..end
    }

    /// The file's 0-based line and column (scalar values) of an excerpt offset.
    pub fn line_col(&self, at: usize) -> (usize, usize) {
        let i = self.lines.partition_point(|l| l.at <= at).saturating_sub(1);
        let Some(shown) = self.lines.get(i) else { return (self.first_line, 0) };
        let within = at.saturating_sub(shown.at + shown.prefix).min(shown.kept.len());
        let kept = &self.text[shown.at + shown.prefix..shown.at + shown.prefix + shown.kept.len()];
        let col = shown.column + kept[..floor_char_boundary(kept, within)].chars().count();
        (self.first_line + i, col)
    }
}

/// `text` with every word longer than [`MAX_WORD`] characters cut to its
/// start and end around an ellipsis, so a message quoting a huge name stays
/// readable (`` `aaaa…aaaa` `` keeps its quotes).
pub fn readable(text: &str) -> Cow<'_, str> {
    const HEAD: usize = 60;
    const TAIL: usize = 10;
    let too_long = text.split_whitespace().any(|w| w.chars().nth(MAX_WORD).is_some());
    if !too_long {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.chars().nth(MAX_WORD).is_some() {
            let head_end = word.char_indices().nth(HEAD).map_or(word.len(), |(i, _)| i);
            let tail_start = word.char_indices().rev().nth(TAIL - 1).map_or(0, |(i, _)| i);
            out.push_str(&word[..head_end]);
            out.push_str(ELLIPSIS);
            out.push_str(&word[tail_start..]);
        } else {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lines_are_shown_whole_and_breaks_become_newlines() {
        let f = SourceText::new("t", "a\rbcd\r\nef\n".to_string());
        let e = Excerpt::new(&f, &[Span::new(3, 4)]);
        assert_eq!(e.text, "a\nbcd\nef\n");
        assert_eq!(e.first_line, 0);
        assert_eq!(e.span(&f, Span::new(3, 4)), 3..4);
        assert_eq!(e.line_col(3), (1, 1));
    }

    #[test]
    fn a_long_line_is_cut_around_the_span() {
        let line = format!("{}X{}", "a".repeat(1000), "b".repeat(1000));
        let f = SourceText::new("t", format!("first\n{line}\nlast\n"));
        let x = 6 + 1000;
        let e = Excerpt::new(&f, &[Span::new(x, x + 1)]);
        let shown: Vec<&str> = e.text.lines().collect();
        assert_eq!(shown[0], "first");
        assert_eq!(shown[2], "last");
        assert_eq!(shown[1].chars().count(), 2 * RADIUS + 2, "the window and two ellipses");
        assert!(shown[1].starts_with('…') && shown[1].ends_with('…'));
        let r = e.span(&f, Span::new(x, x + 1));
        assert_eq!(&e.text[r.clone()], "X");
        assert_eq!(e.line_col(r.start), (1, 1000), "columns are the file's");
    }

    #[test]
    fn a_huge_span_is_underlined_to_the_cut() {
        let name = "n".repeat(100_000);
        let f = SourceText::new("t", format!("audience {name} end\n"));
        let e = Excerpt::new(&f, &[Span::new(9, 9 + name.len())]);
        assert!(e.text.len() < 1000, "{}", e.text.len());
        let r = e.span(&f, Span::new(9, 9 + name.len()));
        assert!(e.text[r].ends_with('…'));
    }

    #[test]
    fn overlong_words_are_shortened() {
        let name = "a".repeat(10_000);
        let m = format!("unknown segment `{name}`");
        let r = readable(&m);
        assert!(r.starts_with("unknown segment `aaaa") && r.ends_with("aaa`") && r.contains('…'), "{r}");
        assert!(r.chars().count() < 100);
        assert!(matches!(readable("did you mean `hello`?"), Cow::Borrowed(_)));
        assert_eq!(readable(&format!("a\n  {name} b")).lines().count(), 2);
    }
}
