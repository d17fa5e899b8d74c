//! Rendering diagnostics: miette's graphical report for people; JSON, SARIF
//! 2.1.0 and GitHub workflow annotations for machines.

use crate::diag::excerpt::{self, readable, Excerpt};
use crate::diag::{Diagnostic, Severity};
use crate::source::{SourceMap, SourceText, Span};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan,
    SpanContents,
};
use serde_json::{json, Value};

/// Version of the JSON output's shape; bumped on any incompatible change.
pub const JSON_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy)]
pub struct HumanOptions {
    pub color: bool,
    pub width: usize,
}

/// The rustc-like report with the source snippet, one diagnostic after another.
pub fn human(diags: &[Diagnostic], sources: &SourceMap, opts: HumanOptions) -> String {
    let theme = if opts.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_links(false)
        .with_context_lines(excerpt::CONTEXT_LINES);
    let mut out = String::new();
    for d in diags {
        let file = sources.get(d.file);
        let (near, far) = nearby(d, file);
        let spans: Vec<crate::source::Span> =
            std::iter::once(d.span).chain(near.related.iter().map(|(s, _)| *s)).collect();
        let excerpt = Excerpt::new(file, &spans);
        let shown = Shown { diag: &near, file, source: Named { name: file.path.display().to_string(), excerpt } };
        if handler.render_report(&mut out, &shown).is_err() {
            out.push_str(&format!("{}: {} [{}]\n", d.severity.as_str(), readable(&d.message), d.code));
        }
        for (span, label) in far {
            let at = file.line_col(span.start as usize);
            out.push_str(&format!("  note: {} (line {}, column {})\n", readable(&label), at.line, at.column));
        }
        out.push('\n');
    }
    out
}

/// Related spans more lines than this away from the primary one are named
/// in a note rather than drawn: one snippet spanning the lines between
/// would make a report as long as the file (and rendering every duplicate
/// of a 10,000-campaign file quadratic).
const FAR_LINES: usize = 12;

/// The diagnostic with only its nearby related spans, and the far ones.
fn nearby(d: &Diagnostic, file: &SourceText) -> (Diagnostic, Vec<(Span, String)>) {
    let line = |s: Span| file.line_of((s.start as usize).min(file.text.len()));
    let primary = line(d.span);
    let (near, far): (Vec<_>, Vec<_>) =
        d.related.iter().cloned().partition(|(s, _)| line(*s).abs_diff(primary) <= FAR_LINES);
    let mut shown = d.clone();
    shown.related = near;
    (shown, far)
}

/// A one-line summary such as `2 errors, 1 warning`.
pub fn summary(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!("{}, {}", plural(errors, "error"), plural(warnings, "warning"))
}

/// The help line: the diagnostic's own help, else its fix as a did-you-mean.
pub fn help_text(d: &Diagnostic) -> Option<String> {
    match (&d.help, &d.fix) {
        (Some(h), _) => Some(readable(h).into_owned()),
        (None, Some(fix)) => Some(format!("did you mean `{}`?", readable(&fix.replacement))),
        (None, None) => None,
    }
}

/// The message and its help as plain text, `help:` on a line of its own
/// (GitHub annotations, the language server's diagnostics).
pub fn plain(d: &Diagnostic) -> String {
    let mut text = readable(&d.message).into_owned();
    if let Some(h) = help_text(d) {
        text.push_str(&format!("\nhelp: {h}"));
    }
    text
}

/// `{"format_version": 1, "diagnostics": [...]}` as docs/diagnostics.md shows.
pub fn json(diags: &[Diagnostic], sources: &SourceMap) -> Value {
    let items: Vec<Value> = diags
        .iter()
        .map(|d| {
            let file = sources.get(d.file);
            let span =
                |s: Span| json!({"start": file.line_col(s.start as usize), "end": file.line_col(s.end as usize)});
            let related: Vec<Value> =
                d.related.iter().map(|(s, label)| json!({"span": span(*s), "label": readable(label)})).collect();
            json!({
                "file": file.path.display().to_string(),
                "severity": d.severity.as_str(),
                "code": d.code.as_str(),
                "message": readable(&d.message),
                "label": d.label.as_deref().map(readable),
                "help": help_text(d),
                "span": span(d.span),
                "related": related,
            })
        })
        .collect();
    json!({"format_version": JSON_FORMAT_VERSION, "diagnostics": items})
}

