//! LSP positions (line, UTF-16 code unit by default) ⇄ byte offsets.

use crate::source::SourceText;
use lsp_types::Position;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf16,
    Utf8,
    Utf32,
}

pub fn to_offset(src: &SourceText, pos: Position, enc: Encoding) -> usize {
    let line = pos.line as usize;
    if line >= src.line_count() {
        return src.text.len();
    }
    let start = src.line_start(line);
    let text = src.line_text(line);
    let mut units = 0u32;
    for (i, ch) in text.char_indices() {
        if units >= pos.character {
            return start + i;
        }
        units += match enc {
            Encoding::Utf16 => ch.len_utf16() as u32,
            Encoding::Utf8 => ch.len_utf8() as u32,
            Encoding::Utf32 => 1,
        };
    }
    start + text.len()
}

pub fn to_position(src: &SourceText, offset: usize, enc: Encoding) -> Position {
    let offset = crate::source::floor_char_boundary(&src.text, offset.min(src.text.len()));
    let line = src.line_of(offset);
    let start = src.line_start(line);
    let before = &src.text[start..offset];
    let character = match enc {
        Encoding::Utf16 => before.encode_utf16().count(),
        Encoding::Utf8 => before.len(),
        Encoding::Utf32 => before.chars().count(),
    } as u32;
    Position { line: line as u32, character }
}
