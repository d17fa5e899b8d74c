//! Rendering diagnostics: miette's graphical report for people; JSON, SARIF
//! 2.1.0 and GitHub workflow annotations for machines.

use crate::diag::{Diagnostic, Severity};
use crate::source::{SourceMap, SourceText};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};
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
    let handler = GraphicalReportHandler::new_themed(theme).with_width(opts.width).with_links(false);
    let mut out = String::new();
    for d in diags {
        let file = sources.get(d.file);
        let shown = Shown { diag: d, source: Named { name: file.path.display().to_string(), text: &file.text, file } };
        if handler.render_report(&mut out, &shown).is_err() {
            out.push_str(&format!("{}: {} [{}]\n", d.severity.as_str(), d.message, d.code));
        }
        out.push('\n');
    }
    out
}

/// A one-line summary such as `2 errors, 1 warning`.
pub fn summary(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!("{}, {}", plural(errors, "error"), plural(warnings, "warning"))
}

/// `{"format_version": 1, "diagnostics": [...]}` as LANGUAGE.md §6 shows.
pub fn json(diags: &[Diagnostic], sources: &SourceMap) -> Value {
    let items: Vec<Value> = diags
        .iter()
        .map(|d| {
            let file = sources.get(d.file);
            let (start, end) = (file.line_col(d.span.start as usize), file.line_col(d.span.end as usize));
            json!({
                "file": file.path.display().to_string(),
                "severity": d.severity.as_str(),
                "code": d.code.as_str(),
                "message": d.message,
                "help": d.help,
                "span": {"start": start, "end": end},
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
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str(&format!(" (help: {h})"));
            }
            json!({
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
                "informationUri": "https://example.invalid/flowc",
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
        let mut message = d.message.clone();
        if let Some(h) = &d.help {
            message.push_str(&format!("\nhelp: {h}"));
        }
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

/// A source with a display name, borrowed so large files are never copied.
struct Named<'a> {
    name: String,
    text: &'a str,
    /// The same text with its line index.
    file: &'a SourceText,
}

impl SourceCode for Named<'_> {
    fn read_span<'b>(&'b self, span: &SourceSpan, before: usize, after: usize) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        // miette finds a span's lines by scanning from the start of the text,
        // which makes rendering every diagnostic of a large file quadratic.
        // Hand it only the lines around the span (found with the line index,
        // one spare line either side) and shift its answer back.
        let (start, end) = (span.offset(), span.offset() + span.len());
        let first = self.file.line_of(start).saturating_sub(before + 1);
        let last = self.file.line_of(end) + after + 2;
        let (from, to) = (self.file.line_start(first), self.file.line_start(last));
        let window = self.text.get(from..to).ok_or(MietteError::OutOfBounds)?;
        let inner = window.read_span(&SourceSpan::new((start - from).into(), span.len()), before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            SourceSpan::new((inner.span().offset() + from).into(), inner.span().len()),
            inner.line() + first,
            inner.column(),
            inner.line_count(),
        )))
    }
}

struct Shown<'a> {
    diag: &'a Diagnostic,
    source: Named<'a>,
}

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diag.message)
    }
}
impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diag.message)
    }
}
impl std::error::Error for Shown<'_> {}

impl Shown<'_> {
    /// miette misdraws labels past the end of the text, so clamp them to it.
    fn clamp(&self, span: crate::source::Span) -> SourceSpan {
        let len = self.source.text.len();
        let start = crate::source::floor_char_boundary(self.source.text, (span.start as usize).min(len));
        let end = crate::source::floor_char_boundary(self.source.text, (span.end as usize).clamp(start, len));
        SourceSpan::new(start.into(), end - start)
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
        self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(
            Some(self.diag.label.clone().unwrap_or_else(|| self.diag.message.clone())),
            self.clamp(self.diag.span),
        );
        let related = self.diag.related.iter().map(|(s, l)| LabeledSpan::new_with_span(Some(l.clone()), self.clamp(*s)));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}
