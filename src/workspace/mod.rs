//! Loading a compilation unit: the stdlib prelude, a root file and its
//! imports, parsed once each. This is the IO edge of the front end; reading is
//! injected so the language server can serve unsaved buffers.
//!
//! Every file is known two ways: as the user spelled it (what messages show)
//! and by its real path (what it is). Imports resolve to real paths, and one
//! that leaves the workspace root ([`root`]) is refused before it is read.

mod path;
mod root;

pub use path::{normalize, real_path};
pub use root::{find_workspace_file, workspace_file, WorkspaceRoot, WORKSPACE_FILE};

use crate::diag::{Code, Diagnostic};
use crate::files::{self, ReadError};
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::{self, ast};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The prelude, embedded in the binary (docs/language.md, "The stdlib prelude").
pub const STDLIB: &[(&str, &str)] = &[
    ("<stdlib>/channels.flow", include_str!("../../stdlib/channels.flow")),
    ("<stdlib>/contact.flow", include_str!("../../stdlib/contact.flow")),
    ("<stdlib>/events.flow", include_str!("../../stdlib/events.flow")),
    ("<stdlib>/pricing.flow", include_str!("../../stdlib/pricing.flow")),
];

/// Longest chain of imports followed.
pub const MAX_IMPORT_DEPTH: usize = 32;

/// Reads a file's bytes, given its real path; the CLI passes
/// [`read_from_disk`], the LSP its open buffers first.
pub type Reader<'a> = &'a dyn Fn(&Path) -> Result<Vec<u8>, ReadError>;

/// Reads a source file from disk: a regular file of at most
/// [`files::MAX_INPUT_BYTES`].
pub fn read_from_disk(real: &Path) -> Result<Vec<u8>, ReadError> {
    files::read_regular(real, files::MAX_INPUT_BYTES)
}

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
    /// The files that declare a `policy`, in load order: the policy is
    /// workspace-wide, and every unit's check finds it here without
    /// walking every file.
    pub policies: Vec<FileId>,
    /// Roots that could not be loaded at all; a command reports them as a
    /// failure to run, not as findings.
    pub failed_roots: Vec<FileError>,
    /// Syntax and import diagnostics, each reported once however many units see the file.
    pub diags: Vec<Diagnostic>,
    /// Files by real path: one file reached by several spellings is loaded once.
    by_real: HashMap<PathBuf, FileId>,
    /// What each `import "…"` of a file resolved to.
    imports: HashMap<(FileId, String), FileId>,
}

impl Workspace {
    pub fn tree(&self, id: FileId) -> &ast::SourceFile {
        &self.trees[id.0 as usize]
    }
    pub fn is_stdlib(&self, id: FileId) -> bool {
        self.stdlib.contains(&id)
    }
    /// The file that `import "target"` in `importer` loaded, if it did.
    pub fn imported(&self, importer: FileId, target: &str) -> Option<FileId> {
        self.imports.get(&(importer, target.to_string())).copied()
    }
}

/// A file to check, as named by the user, and the workspace its imports
/// must stay inside.
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
    pub workspace: WorkspaceRoot,
}

impl Root {
    /// A file named on its own: its workspace is discovered from it.
    pub fn discover(path: &Path) -> std::io::Result<Root> {
        Ok(Root { path: path.to_path_buf(), workspace: WorkspaceRoot::discover(path)? })
    }
}

/// Why a root or an import could not be loaded. `Display` is the whole
/// message; it never quotes the file's contents.
#[derive(Debug)]
pub enum FileError {
    /// The import's path is not allowed as written.
    Refused {
        name: String,
        why: &'static str,
    },
    /// The path resolves to a real path outside the workspace root. Paths
    /// are as shown (relative to the current folder when inside it); `link_to`
    /// is where a symlink on the way led.
    Outside {
        name: String,
        link_to: Option<PathBuf>,
        root: PathBuf,
    },
    Unreadable {
        shown: PathBuf,
        reason: ReadError,
    },
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Refused { name, why } => write!(f, "`{name}` {why}"),
            FileError::Outside { name, link_to: None, root } => {
                write!(f, "`{name}` is outside the workspace `{}`", shown_name(root))
            }
            FileError::Outside { name, link_to: Some(to), root } => {
                write!(f, "`{name}` is a link to `{}`, outside the workspace `{}`", shown_name(to), shown_name(root))
            }
            FileError::Unreadable { shown, reason } => write!(f, "cannot read `{}`: {reason}", shown_name(shown)),
        }
    }
}

impl std::error::Error for FileError {}

impl FileError {
    /// What to do about it, where there is something to say.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            FileError::Outside { .. } => Some(OUTSIDE_HELP),
            _ => None,
        }
    }
}

