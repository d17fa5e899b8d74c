//! Syntax errors in the language's own words, never pest's rule names.

use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, Span};
use crate::syntax::grammar::Rule;
use pest::error::{Error, ErrorVariant, InputLocation};

pub fn error_offset(err: &Error<Rule>) -> usize {
    match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    }
}

/// What the user should have written, for one grammar rule; `None` hides it.
fn describe(rule: Rule) -> Option<&'static str> {
    use Rule::*;
    Some(match rule {
        import_decl | template_decl | contact_decl | event_decl | segment_decl | channel_decl | pricing_decl
        | campaign_decl | decl_start | kw_campaign | kw_segment | kw_template | kw_contact | kw_event | kw_channel
        | kw_import | kw_pricing | policy_decl | kw_policy => {
            "a declaration (campaign, segment, template, contact, event, channel, pricing, policy or import)"
        }
        step | send_step | wait_step | if_step | ab_test_step | tag_step | end_step | kw_send | kw_wait | kw_if
        | kw_ab_test | kw_tag | kw_end | set_step | kw_set => "a step (send, wait, if, ab_test, tag, set or end)",
        label => "a step label",
        campaign_setting | setting_name | trigger | audience | goal | exit | on_ineligible | kw_goal | kw_exit
        | kw_on | quiet_hours | reentry | rate_limit | kw_quiet | kw_reentry | kw_rate => {
            "a setting (name, trigger, audience, goal, exit, on ineligible, quiet hours, reentry or rate limit)"
        }
        kw_hours => "`hours`, as in `quiet hours 21:00 to 08:00`",
        clock => "a time of day like `21:00`",
        kw_to => "`to` and the end of the quiet hours, like `to 08:00`",
        kw_then => "`then skip` (or nothing: sends are held until the quiet hours end)",
        kw_once | kw_always | kw_after => "`once`, `always` or `after` and a duration, like `reentry after 30d`",
        kw_limit => "`limit`, as in `rate limit 600 per minute`",
        kw_per => "`per` and a unit, like `per minute` or `per 7d`",
        kw_second | kw_minute | kw_hour => "`second`, `minute` or `hour`",
        count => "a whole number like `3`",
        set_eq => "`=` and the new value, like `set plan = pro`",
        frequency_cap | kw_frequency | kw_cap => {
            "a frequency cap like `frequency cap 3 per 7d` or `frequency cap sms 1 per 1d`"
        }
        wait_until_step | kw_until => "`until`",
        wait_arms => "the arms of a `wait until` `{ when … { } timeout D { } }`",
        when_arm | kw_when => "a `when` arm like `when event order.completed { … }`",
        timeout_arm | kw_timeout => "`timeout` and a duration, like `timeout 3d { … }`",
        wait_short | event_match | kw_event_match => "`event NAME`",
        wait_close => "the `}` that closes the `wait until` (its `timeout` comes last)",
        kw_ineligible => "`ineligible`",
        kw_skip | kw_continue => "`skip` or `continue`",
        trigger_scheduled | trigger_event | trigger_manual | trigger_api | kw_scheduled | kw_on_event | kw_manual
        | kw_api => "a trigger (scheduled, event, manual or api)",
        template_field | tf_channel | tf_message | tf_status | tf_version => {
            "a template field (channel, message, status or version)"
        }
        channel_entry | ch_requires_capability | ch_fallback | ch_message => {
            "a channel entry (message, requires capability or fallback)"
        }
        requires_consent => "`requires consent`",
        price_entry => "a price like `email.marketing = 0.0010 EUR`",
        field_decl => "a field like `plan: string`",
        type_expr | set_type | enum_type => {
            "a type (string, number, bool, datetime, date, duration, timezone, set<string>, enum(…))"
        }
        optional_mark => "`?`",
        ident | call_arg => "a name",
        event_name => "an event name like `order.completed`",
        string | string_inner => "a string",
        number | integer | pct_value => "a number",
        percent => "a weight like `50%`",
        duration | duration_part => "a duration like `2d` or `1d 12h`",
        date | datetime => "a date like `2026-12-01 09:00`",
        money | money_amount | currency => "a price like `0.045 EUR`",
        channel_message => "a channel and message type like `email.marketing`",
        send_target => "a template, optionally after its channel and message type",
        send_fallback | kw_fallback => "`fallback`",
        block => "a block `{ … }`",
        else_if | else_block | kw_else => "`else`",
        variant | kw_variant => "a variant like `variant a 50% { … }`",
        kw_add | kw_remove => "`add` or `remove`",
        kw_none => "`none`",
        kw_where => "`where`",
        kw_within => "`within`",
        // Wherever an expression could go on, all of these are possible at once.
        kw_and | kw_or | kw_in | kw_has | cmp_op | add_op => "an operator (and, or, ==, <, in, has, +, …)",
        list => "a list like `[a, b]`",
        expr | and_expr | unary | comparison | additive | atom | paren | name_or_call | happened | happened_cond
        | kw_not | kw_true | kw_false | kw_now => "an expression",
        kw_trigger => "`trigger`",
        kw_audience => "`audience`",
        _ => return None,
    })
}

