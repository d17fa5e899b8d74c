//! `flowc fmt`: format files in place, check them, or filter stdin.

use super::{Fatal, Outcome};
use flowc::diag::render;
use flowc::source::{FileId, SourceMap};
use std::io::Read;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct FmtArgs {
    /// Files or folders (searched for *.flow); `-` reads stdin and writes stdout.
    paths: Vec<PathBuf>,
    /// Change nothing; print a diff and exit 1 if a file is not formatted
    /// (exit 2 if a file cannot be formatted).
    #[arg(long)]
    check: bool,
}

/// Formats `text`, or returns its syntax errors rendered.
fn format_text(name: &str, text: String) -> Result<String, String> {
    let mut sources = SourceMap::default();
    let id = sources.add(name, text);
    let (tree, diags) = flowc::syntax::parse(&sources.get(id).text, FileId(id.0));
    if !diags.is_empty() {
        return Err(render::human(&diags, &sources, render::HumanOptions { color: false, width: 100 }));
    }
    Ok(flowc::fmt::format(&tree, &sources.get(id).text))
}

pub fn run(a: FmtArgs) -> Result<Outcome, Fatal> {
    if a.paths.iter().any(|p| p.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| Fatal(format!("cannot read standard input: {e}")))?;
        return match format_text("<stdin>", text.clone()) {
            Ok(out) => {
                if a.check {
                    if out != text {
                        out!("{}", flowc::fmt::diff::unified("<stdin>", &text, &out));
                        return Ok(Outcome::Findings);
                    }
                    return Ok(Outcome::Ok);
                }
                super::out::bytes(out.as_bytes());
                Ok(Outcome::Ok)
            }
            Err(diags) => {
                err!("{diags}");
                Err(cannot_format(1))
            }
        };
    }
    let roots = super::check::roots(&a.paths)?;
    let mut unformatted = 0;
    let mut broken = 0;
    for r in roots {
        let bytes = flowc::workspace::read_root(&r)?;
        let Ok(text) = String::from_utf8(bytes) else {
            errln!("{}: not UTF-8, skipped", r.path.display());
            broken += 1;
            continue;
        };
        let name = r.path.display().to_string();
        match format_text(&name, text.clone()) {
            Ok(out) if out == text => {}
            Ok(out) => {
                unformatted += 1;
                if a.check {
                    out!("{}", flowc::fmt::diff::unified(&name, &text, &out));
                } else {
                    super::build::write_atomically(&r.path, out.as_bytes())?;
                    errln!("formatted {name}");
                }
            }
            Err(diags) => {
                broken += 1;
                err!("{diags}");
            }
        }
    }
    if broken > 0 {
        return Err(cannot_format(broken));
    }
    Ok(if a.check && unformatted > 0 { Outcome::Findings } else { Outcome::Ok })
}

/// A file that cannot be formatted (syntax errors, not UTF-8) is a failure
/// to run, exit 2, not a finding: `--check` exits 1 only for "needs formatting".
fn cannot_format(files: usize) -> Fatal {
    Fatal(format!("{files} file(s) could not be formatted"))
}