const OUTSIDE_HELP: &str = "imports stay inside the workspace: the nearest folder up that holds a `flowc.toml`, else the folder of the file (or the folder) given";

/// A file as the user spelled it (for messages) and as the filesystem
/// resolves it (for identity and the boundary).
struct Located {
    shown: PathBuf,
    real: PathBuf,
}

/// The prelude parsed once per process: every workspace starts with the
/// same files at the same ids, so each load copies these trees instead of
/// parsing the stdlib again (the language server loads on every edit).
fn prelude() -> &'static Workspace {
    static PRELUDE: std::sync::OnceLock<Workspace> = std::sync::OnceLock::new();
    PRELUDE.get_or_init(|| {
        let mut ws = Workspace::default();
        for (path, text) in STDLIB {
            let id = add_parsed(&mut ws, PathBuf::from(path), None, text.to_string());
            ws.stdlib.push(id);
        }
        ws
    })
}

pub fn load(roots: &[Root], read: Reader) -> Workspace {
    let p = prelude();
    let mut ws = Workspace {
        sources: p.sources.clone(),
        trees: p.trees.clone(),
        stdlib: p.stdlib.clone(),
        policies: p.policies.clone(),
        diags: p.diags.clone(),
        ..Workspace::default()
    };
    for root in roots {
        let loaded = locate_root(root).and_then(|file| open(&mut ws, &file, read).map(|id| (id, file)));
        let (id, file) = match loaded {
            Ok(x) => x,
            Err(e) => {
                ws.failed_roots.push(e);
                continue;
            }
        };
        let mut files = ws.stdlib.clone();
        let mut stack = Vec::new();
        visit(&mut ws, id, &file, &root.workspace, read, &mut stack, &mut files);
        if !files.contains(&id) {
            files.push(id);
        }
        ws.units.push(Unit { root: id, files });
    }
    ws
}

/// Reads a root file exactly as [`load`] does (inside its workspace, a
/// regular file within the size limit), for commands that read one file
/// without its imports (`fmt`, `export`).
pub fn read_root(root: &Root) -> Result<Vec<u8>, FileError> {
    let file = locate_root(root)?;
    read_from_disk(&file.real).map_err(|reason| FileError::Unreadable { shown: file.shown, reason })
}

fn locate_root(root: &Root) -> Result<Located, FileError> {
    let shown = normalize(&root.path);
    let real = real_path(&root.path).map_err(|e| FileError::Unreadable { shown: shown.clone(), reason: e.into() })?;
    if !root.workspace.contains(&real) {
        let spelled = real_path(Path::new(".")).map(|cwd| normalize(&cwd.join(&root.path))).unwrap_or_default();
        return Err(outside(shown_name(&shown), &spelled, &real, &root.workspace));
    }
    Ok(Located { shown, real })
}

/// Where `import "target"` in `importer` leads: relative to the importer's
/// real folder; refused when empty, absolute, or when its real path (every
/// symlink resolved) leaves the workspace root. Nothing is read here.
fn locate_import(importer: &Located, target: &str, root: &WorkspaceRoot) -> Result<Located, FileError> {
    let refused = |why| Err(FileError::Refused { name: target.to_string(), why });
    if target.is_empty() {
        return refused("is empty: an import names a file");
    }
    let t = Path::new(target);
    if t.is_absolute() || t.has_root() {
        return refused("is absolute: import paths are relative to the importing file");
    }
    let shown = normalize(&importer.shown.parent().unwrap_or(Path::new("")).join(t));
    let base = importer.real.parent().unwrap_or(Path::new("/"));
    let real =
        real_path(&base.join(t)).map_err(|e| FileError::Unreadable { shown: shown.clone(), reason: e.into() })?;
    if !root.contains(&real) {
        return Err(outside(target.to_string(), &normalize(&base.join(t)), &real, root));
    }
    Ok(Located { shown, real })
}

/// The refusal of `name`, which is spelled as `spelled` (absolute, links
/// unresolved) and really is `real`: when the two differ a link led there,
/// and the message says where.
fn outside(name: String, spelled: &Path, real: &Path, root: &WorkspaceRoot) -> FileError {
    let link_to = (spelled != real).then(|| path::shown_from_cwd(real));
    FileError::Outside { name, link_to, root: path::shown_from_cwd(root.path()) }
}