/// The syntax error of the declaration that starts at `decl` and failed at `at`.
pub fn syntax_error(text: &str, file: FileId, decl: usize, at: usize, err: &Error<Rule>) -> Diagnostic {
    let at = crate::source::floor_char_boundary(text, at.min(text.len()));
    if let Some(d) = unterminated_string(text, file, at) {
        return d;
    }
    if let Some(d) = hyphenated_name(text, file, at) {
        return d;
    }
    if at >= text.len() || crate::syntax::scan::starts_declaration(text, at) {
        if let Some(d) = unclosed_brace(text, file, decl, at) {
            return d;
        }
    }
    let (found, len) = token_at(text, at);
    let expected = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut words: Vec<&str> = positives.iter().filter_map(|r| describe(*r)).collect();
            words.sort_unstable();
            words.dedup();
            words
        }
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    let message = match expected.as_slice() {
        [] => format!("unexpected {found}"),
        words => format!("expected {}, found {found}", join_or(words)),
    };
    let label = if expected.is_empty() { "not expected here".to_string() } else { format!("unexpected {found}") };
    let mut diag = Diagnostic::new(Code::Syntax, file, Span::new(at, at + len), message).with_label(label);
    let quote = if expected.contains(&"a string") { quoted(text, at) } else { None };
    if let Some(help) = quote.or_else(|| hint(text, at)) {
        diag = diag.with_help(help);
    }
    diag
}

/// `at Asia/Tokyo` where a string belongs: offer the quoted text.
fn quoted(text: &str, at: usize) -> Option<String> {
    let rest = &text[at..];
    if !rest.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return None;
    }
    let word = &rest[..rest.find(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | '"')).unwrap_or(rest.len())];
    let shown: String = word.chars().take(60).collect();
    Some(format!("strings are quoted: write `\"{shown}\"`"))
}

/// `campaign cart-recovery {` fails where pest no longer finds a name; say
/// that names cannot contain `-` and offer the one that works.
fn hyphenated_name(text: &str, file: FileId, at: usize) -> Option<Diagnostic> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let rest = &text[at..];
    // Either the error sits on a declaration keyword (the name after it did
    // not parse), or on the `-` inside a word.
    let start = if crate::syntax::scan::starts_declaration(text, at) {
        let kw = rest.find(|c: char| !is_name(c))?;
        let gap = rest[kw..].find(|c: char| c != ' ' && c != '\t')?;
        at + kw + gap
    } else if rest.starts_with('-') && text[..at].ends_with(is_name) && rest[1..].starts_with(is_name) {
        at - text[..at].chars().rev().take_while(|c| is_name(*c)).count()
    } else {
        return None;
    };
    let len = text[start..].find(|c: char| !(is_name(c) || c == '-')).unwrap_or(text.len() - start);
    let word = &text[start..start + len];
    if !word.contains('-') || word.starts_with('-') || word.ends_with('-') {
        return None;
    }
    let fixed = word.replace('-', "_").to_ascii_lowercase();
    let shown: String = word.chars().take(60).collect();
    Some(
        Diagnostic::new(Code::Syntax, file, Span::new(start, start + len), format!("`{shown}` is not a valid name"))
            .with_label("names cannot contain `-`")
            .with_help(format!("names use lowercase letters, digits and `_`: write `{fixed}`")),
    )
}

