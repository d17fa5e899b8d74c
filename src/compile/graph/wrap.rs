//! Fitting text into a width: wrap at spaces, break words too long for a
//! line, and end with `…` when the lines run out.
//!
//! Work is bounded by what is kept, so a 30 MB tag costs one pass to find
//! its first words, not a layout of all of it.

use super::metrics::{char_width, width, Font};

/// Lines that each fit the width, and whether text was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub lines: Vec<String>,
    pub cut: Cut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Whole,
    Ellipsised,
}

const ELLIPSIS: char = '…';

/// Characters a long word may be broken after, so `order.completed` breaks
/// at the dot rather than inside a name.
const BREAK_AFTER: &[char] = &['.', '_', '-', '/', ':', ','];

/// Text as it can appear in XML and on one line: line breaks and tabs become
/// spaces, other control characters the replacement character.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Wraps `text` into at most `max_lines` lines no wider than `max_width`.
pub fn fit(text: &str, font: Font, max_width: f64, max_lines: usize) -> Fitted {
    let max_lines = max_lines.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut line_w = 0.0;
    let space = char_width(' ', font);
    let mut words = text.split_whitespace().peekable();
    let mut overflow = false;
    'words: while let Some(word) = words.peek().copied() {
        let word = clean(word);
        let fits_after = !line.is_empty()
            && line_w + space + width_within(&word, font, max_width - line_w - space).unwrap_or(f64::INFINITY)
                <= max_width;
        if fits_after {
            line_w += space + width(&word, font);
            line.push(' ');
            line.push_str(&word);
            words.next();
            continue;
        }
        if !line.is_empty() {
            if lines.len() + 1 == max_lines {
                // Fill the last line with what fits of the next word too.
                line.push(' ');
                line.push_str(&word);
                overflow = true;
                break 'words;
            }
            lines.push(std::mem::take(&mut line));
        }
        // The word starts a line; break it while it is too long.
        let mut rest = word.as_str();
        loop {
            match width_within(rest, font, max_width) {
                Some(w) => {
                    line = rest.to_string();
                    line_w = w;
                    break;
                }
                None => {
                    if lines.len() + 1 == max_lines {
                        line = rest.to_string();
                        overflow = true;
                        break 'words;
                    }
                    let at = break_point(rest, font, max_width);
                    lines.push(rest[..at].to_string());
                    rest = &rest[at..];
                }
            }
        }
        words.next();
    }
    if overflow {
        lines.push(ellipsise(&line, font, max_width));
        return Fitted { lines, cut: Cut::Ellipsised };
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    Fitted { lines, cut: Cut::Whole }
}

/// The width of `s` if it is at most `limit`; stops measuring past it.
fn width_within(s: &str, font: Font, limit: f64) -> Option<f64> {
    let mut w = 0.0;
    for c in s.chars() {
        w += char_width(c, font);
        if w > limit {
            return None;
        }
    }
    Some(w)
}

/// Where to break a word wider than `max_width`: after the last
/// [`BREAK_AFTER`] character in the second half of what fits, else where it
/// stops fitting. Always at least one character, so wrapping progresses.
fn break_point(s: &str, font: Font, max_width: f64) -> usize {
    let mut w = 0.0;
    let mut end = 0;
    let mut preferred = None;
    for (i, c) in s.char_indices() {
        w += char_width(c, font);
        if w > max_width {
            break;
        }
        end = i + c.len_utf8();
        if BREAK_AFTER.contains(&c) {
            preferred = Some(end);
        }
    }
    if end == 0 {
        return s.chars().next().map_or(s.len(), char::len_utf8);
    }
    match preferred {
        Some(p) if p * 2 >= end && p < s.len() => p,
        _ => end,
    }
}

/// `line` shortened until it fits with `…` after it.
fn ellipsise(line: &str, font: Font, max_width: f64) -> String {
    let budget = max_width - char_width(ELLIPSIS, font);
    let mut w = 0.0;
    let mut end = 0;
    for (i, c) in line.char_indices() {
        w += char_width(c, font);
        if w > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    format!("{}{ELLIPSIS}", line[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::super::metrics::Weight;
    use super::*;

    const F: Font = Font { size: 10.0, weight: Weight::Normal };

    #[test]
    fn short_text_stays_on_one_line() {
        assert_eq!(fit("send email", F, 200.0, 2), Fitted { lines: vec!["send email".into()], cut: Cut::Whole });
    }

    #[test]
    fn wraps_at_spaces_and_every_line_fits() {
        let text = "plan == pro and lifetime_value > 100 and country == \"FR\" or tags has \"vip\"";
        let f = fit(text, F, 120.0, 10);
        assert_eq!(f.cut, Cut::Whole);
        assert!(f.lines.len() > 2);
        assert_eq!(f.lines.join(" "), text);
        assert!(f.lines.iter().all(|l| width(l, F) <= 120.0), "{f:?}");
    }

    #[test]
    fn long_words_break_at_punctuation_and_run_out_with_an_ellipsis() {
        let text = "a_very_long_identifier_that_goes_on.and_on_and_on_far_past_any_box_width_at_all";
        let f = fit(text, F, 100.0, 2);
        assert_eq!(f.cut, Cut::Ellipsised);
        assert_eq!(f.lines.len(), 2);
        assert!(f.lines[0].ends_with('_') || f.lines[0].ends_with('.'), "{f:?}");
        assert!(f.lines[1].ends_with('…'));
        assert!(f.lines.iter().all(|l| width(l, F) <= 100.0), "{f:?}");
    }

    #[test]
    fn the_last_line_is_filled_before_the_ellipsis() {
        let f = fit("campaign a_name_much_too_long_for_the_rest_of_this_line", F, 150.0, 1);
        assert_eq!(f.cut, Cut::Ellipsised);
        assert!(f.lines[0].starts_with("campaign a_name"), "{f:?}");
        assert!(width(&f.lines[0], F) <= 150.0);
    }

    #[test]
    fn a_box_narrower_than_one_character_still_progresses() {
        let f = fit("WWW", F, 1.0, 5);
        assert_eq!(f.lines, vec!["W", "W", "W"]);
    }

    #[test]
    fn huge_text_is_cut_after_the_lines_kept() {
        let text = "x ".repeat(2_000_000);
        let f = fit(&text, F, 100.0, 3);
        assert_eq!(f.lines.len(), 3);
        assert_eq!(f.cut, Cut::Ellipsised);
    }

    #[test]
    fn control_characters_never_reach_the_output() {
        let f = fit("a\u{1}b\tc", F, 200.0, 1);
        assert_eq!(f.lines, vec!["a\u{fffd}b c"]);
    }
}