/// SARIF 2.1.0, as GitHub code scanning accepts it.
pub fn sarif(diags: &[Diagnostic], sources: &SourceMap) -> Value {
    let mut codes: Vec<crate::diag::Code> = diags.iter().map(|d| d.code).collect();
    codes.sort();
    codes.dedup();
    let rules: Vec<Value> = codes
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "shortDescription": {"text": c.summary()},
                "defaultConfiguration": {"level": c.default_severity().as_str()},
                "help": {"text": format!("Run `flowc explain {c}` for details.")},
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let file = sources.get(d.file);
            let (start, end) = (file.line_col(d.span.start as usize), file.line_col(d.span.end as usize));
            let mut text = readable(&d.message).into_owned();
            if let Some(h) = help_text(d) {
                text.push_str(&format!(" (help: {h})"));
            }
            let related: Vec<Value> = d
                .related
                .iter()
                .enumerate()
                .map(|(i, (s, label))| {
                    let (start, end) = (file.line_col(s.start as usize), file.line_col(s.end as usize));
                    json!({
                        "id": i,
                        "message": {"text": readable(label)},
                        "physicalLocation": {
                            "artifactLocation": {"uri": uri(file)},
                            "region": {"startLine": start.line, "startColumn": start.column, "endLine": end.line, "endColumn": end.column},
                        },
                    })
                })
                .collect();
            json!({
                "relatedLocations": related,
                "ruleId": d.code.as_str(),
                "ruleIndex": codes.iter().position(|c| *c == d.code).unwrap_or(0),
                "level": d.severity.as_str(),
                "message": {"text": text},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": uri(file)},
                    "region": {"startLine": start.line, "startColumn": start.column,
                               "endLine": end.line, "endColumn": end.column},
                }}],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "flowc",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn uri(file: &SourceText) -> String {
    file.path.to_string_lossy().replace('\\', "/").replace(' ', "%20")
}

/// GitHub workflow commands: `::error file=…,line=…,col=…::message`.
pub fn github(diags: &[Diagnostic], sources: &SourceMap) -> String {
    let mut out = String::new();
    for d in diags {
        let file = sources.get(d.file);
        let (start, end) = (file.line_col(d.span.start as usize), file.line_col(d.span.end as usize));
        let message = plain(d);
        out.push_str(&format!(
            "::{} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            d.severity.as_str(),
            escape_property(&file.path.display().to_string()),
            start.line,
            start.column,
            end.line,
            end.column,
            escape_property(d.code.as_str()),
            escape_data(&message)
        ));
    }
    out
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The excerpt of a file a report shows, under the file's name. Offsets
/// are the excerpt's; line numbers and columns are the file's.
struct Named {
    name: String,
    excerpt: Excerpt,
}

impl SourceCode for Named {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let inner = self.excerpt.text.as_str().read_span(span, before, after)?;
        // miette counts columns in bytes of the excerpt; the header shows the
        // file's column in scalar values, as the JSON output does.
        let column = if before == 0 { self.excerpt.line_col(span.offset()).1 } else { 0 };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.excerpt.first_line,
            column,
            inner.line_count(),
        )))
    }
}

struct Shown<'a> {
    diag: &'a Diagnostic,
    file: &'a SourceText,
    source: Named,
}

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&readable(&self.diag.message))
    }
}
impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&readable(&self.diag.message))
    }
}
impl std::error::Error for Shown<'_> {}

impl Shown<'_> {
    /// A span of the file as a span of the excerpt.
    fn place(&self, span: crate::source::Span) -> SourceSpan {
        let r = self.source.excerpt.span(self.file, span);
        SourceSpan::new(r.start.into(), r.end - r.start)
    }
}

impl miette::Diagnostic for Shown<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        Some(Box::new(self.diag.code.as_str()))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        help_text(self.diag).map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = self.diag.label.as_deref().unwrap_or(&self.diag.message);
        let primary =
            LabeledSpan::new_primary_with_span(Some(readable(label).into_owned()), self.place(self.diag.span));
        let related = self
            .diag
            .related
            .iter()
            .map(|(s, l)| LabeledSpan::new_with_span(Some(readable(l).into_owned()), self.place(*s)));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Code, Fix};
    use crate::source::FileId;

    #[test]
    fn a_fix_is_shown_as_the_did_you_mean_and_own_help_wins() {
        let span = Span { start: 3, end: 8 };
        let d = Diagnostic::new(Code::UnknownEvent, FileId(0), span, "unknown event `sigup`").with_suggestion(
            span,
            Some("signup"),
            Some("declare it".into()),
        );
        assert_eq!(d.fix, Some(Fix::replace(span, "signup")));
        assert_eq!(plain(&d), "unknown event `sigup`\nhelp: did you mean `signup`?");
        let d = Diagnostic::new(Code::UnknownEvent, FileId(0), span, "unknown event `zzz`").with_suggestion(
            span,
            None,
            Some("declare it".into()),
        );
        assert_eq!((d.fix.is_none(), help_text(&d).as_deref()), (true, Some("declare it")));
    }
}
