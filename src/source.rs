//! Source text and positions: byte spans, file ids, and line/column lookup.

use std::path::PathBuf;

/// A half-open byte range `[start, end)` into one file's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start: clamp_u32(start), end: clamp_u32(end.max(start)) }
    }
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
    pub fn contains(self, offset: usize) -> bool {
        (self.start as usize) <= offset && offset <= (self.end as usize)
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
    pub fn shifted(self, by: usize) -> Span {
        Span::new(self.start as usize + by, self.end as usize + by)
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// One loaded file: its display path, its text and its line starts.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

/// A 1-based line and column; columns count Unicode scalar values (docs/diagnostics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl SourceText {
    pub fn new(path: impl Into<PathBuf>, text: String) -> SourceText {
        let line_starts = line_starts(&text);
        SourceText { path: path.into(), text, line_starts }
    }

    /// Line (0-based) containing `offset`, clamped to the text.
    pub fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    pub fn line_start(&self, line: usize) -> usize {
        self.line_starts.get(line).copied().unwrap_or(self.text.len())
    }

    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_of(offset);
        // A byte-order mark is invisible: the first column is after it.
        let start = if line == 0 { bom_len(&self.text).min(offset) } else { self.line_starts[line] };
        let column = self.text[start..offset].chars().count() + 1;
        LineCol { line: line + 1, column }
    }

    /// The text of 0-based `line` without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_start(line);
        let end = self.line_start(line + 1);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }
}

/// Where each line starts. A line ends at `\n`, `\r\n` or a lone `\r`
/// (as LSP counts them), so files from any platform number lines alike.
fn line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        let ends_line = match b {
            b'\n' => true,
            b'\r' => bytes.get(i + 1) != Some(&b'\n'),
            _ => false,
        };
        if ends_line {
            starts.push(i + 1);
        }
    }
    starts
}

/// The UTF-8 byte-order mark.
pub const BOM: &str = "\u{feff}";

/// Length of a leading byte-order mark (3 or 0). The text keeps it, so
/// spans are offsets into the file as read; the parser and columns skip it.
pub fn bom_len(text: &str) -> usize {
    if text.starts_with(BOM) {
        BOM.len()
    } else {
        0
    }
}

pub fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// All files of one check: the stdlib prelude, the inputs and their imports.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceText>,
}

impl SourceMap {
    pub fn add(&mut self, path: impl Into<PathBuf>, text: String) -> FileId {
        self.files.push(SourceText::new(path, text));
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }
    pub fn get(&self, id: FileId) -> &SourceText {
        &self.files[id.0 as usize]
    }
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceText)> {
        self.files.iter().enumerate().map(|(i, f)| (FileId(i as u32), f))
    }
    pub fn find(&self, path: &std::path::Path) -> Option<FileId> {
        self.files.iter().position(|f| f.path == path).map(|i| FileId(i as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_ending_counts() {
        for text in ["a\nb\nc", "a\r\nb\r\nc", "a\rb\rc", "a\r\nb\rc"] {
            let s = SourceText::new("t", text.to_string());
            assert_eq!(s.line_count(), 3, "{text:?}");
            let c = text.rfind('c').expect("c");
            assert_eq!(s.line_col(c), LineCol { line: 3, column: 1 }, "{text:?}");
            assert_eq!(s.line_text(1), "b", "{text:?}");
        }
    }

    #[test]
    fn a_byte_order_mark_takes_no_column() {
        let s = SourceText::new("t", "\u{feff}ab\ncd".to_string());
        assert_eq!(s.line_col(3), LineCol { line: 1, column: 1 });
        assert_eq!(s.line_col(4), LineCol { line: 1, column: 2 });
        assert_eq!(s.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(s.line_col(6), LineCol { line: 2, column: 1 });
    }
}