/// The file at `file.real`, read and parsed once however it is reached.
fn open(ws: &mut Workspace, file: &Located, read: Reader) -> Result<FileId, FileError> {
    if let Some(id) = ws.by_real.get(&file.real) {
        return Ok(*id);
    }
    let bytes = read(&file.real).map_err(|reason| FileError::Unreadable { shown: file.shown.clone(), reason })?;
    Ok(match String::from_utf8(bytes) {
        Ok(text) => add_parsed(ws, file.shown.clone(), Some(file.real.clone()), text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let id = ws.sources.add(&file.shown, text);
            ws.trees.push(ast::SourceFile { items: vec![], comments: vec![] });
            ws.by_real.insert(file.real.clone(), id);
            ws.diags.push(
                Diagnostic::new(
                    Code::Syntax,
                    id,
                    Span::new(at, at + 1),
                    format!("the file is not valid UTF-8 (byte {at})"),
                )
                .with_label("invalid byte")
                .with_help("save the file as UTF-8"),
            );
            id
        }
    })
}

/// Loads the imports of `id` depth-first, each once, adding them to `files`.
fn visit(
    ws: &mut Workspace,
    id: FileId,
    file: &Located,
    root: &WorkspaceRoot,
    read: Reader,
    stack: &mut Vec<(PathBuf, PathBuf)>,
    files: &mut Vec<FileId>,
) {
    if files.contains(&id) {
        return;
    }
    stack.push((file.real.clone(), file.shown.clone()));
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
        let dep = match locate_import(file, &target, root) {
            Ok(dep) => dep,
            Err(e) => {
                push_once(&mut ws.diags, import_diag(id, span, &e));
                continue;
            }
        };
        if stack.len() >= MAX_IMPORT_DEPTH {
            // A chain of ever-new paths would otherwise never end.
            push_once(
                &mut ws.diags,
                Diagnostic::new(
                    Code::ImportError,
                    id,
                    span,
                    format!("imports nest deeper than {MAX_IMPORT_DEPTH} files"),
                )
                .with_label("too deep"),
            );
            continue;
        }
        if let Some(pos) = stack.iter().position(|(real, _)| *real == dep.real) {
            let mut chain: Vec<String> = stack[pos..].iter().map(|(_, shown)| display_name(shown)).collect();
            chain.push(display_name(&dep.shown));
            let d = Diagnostic::new(Code::ImportError, id, span, format!("import cycle: {}", chain.join(" → ")))
                .with_label("closes the cycle")
                .with_help("move the shared declarations into a file that both can import");
            push_once(&mut ws.diags, d);
            continue;
        }
        let dep_id = match open(ws, &dep, read) {
            Ok(dep_id) => dep_id,
            Err(e) => {
                push_once(&mut ws.diags, import_diag(id, span, &e));
                continue;
            }
        };
        ws.imports.insert((id, target), dep_id);
        visit(ws, dep_id, &dep, root, read, stack, files);
        if !files.contains(&dep_id) {
            files.push(dep_id);
        }
    }
    stack.pop();
}

fn import_diag(file: FileId, span: Span, e: &FileError) -> Diagnostic {
    let label = match e {
        FileError::Unreadable { .. } => "imported here",
        _ => "this import",
    };
    let d = Diagnostic::new(Code::ImportError, file, span, e.to_string()).with_label(label);
    match e.help() {
        Some(h) => d.with_help(h),
        None => d,
    }
}

fn add_parsed(ws: &mut Workspace, shown: PathBuf, real: Option<PathBuf>, text: String) -> FileId {
    let id = ws.sources.add(shown, text);
    let (tree, diags) = syntax::parse(&ws.sources.get(id).text, id);
    if tree.items.iter().any(|i| matches!(i, ast::Item::Policy(_))) {
        ws.policies.push(id);
    }
    ws.trees.push(tree);
    ws.diags.extend(diags);
    if let Some(real) = real {
        ws.by_real.insert(real, id);
    }
    id
}

fn push_once(diags: &mut Vec<Diagnostic>, d: Diagnostic) {
    if !diags.contains(&d) {
        diags.push(d);
    }
}

fn display_name(p: &Path) -> String {
    p.file_name().map_or_else(|| shown_name(p), |n| n.to_string_lossy().into_owned())
}

/// A shown path for a message: the current folder is `.`, not nothing.
fn shown_name(p: &Path) -> String {
    if p.as_os_str().is_empty() {
        ".".into()
    } else {
        p.display().to_string()
    }
}

/// Every `*.flow` entry under `dir`, sorted, skipping hidden folders,
/// `target` and `node_modules`. Linked folders are not entered (no loops, no
/// walking out of the tree); a linked or special `*.flow` entry is listed,
/// so loading it reports what it is rather than skipping it silently.
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

/// The stdlib prelude alone as a workspace of one unit (built-in contact
/// fields, channels); `check::stdlib_model` checks it.
pub fn stdlib_only() -> Workspace {
    let read = |_: &Path| Err(ReadError::NotFound);
    let mut ws = load(&[], &read);
    if let Some(first) = ws.stdlib.first().copied() {
        ws.units.push(Unit { root: first, files: ws.stdlib.clone() });
    }
    ws
}
