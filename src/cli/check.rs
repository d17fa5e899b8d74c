//! `flowc check`: the CI gate.

use super::{Fatal, Outcome};
use flowc::check::{self, registry, CheckOptions};
use flowc::diag::{render, Severity};
use flowc::workspace::{self, Root};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Files, or folders searched for `*.flow` (default: the current folder).
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// The platform's template registry export (JSON array).
    #[arg(long, value_name = "FILE")]
    templates: Option<PathBuf>,
    /// Draft or rejected templates are warnings instead of errors.
    #[arg(long)]
    allow_draft: bool,
    /// Exit 1 on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    #[arg(long, value_enum, default_value_t = super::ColorChoice::Auto)]
    color: super::ColorChoice,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Human,
    Json,
    Sarif,
    Github,
}

/// Inputs shared by every command that reads `.flow` files.
pub struct Inputs {
    pub ws: workspace::Workspace,
    pub analysis: check::Analysis,
}

/// Expands paths into roots, loads and checks them. Unreadable roots are fatal.
pub fn load(paths: &[PathBuf], templates: Option<&Path>, opts: &CheckOptions) -> Result<Inputs, Fatal> {
    let roots = roots(paths)?;
    let registry = match templates {
        None => Vec::new(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Fatal(format!("cannot read template registry `{}`: {e}", p.display())))?;
            registry::parse(&text).map_err(|e| Fatal(format!("template registry `{}`: {e}", p.display())))?
        }
    };
    let read = |p: &Path| std::fs::read(p);
    let ws = workspace::load(&roots, &read);
    // A root we could not read at all is "could not run", not a finding.
    for unit_root in &roots {
        let p = workspace::normalize(&unit_root.path);
        if !ws.units.iter().any(|u| ws.sources.get(u.root).path == p) {
            let why = ws.diags.iter().find(|d| ws.sources.get(d.file).path == p).map(|d| d.message.clone()).unwrap_or_else(|| "cannot read it".into());
            return Err(Fatal(why));
        }
    }
    let analysis = check::check_all(&ws, &registry, opts);
    if let Some(p) = templates {
        // A channel any checked unit declares is known (all see the stdlib's).
        let channels = analysis.models.iter().flat_map(|(_, m)| m.channels.iter()).map(|(k, v)| (k.clone(), v.clone())).collect();
        registry::check_channels(&registry, &channels).map_err(|e| Fatal(format!("template registry `{}`: {e}", p.display())))?;
    }
    Ok(Inputs { ws, analysis })
}

pub fn roots(paths: &[PathBuf]) -> Result<Vec<Root>, Fatal> {
    let paths = if paths.is_empty() { vec![PathBuf::from(".")] } else { paths.to_vec() };
    let mut roots = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(&p).map_err(|e| Fatal(format!("cannot read `{}`: {e}", p.display())))?;
        if meta.is_dir() {
            let files = workspace::find_flow_files(&p).map_err(|e| Fatal(format!("cannot list `{}`: {e}", p.display())))?;
            if files.is_empty() {
                return Err(Fatal(format!("no .flow files in `{}`", p.display())));
            }
            roots.extend(files.into_iter().map(|f| Root { path: f, sandbox: p.clone() }));
        } else {
            let sandbox = p.parent().map(Path::to_path_buf).unwrap_or_default();
            roots.push(Root { path: p, sandbox });
        }
    }
    Ok(roots)
}

pub fn run(args: Args) -> Result<Outcome, Fatal> {
    let opts = CheckOptions { allow_draft: args.allow_draft };
    let Inputs { ws, analysis } = load(&args.paths, args.templates.as_deref(), &opts)?;
    let diags = &analysis.diags;
    match args.format {
        Format::Human => {
            let color = super::use_color(args.color);
            print!("{}", render::human(diags, &ws.sources, render::HumanOptions { color, width: 100 }));
            let files = ws.units.len();
            println!("checked {files} file{}: {}", if files == 1 { "" } else { "s" }, render::summary(diags));
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&render::json(diags, &ws.sources))?),
        Format::Sarif => println!("{}", serde_json::to_string_pretty(&render::sarif(diags, &ws.sources))?),
        Format::Github => print!("{}", render::github(diags, &ws.sources)),
    }
    let warnings = diags.iter().any(|d| d.severity == Severity::Warning);
    Ok(if analysis.has_errors() || (args.deny_warnings && warnings) { Outcome::Findings } else { Outcome::Ok })
}
