//! Loading a compilation unit: the stdlib prelude, a root file and its
//! imports, parsed once each. This is the IO edge of the front end; reading is
//! injected so the language server can serve unsaved buffers.

use crate::diag::{Code, Diagnostic};
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::{self, ast};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// The prelude, embedded in the binary (docs/language.md, "The stdlib prelude").
pub const STDLIB: &[(&str, &str)] = &[
    ("<stdlib>/channels.flow", include_str!("../stdlib/channels.flow")),
    ("<stdlib>/contact.flow", include_str!("../stdlib/contact.flow")),
    ("<stdlib>/events.flow", include_str!("../stdlib/events.flow")),
    ("<stdlib>/pricing.flow", include_str!("../stdlib/pricing.flow")),
];

/// Longest chain of imports followed.
pub const MAX_IMPORT_DEPTH: usize = 32;

/// Reads a file's bytes; the CLI passes `std::fs::read`, the LSP its buffers first.
pub type Reader<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// One root file with everything it sees, in declaration order: stdlib files,
/// then imports (each before its importer), then the root itself.
#[derive(Debug, Clone)]
pub struct Unit {
    pub root: FileId,
    pub files: Vec<FileId>,
}

#[derive(Debug, Default)]
pub struct Workspace {
    pub sources: SourceMap,
    /// Parsed tree of each file, indexed by `FileId`.
    pub trees: Vec<ast::SourceFile>,
    pub stdlib: Vec<FileId>,
    pub units: Vec<Unit>,
    /// Syntax and import diagnostics, each reported once however many units see the file.
    pub diags: Vec<Diagnostic>,
    by_path: HashMap<PathBuf, FileId>,
}

impl Workspace {
    pub fn tree(&self, id: FileId) -> &ast::SourceFile {
        &self.trees[id.0 as usize]
    }
    pub fn is_stdlib(&self, id: FileId) -> bool {
        self.stdlib.contains(&id)
    }
}

/// A root to check, and the folder its imports must stay inside.
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
    pub sandbox: PathBuf,
}

pub fn load(roots: &[Root], read: Reader) -> Workspace {
    let mut ws = Workspace::default();
    for (path, text) in STDLIB {
        let id = add_parsed(&mut ws, PathBuf::from(path), text.to_string());
        ws.stdlib.push(id);
    }
    for root in roots {
        let mut files = ws.stdlib.clone();
        let mut stack = Vec::new();
        let path = normalize(&root.path);
        let Some(id) = visit(&mut ws, &path, &root.sandbox, read, &mut stack, &mut files, None) else { continue };
        if !files.contains(&id) {
            files.push(id);
        }
        ws.units.push(Unit { root: id, files });
    }
    ws
}

