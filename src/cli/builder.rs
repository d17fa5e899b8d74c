//! `flowc export` and `flowc import`: the dashboard's builder JSON.

use super::{Fatal, Outcome};
use flowc::syntax::ast::Item;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The .flow file.
    file: PathBuf,
    /// Which campaign, when the file has several.
    #[arg(long)]
    campaign: Option<String>,
    /// Write here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The builder timeline JSON file.
    file: PathBuf,
    /// Write the .flow source here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

fn out(output: Option<&std::path::Path>, text: &str) -> Result<(), Fatal> {
    match output {
        Some(p) => super::build::write_atomically(p, text.as_bytes()),
        None => {
            out!("{text}");
            Ok(())
        }
    }
}

pub fn export(a: ExportArgs) -> Result<Outcome, Fatal> {
    let root = flowc::workspace::Root::discover(&a.file)
        .map_err(|e| Fatal(format!("cannot resolve `{}`: {e}", a.file.display())))?;
    let bytes = flowc::workspace::read_root(&root)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Fatal(format!("`{}` is not valid UTF-8 (byte {})", a.file.display(), e.utf8_error().valid_up_to()))
    })?;
    let mut sources = flowc::source::SourceMap::default();
    let id = sources.add(&a.file, text);
    let (tree, diags) = flowc::syntax::parse(&sources.get(id).text, id);
    if !diags.is_empty() {
        err!(
            "{}",
            flowc::diag::render::human(
                &diags,
                &sources,
                flowc::diag::render::HumanOptions { color: false, width: 100 }
            )
        );
        return Ok(Outcome::Findings);
    }
    let imports: Vec<String> = tree
        .items
        .iter()
        .filter_map(|i| if let Item::Import(im) = i { Some(im.path.value.clone()) } else { None })
        .collect();
    let campaigns: Vec<_> =
        tree.items.iter().filter_map(|i| if let Item::Campaign(c) = i { Some(c) } else { None }).collect();
    let chosen = match (&a.campaign, campaigns.as_slice()) {
        (Some(n), all) => all
            .iter()
            .find(|c| c.name.text == *n)
            .copied()
            .ok_or_else(|| Fatal(format!("no campaign `{n}` in `{}`", a.file.display())))?,
        (None, [one]) => *one,
        (None, []) => return Err(Fatal(format!("`{}` declares no campaign", a.file.display()))),
        (None, many) => {
            let names: Vec<&str> = many.iter().map(|c| c.name.text.as_str()).collect();
            return Err(Fatal(format!(
                "`{}` has several campaigns ({}); pick one with --campaign",
                a.file.display(),
                names.join(", ")
            )));
        }
    };
    let others = tree.items.iter().filter(|i| !matches!(i, Item::Import(_) | Item::Campaign(_))).count();
    if others > 0 {
        errln!("note: {others} declaration(s) (templates, segments, …) stay in the .flow file; builder JSON carries the campaign");
    }
    let v = flowc::builder::export(&imports, chosen);
    out(a.output.as_deref(), &(serde_json::to_string_pretty(&v).map_err(|e| Fatal(e.to_string()))? + "\n"))?;
    Ok(Outcome::Ok)
}

pub fn import(a: ImportArgs) -> Result<Outcome, Fatal> {
    let text =
        flowc::files::read_text(&a.file).map_err(|e| Fatal(format!("cannot read `{}`: {e}", a.file.display())))?;
    match flowc::builder::import(&text) {
        Ok(flow) => {
            out(a.output.as_deref(), &flow)?;
            Ok(Outcome::Ok)
        }
        Err(e) => {
            errln!("error: `{}`: {e}", a.file.display());
            Ok(Outcome::Findings)
        }
    }
}
