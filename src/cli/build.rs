//! `flowc compile`, `dis`, `graph` and `diff`: commands that compile one campaign.

use super::check::{load, Inputs};
use super::{Fatal, Outcome};
use flowc::check::{model, CheckOptions};
use flowc::compile::{self, codec, program::Program};
use flowc::diag::render;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Source {
    /// A .flow file (or, for `dis`, a compiled program).
    file: PathBuf,
    /// Which campaign, when the file has several.
    #[arg(long)]
    campaign: Option<String>,
    /// The platform's template registry export (JSON array).
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Draft templates do not block compilation.
    #[arg(long)]
    allow_draft: bool,
}

#[derive(clap::Args)]
pub struct CompileArgs {
    #[command(flatten)]
    source: Source,
    /// The program's encoding: readable JSON or the compact binary (needs -o).
    #[arg(long, alias = "emit", value_enum, default_value_t = Emit::Json)]
    format: Emit,
    /// Write here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Emit {
    Json,
    Binary,
}

/// `flowc graph`'s own arguments (not [`Source`]: a picture is drawn from
/// source only, never from a compiled program).
#[derive(clap::Args)]
pub struct GraphArgs {
    /// The .flow file with the campaign to draw.
    file: PathBuf,
    /// Which campaign, when the file has several.
    #[arg(long)]
    campaign: Option<String>,
    /// The platform's template registry export (JSON array).
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Draft templates do not block drawing.
    #[arg(long)]
    allow_draft: bool,
    /// SVG laid out by flowc, or a graph for Graphviz (dot) or Mermaid to lay out.
    #[arg(long, value_enum, default_value_t = GraphFormat::Svg)]
    format: GraphFormat,
    /// Write here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GraphFormat {
    Svg,
    Dot,
    Mermaid,
}

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The .flow file of the version that runs now.
    old: PathBuf,
    /// The .flow file of the version to launch.
    new: PathBuf,
    /// Which campaign, when the files have several.
    #[arg(long)]
    campaign: Option<String>,
}

/// A compiled campaign with what produced it.
pub struct Built {
    pub program: Program,
    pub campaign: model::Campaign,
    pub inputs: Inputs,
}

/// Whether draft or rejected templates block a command (`--allow-draft`,
/// or `allow-draft = true` in flowc.toml, makes them warnings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drafts {
    Block,
    Allow,
}

impl Drafts {
    pub fn from_flag(allow_draft: bool) -> Drafts {
        if allow_draft {
            Drafts::Allow
        } else {
            Drafts::Block
        }
    }
}

/// Checks `file` and compiles one campaign; check errors are printed and
/// reported as findings (exit 1).
pub fn build(
    file: &Path,
    campaign: Option<&str>,
    templates: Option<&Path>,
    drafts: Drafts,
) -> Result<Result<Built, Outcome>, Fatal> {
    let config = super::settings(Some(file))?;
    let templates = templates.map(Path::to_path_buf).or(config.templates);
    let opts = CheckOptions {
        allow_draft: drafts == Drafts::Allow || config.allow_draft == Some(true),
        now: Some(chrono::Utc::now()),
        lints: config.lints,
    };
    let inputs = load(&[file.to_path_buf()], templates.as_deref(), &opts)?;
    if inputs.analysis.has_errors() {
        let errors: Vec<_> = inputs.analysis.diags.iter().filter(|d| d.is_error()).cloned().collect();
        err!(
            "{}",
            render::human(
                &errors,
                &inputs.ws.sources,
                render::HumanOptions { color: super::use_color(super::ColorChoice::Auto), width: 100 }
            )
        );
        errln!("error: `{}` has {}; fix them before compiling", file.display(), render::summary(&errors));
        return Ok(Err(Outcome::Findings));
    }
    let Some((root, model)) = inputs.analysis.models.first() else {
        return Err(Fatal(format!("nothing to compile in `{}`", file.display())));
    };
    let mine: Vec<&model::Campaign> = model.campaigns.iter().filter(|c| c.file == *root).collect();
    let chosen = match campaign {
        Some(name) => mine.iter().find(|c| c.name == name).copied().ok_or_else(|| {
            let names: Vec<&str> = mine.iter().map(|c| c.name.as_str()).collect();
            Fatal(format!("no campaign `{name}` in `{}` (it has: {})", file.display(), names.join(", ")))
        })?,
        None => match mine.as_slice() {
            [one] => *one,
            [] => return Err(Fatal(format!("`{}` declares no campaign", file.display()))),
            many => {
                let names: Vec<&str> = many.iter().map(|c| c.name.as_str()).collect();
                return Err(Fatal(format!(
                    "`{}` has several campaigns ({}); pick one with --campaign",
                    file.display(),
                    names.join(", ")
                )));
            }
        },
    };
    let program = compile::compile(model, chosen, inputs.ws.sources.get(chosen.file));
    let campaign = chosen.clone();
    Ok(Ok(Built { program, campaign, inputs }))
}

