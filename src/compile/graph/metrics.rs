//! How wide a text is drawn, without a font engine.
//!
//! The SVG declares [`FAMILY`]; the table holds, per character, the larger
//! advance width of DejaVu Sans and Liberation Sans (the metrics of Arial and
//! Helvetica), so a width from here bounds what a viewer with any of them
//! draws. Kerning only narrows text. A character neither font has (emoji, CJK
//! from a fallback font) counts as [`UNKNOWN_EM`] em, wider than any glyph in
//! common fallback fonts.

use super::font_table as table;

/// The font family the SVG declares, in the order a viewer should pick.
pub const FAMILY: &str = "DejaVu Sans, Arial, Helvetica, sans-serif";

/// Width of a character outside the table, in em.
pub const UNKNOWN_EM: f64 = 1.3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Normal,
    Bold,
}

impl Weight {
    /// The `font-weight` attribute value.
    pub fn as_svg(self) -> &'static str {
        match self {
            Weight::Normal => "normal",
            Weight::Bold => "bold",
        }
    }

    /// Reads a `font-weight` attribute back (`bold`, `normal`, or 100–900).
    pub fn from_svg(s: &str) -> Option<Weight> {
        match s {
            "normal" => Some(Weight::Normal),
            "bold" => Some(Weight::Bold),
            n => n.parse::<u32>().ok().map(|w| if w >= 600 { Weight::Bold } else { Weight::Normal }),
        }
    }
}

/// A font size in pixels and a weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Font {
    pub size: f64,
    pub weight: Weight,
}

impl Font {
    /// Height above the baseline any glyph can reach.
    pub fn ascent(self) -> f64 {
        self.size * f64::from(table::ASCENT) / 1000.0
    }
    /// Depth below the baseline any glyph can reach.
    pub fn descent(self) -> f64 {
        self.size * f64::from(table::DESCENT) / 1000.0
    }
}

fn em_thousandths(c: char, weight: Weight) -> Option<u16> {
    let cp = u32::from(c);
    let from_range = cp.checked_sub(table::FIRST).and_then(|i| {
        let row = match weight {
            Weight::Normal => &table::REGULAR,
            Weight::Bold => &table::BOLD,
        };
        row.get(i as usize).copied()
    });
    let w = from_range.or_else(|| {
        table::EXTRA.iter().find(|(e, _, _)| *e == c).map(|(_, r, b)| match weight {
            Weight::Normal => *r,
            Weight::Bold => *b,
        })
    })?;
    (w != 0).then_some(w)
}

/// The advance width of one character, in pixels.
pub fn char_width(c: char, font: Font) -> f64 {
    match em_thousandths(c, font.weight) {
        Some(w) => font.size * f64::from(w) / 1000.0,
        None => font.size * UNKNOWN_EM,
    }
}

/// The width of a line of text, in pixels (an upper bound; see the module docs).
pub fn width(text: &str, font: Font) -> f64 {
    text.chars().map(|c| char_width(c, font)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGULAR: Font = Font { size: 10.0, weight: Weight::Normal };

    #[test]
    fn known_widths_come_from_the_table() {
        // DejaVu Sans: `W` is 2025/2048 em; `i` 569/2048 em.
        assert!((width("W", REGULAR) - 9.89).abs() < 0.01);
        assert!((width("i", REGULAR) - 2.78).abs() < 0.01);
        assert!(width("Wi", Font { weight: Weight::Bold, ..REGULAR }) > width("Wi", REGULAR));
    }

    #[test]
    fn characters_outside_the_table_count_wide() {
        assert_eq!(width("😀", REGULAR), 13.0);
        assert_eq!(width("日本", REGULAR), 26.0);
        assert!(width("…", REGULAR) > 0.0);
    }
}