/// A declaration that ran into the next one, or into the end of the file,
/// left a `{` open. Point at that `{`, not at where the parser gave up.
///
/// Braces are matched in the declaration's text (strings and comments
/// skipped). A `}` indented differently from the line of the `{` it closes
/// most likely belongs to an outer block, so the first such `{` is the one
/// missing its `}`; otherwise it is the innermost `{` left open.
fn unclosed_brace(text: &str, file: FileId, decl: usize, at: usize) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let indent = |pos: usize| {
        let line = text[..pos].rfind('\n').map_or(0, |n| n + 1);
        text[line..].chars().take_while(|c| *c == ' ' || *c == '\t').count()
    };
    let mut open: Vec<usize> = Vec::new();
    let mut misplaced: Option<(usize, usize)> = None;
    let mut i = decl;
    while i < at.min(bytes.len()) {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..].find("*/").map_or(bytes.len(), |n| i + 2 + n + 1);
            }
            b'{' => open.push(i),
            b'}' => {
                if let Some(o) = open.pop() {
                    if misplaced.is_none() && indent(o) != indent(i) {
                        misplaced = Some((o, i));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    let last = *open.last()?;
    let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
    let (brace, close) = match misplaced {
        Some((o, c)) => (o, Some(c)),
        None => (last, None),
    };
    let mut d = Diagnostic::new(Code::Syntax, file, Span::new(brace, brace + 1), "this `{` is never closed")
        .with_label("no `}` closes this block");
    if let Some(c) = close {
        d = d.with_related(
            Span::new(c, c + 1),
            format!("this `}}` is indented like line {}, so it closes that block", line_of(open[open.len() - 1])),
        );
    }
    let end = if at >= text.len() { "the file ends here" } else { "the next declaration starts here" };
    d = d.with_related(Span::new(at, (at + 1).min(text.len()).max(at)), end);
    Some(d.with_help(format!("add the missing `}}` for the block opened on line {}", line_of(brace))))
}

/// pest sees an unterminated string as "expected a string, found `\"`";
/// say what really happened.
fn unterminated_string(text: &str, file: FileId, at: usize) -> Option<Diagnostic> {
    let rest = text[at..].strip_prefix('"')?;
    let line = &rest[..rest.find(['\n', '\r']).unwrap_or(rest.len())];
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return None,
            _ => escaped = false,
        }
    }
    Some(
        Diagnostic::new(Code::Syntax, file, Span::new(at, at + 1 + line.len()), "unterminated string")
            .with_label("this string is never closed")
            .with_help("strings end with `\"` on the same line; write `\\n` for a line break"),
    )
}

/// Extra advice for mistakes people make often.
fn hint(text: &str, at: usize) -> Option<String> {
    let rest = &text[at..];
    let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if word.chars().any(|c| c.is_ascii_uppercase()) && word.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Some(format!("names are lowercase: `{}`", word.to_ascii_lowercase()));
    }
    if rest.starts_with('\'') {
        return Some("strings use double quotes: \"…\"".into());
    }
    if rest.starts_with('=') && !rest.starts_with("==") {
        return Some("compare with `==`".into());
    }
    if rest.starts_with("&&") || rest.starts_with("||") {
        return Some("use `and` / `or`".into());
    }
    const KEYWORDS: &[&str] = &[
        "campaign",
        "segment",
        "template",
        "contact",
        "event",
        "channel",
        "import",
        "pricing",
        "policy",
        "trigger",
        "audience",
        "send",
        "wait",
        "if",
        "else",
        "ab_test",
        "variant",
        "tag",
        "add",
        "remove",
        "end",
        "fallback",
        "none",
        "and",
        "or",
        "not",
        "in",
        "has",
        "within",
        "where",
        "scheduled",
        "manual",
        "api",
        "happened",
    ];
    if matches!(word.as_str(), "trigger" | "audience") {
        return Some("a campaign's settings (name, trigger, audience) come before its steps".into());
    }
    if word.len() > 2 && !KEYWORDS.contains(&word.as_str()) {
        if let Some(k) = crate::suggest::best(&word, KEYWORDS.iter().copied()) {
            return Some(format!("did you mean `{k}`?"));
        }
    }
    if crate::syntax::scan::starts_declaration(text, at) {
        return Some("is a `}` missing before this declaration?".into());
    }
    None
}

fn join_or(words: &[&str]) -> String {
    match words {
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
        [] => String::new(),
    }
}

/// Describes the token at `at` for "found …", with its length in bytes.
fn token_at(text: &str, at: usize) -> (String, usize) {
    let rest = &text[at..];
    let Some(first) = rest.chars().next() else {
        return ("the end of the file".into(), 0);
    };
    if first.is_ascii_alphanumeric() || first == '_' {
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let word = &rest[..len];
        let shown: String = word.chars().take(40).collect();
        return (format!("`{shown}`"), len);
    }
    if first == '"' {
        return ("a string".into(), 1);
    }
    let len = first.len_utf8();
    if first.is_whitespace() || first.is_control() {
        return (format!("`{}`", first.escape_debug()), len);
    }
    (format!("`{first}`"), len)
}