fn write_out(output: Option<&Path>, bytes: &[u8]) -> Result<(), Fatal> {
    match output {
        Some(p) => write_atomically(p, bytes),
        None => {
            super::out::bytes(bytes);
            Ok(())
        }
    }
}

/// Writes via a temporary file and a rename, so a crash never leaves half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Fatal> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("out")));
    std::fs::write(&tmp, bytes).map_err(|e| Fatal(format!("cannot write `{}`: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Fatal(format!("cannot write `{}`: {e}", path.display())))
}

pub fn compile_cmd(a: CompileArgs) -> Result<Outcome, Fatal> {
    let built = match build(
        &a.source.file,
        a.source.campaign.as_deref(),
        a.source.templates.as_deref(),
        Drafts::from_flag(a.source.allow_draft),
    )? {
        Ok(b) => b,
        Err(o) => return Ok(o),
    };
    let bytes = match a.format {
        Emit::Json => (codec::to_json(&built.program) + "\n").into_bytes(),
        Emit::Binary => {
            if a.output.is_none() {
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() {
                    return Err(Fatal("refusing to write a binary program to a terminal; use -o FILE".into()));
                }
            }
            codec::to_binary(&built.program)
        }
    };
    write_out(a.output.as_deref(), &bytes)?;
    Ok(Outcome::Ok)
}

/// Loads a compiled program (binary or JSON) from disk.
fn load_program(path: &Path) -> Result<Option<Program>, Fatal> {
    let bytes = flowc::files::read_regular(path, flowc::files::MAX_INPUT_BYTES)
        .map_err(|e| Fatal(format!("cannot read `{}`: {e}", path.display())))?;
    if codec::is_binary(&bytes) {
        return codec::from_binary(&bytes).map(Some).map_err(|e| Fatal(format!("`{}`: {e}", path.display())));
    }
    if path.extension().is_some_and(|e| e == "json") {
        let text = String::from_utf8(bytes).map_err(|_| Fatal(format!("`{}` is not UTF-8", path.display())))?;
        return codec::from_json(&text).map(Some).map_err(|e| Fatal(format!("`{}`: {e}", path.display())));
    }
    Ok(None)
}

pub fn dis_cmd(s: Source) -> Result<Outcome, Fatal> {
    if let Some(p) = load_program(&s.file)? {
        out!("{}", compile::dis::listing(&p));
        return Ok(Outcome::Ok);
    }
    match build(&s.file, s.campaign.as_deref(), s.templates.as_deref(), Drafts::from_flag(s.allow_draft))? {
        Ok(b) => {
            out!("{}", compile::dis::listing(&b.program));
            Ok(Outcome::Ok)
        }
        Err(o) => Ok(o),
    }
}

pub fn graph_cmd(a: GraphArgs) -> Result<Outcome, Fatal> {
    let b = match build(&a.file, a.campaign.as_deref(), a.templates.as_deref(), Drafts::from_flag(a.allow_draft))? {
        Ok(b) => b,
        Err(o) => return Ok(o),
    };
    let text = match a.format {
        GraphFormat::Svg => compile::graph::svg(&b.campaign, b.inputs.ws.sources.get(b.campaign.file)),
        GraphFormat::Dot => compile::graph::dot(&b.program, &b.campaign),
        GraphFormat::Mermaid => compile::graph::mermaid(&b.program, &b.campaign),
    };
    write_out(a.output.as_deref(), text.as_bytes())?;
    Ok(Outcome::Ok)
}

pub fn diff_cmd(a: DiffArgs) -> Result<Outcome, Fatal> {
    let old = match build(&a.old, a.campaign.as_deref(), None, Drafts::Allow)? {
        Ok(b) => b.program,
        Err(o) => return Ok(o),
    };
    let new = match build(&a.new, a.campaign.as_deref().or(Some(old.campaign.as_str())), None, Drafts::Allow)? {
        Ok(b) => b.program,
        Err(o) => return Ok(o),
    };
    let m = compile::diff::map_versions(&old, &new);
    out!("{}", compile::diff::render(&old, &new, &m));
    Ok(Outcome::Ok)
}