/// Loads `path` (once), then its imports depth-first. Returns `None` when the
/// file cannot be read; the caller reports that at its import.
fn visit(
    ws: &mut Workspace,
    path: &Path,
    sandbox: &Path,
    read: Reader,
    stack: &mut Vec<PathBuf>,
    files: &mut Vec<FileId>,
    from: Option<(FileId, Span)>,
) -> Option<FileId> {
    let id = match ws.by_path.get(path) {
        Some(id) => *id,
        None => {
            let bytes = match read(path) {
                Ok(b) => b,
                Err(e) => {
                    if let Some((file, span)) = from {
                        let d = Diagnostic::new(Code::ImportError, file, span, format!("cannot read `{}`: {}", path.display(), io_reason(&e)))
                            .with_label("imported here");
                        push_once(&mut ws.diags, d);
                    } else {
                        // A root that cannot be read is the CLI's to report (exit 2).
                        let id = ws.sources.add(path, String::new());
                        ws.trees.push(ast::SourceFile { items: vec![], comments: vec![] });
                        ws.by_path.insert(path.to_path_buf(), id);
                        let d = Diagnostic::new(Code::ImportError, id, Span::default(), format!("cannot read `{}`: {}", path.display(), io_reason(&e)));
                        ws.diags.push(d);
                        return None;
                    }
                    return None;
                }
            };
            let id = match String::from_utf8(bytes) {
                Ok(text) => add_parsed(ws, path.to_path_buf(), text),
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    let id = ws.sources.add(path, text);
                    ws.trees.push(ast::SourceFile { items: vec![], comments: vec![] });
                    ws.by_path.insert(path.to_path_buf(), id);
                    ws.diags.push(
                        Diagnostic::new(Code::Syntax, id, Span::new(at, at + 1), format!("the file is not valid UTF-8 (byte {at})"))
                            .with_label("invalid byte")
                            .with_help("save the file as UTF-8"),
                    );
                    id
                }
            };
            id
        }
    };
    if files.contains(&id) {
        return Some(id);
    }
    stack.push(path.to_path_buf());
    let imports: Vec<(String, Span)> = ws
        .tree(id)
        .items
        .iter()
        .filter_map(|i| match i {
            ast::Item::Import(imp) => Some((imp.path.value.clone(), imp.path.span)),
            _ => None,
        })
        .collect();
    for (target, span) in imports {
        let resolved = match resolve_import(path, &target, sandbox) {
            Ok(p) => p,
            Err(why) => {
                push_once(&mut ws.diags, Diagnostic::new(Code::ImportError, id, span, why).with_label("this import"));
                continue;
            }
        };
        if stack.len() >= MAX_IMPORT_DEPTH {
            // A chain of ever-new paths (a symlink loop, say) would otherwise never end.
            push_once(&mut ws.diags, Diagnostic::new(Code::ImportError, id, span, format!("imports nest deeper than {MAX_IMPORT_DEPTH} files")).with_label("too deep"));
            continue;
        }
        if let Some(pos) = stack.iter().position(|p| *p == resolved) {
            let mut chain: Vec<String> = stack[pos..].iter().map(|p| display_name(p)).collect();
            chain.push(display_name(&resolved));
            let d = Diagnostic::new(Code::ImportError, id, span, format!("import cycle: {}", chain.join(" → ")))
                .with_label("closes the cycle")
                .with_help("move the shared declarations into a file that both can import");
            push_once(&mut ws.diags, d);
            continue;
        }
        if let Some(dep) = visit(ws, &resolved, sandbox, read, stack, files, Some((id, span))) {
            if !files.contains(&dep) {
                files.push(dep);
            }
        }
    }
    stack.pop();
    Some(id)
}

fn add_parsed(ws: &mut Workspace, path: PathBuf, text: String) -> FileId {
    let id = ws.sources.add(path.clone(), text);
    let (tree, diags) = syntax::parse(&ws.sources.get(id).text, id);
    ws.trees.push(tree);
    ws.diags.extend(diags);
    ws.by_path.insert(path, id);
    id
}

fn push_once(diags: &mut Vec<Diagnostic>, d: Diagnostic) {
    if !diags.contains(&d) {
        diags.push(d);
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn display_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Resolves an import relative to the importing file. Absolute paths and
/// paths that leave the sandbox folder are refused: input never names a file
/// outside the tree being checked.
pub fn resolve_import(importer: &Path, target: &str, sandbox: &Path) -> Result<PathBuf, String> {
    if target.is_empty() {
        return Err("empty import path".into());
    }
    let t = Path::new(target);
    if t.is_absolute() || t.has_root() {
        return Err(format!("import paths are relative to the importing file; `{target}` is absolute"));
    }
    let base = importer.parent().unwrap_or(Path::new(""));
    let resolved = normalize(&base.join(t));
    let sandbox = normalize(sandbox);
    if !resolved.starts_with(&sandbox) {
        return Err(format!("`{target}` is outside `{}`, the folder being checked", sandbox.display()));
    }
    Ok(resolved)
}

/// Lexical normalisation: drops `.`, folds `..`; no filesystem access.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    // An empty path stands for the current folder and prefixes every relative path.
    out.iter().collect()
}

/// Every `*.flow` file under `dir`, sorted, skipping hidden folders and `target`.
pub fn find_flow_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ty = entry.file_type()?;
            if ty.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    pending.push(path);
                }
            } else if name.ends_with(".flow") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The model of the stdlib prelude alone (built-in contact fields, channels).
pub fn stdlib_model() -> crate::check::model::Model {
    let read = |_: &Path| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    let mut ws = load(&[], &read);
    let Some(first) = ws.stdlib.first().copied() else { return Default::default() };
    ws.units.push(Unit { root: first, files: ws.stdlib.clone() });
    crate::check::check(&ws, &ws.units[0], &[], &Default::default()).0
}
