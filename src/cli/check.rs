//! `flowc check`: the CI gate.

use super::{Fatal, Outcome};
use flowc::check::{self, registry, CheckOptions};
use flowc::diag::{render, Severity};
use flowc::files;
use flowc::workspace::{self, Root, WorkspaceRoot};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Files, or folders searched for `*.flow` (default: the current folder).
    paths: Vec<PathBuf>,
    /// How to print the diagnostics: for people, JSON, SARIF 2.1.0, or GitHub annotations.
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
    /// Colour in human output: `auto` is colour on a terminal unless NO_COLOR is set.
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
            let text = files::read_text(p)
                .map_err(|e| Fatal(format!("cannot read template registry `{}`: {e}", p.display())))?;
            registry::parse(&text).map_err(|e| Fatal(format!("template registry `{}`: {e}", p.display())))?
        }
    };
    let ws = workspace::load(&roots, &workspace::read_from_disk);
    // A root we could not read at all is "could not run", not a finding.
    match ws.failed_roots.as_slice() {
        [] => {}
        [one] => return Err(Fatal(one.to_string())),
        many => {
            let lines: Vec<String> = many.iter().map(|e| format!("  {e}")).collect();
            return Err(Fatal(format!("{} of the files given cannot be checked:\n{}", many.len(), lines.join("\n"))));
        }
    }
    let analysis = check::check_all(&ws, &registry, opts);
    if let Some(p) = templates {
        // A channel any checked unit declares is known (all see the stdlib's).
        let channels =
            analysis.models.iter().flat_map(|(_, m)| m.channels.iter()).map(|(k, v)| (k.clone(), v.clone())).collect();
        registry::check_channels(&registry, &channels)
            .map_err(|e| Fatal(format!("template registry `{}`: {e}", p.display())))?;
    }
    Ok(Inputs { ws, analysis })
}

/// The files to check, each with its workspace root: the one place every
/// command turns the paths it was given into roots (`check`, `compile`,
/// `dis`, `graph`, `diff`, `estimate`, `run`, `launch`, `fmt`, `export`).
pub fn roots(paths: &[PathBuf]) -> Result<Vec<Root>, Fatal> {
    let paths = if paths.is_empty() { vec![PathBuf::from(".")] } else { paths.to_vec() };
    let mut roots = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(&p)
            .map_err(|e| Fatal(format!("cannot read `{}`: {}", p.display(), files::ReadError::from(e))))?;
        let cannot_resolve = |e: std::io::Error| Fatal(format!("cannot resolve `{}`: {e}", p.display()));
        if meta.is_dir() {
            let found =
                workspace::find_flow_files(&p).map_err(|e| Fatal(format!("cannot list `{}`: {e}", p.display())))?;
            if found.is_empty() {
                return Err(Fatal(format!("no .flow files in `{}`", p.display())));
            }
            let folder = WorkspaceRoot::discover(&p).map_err(cannot_resolve)?;
            // Files of one folder share a root: look it up once per folder.
            let mut by_folder: std::collections::HashMap<PathBuf, WorkspaceRoot> = std::collections::HashMap::new();
            for f in found {
                let key = f.parent().map(Path::to_path_buf).unwrap_or_default();
                let workspace = match by_folder.get(&key) {
                    Some(w) => w.clone(),
                    None => {
                        let w = WorkspaceRoot::for_file_in(&f, &folder).map_err(cannot_resolve)?;
                        by_folder.insert(key, w.clone());
                        w
                    }
                };
                roots.push(Root { path: f, workspace });
            }
        } else {
            roots.push(Root::discover(&p).map_err(cannot_resolve)?);
        }
    }
    Ok(roots)
}

pub fn run(args: Args) -> Result<Outcome, Fatal> {
    // Flags override the workspace's flowc.toml (found from the first path).
    let config = super::settings(args.paths.first().map(PathBuf::as_path))?;
    let templates = args.templates.clone().or(config.templates);
    let deny_warnings = args.deny_warnings || config.deny_warnings == Some(true);
    let opts = CheckOptions {
        allow_draft: args.allow_draft || config.allow_draft == Some(true),
        now: Some(chrono::Utc::now()),
        lints: config.lints,
    };
    let Inputs { ws, analysis } = load(&args.paths, templates.as_deref(), &opts)?;
    let diags = &analysis.diags;
    match args.format {
        Format::Human => {
            let color = super::use_color(args.color);
            out!("{}", render::human(diags, &ws.sources, render::HumanOptions { color, width: 100 }));
            let files = ws.units.len();
            outln!("checked {files} file{}: {}", if files == 1 { "" } else { "s" }, render::summary(diags));
        }
        Format::Json => outln!("{}", serde_json::to_string_pretty(&render::json(diags, &ws.sources))?),
        Format::Sarif => outln!("{}", serde_json::to_string_pretty(&render::sarif(diags, &ws.sources))?),
        Format::Github => out!("{}", render::github(diags, &ws.sources)),
    }
    let warnings = diags.iter().any(|d| d.severity == Severity::Warning);
    Ok(if analysis.has_errors() || (deny_warnings && warnings) { Outcome::Findings } else { Outcome::Ok })
}
