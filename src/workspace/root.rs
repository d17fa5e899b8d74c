//! The workspace root: the one folder a check's imports must stay inside,
//! found the same way by every command whatever the spelling of the path.
//!
//! The root is the nearest folder holding a `flowc.toml`, walking up from
//! the file or folder given; without one, the folder of the file given (or
//! the folder itself, when a folder is given). It is always a canonical
//! path, so `c5.flow`, `./c5.flow`, `$PWD/c5.flow` and `sub/../sub/c5.flow`
//! all have the same root, and symlinks are resolved before comparing.

use super::path::real_path;
use std::path::{Path, PathBuf};

/// The file that marks a workspace's top folder.
pub const WORKSPACE_FILE: &str = "flowc.toml";

/// A canonical folder; only [`WorkspaceRoot::discover`] and
/// [`WorkspaceRoot::for_file_in`] make one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceRoot(PathBuf);

impl WorkspaceRoot {
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The root for a file or folder named on the command line (or opened
    /// in an editor). The path need not exist as a whole (an editor's
    /// unsaved buffer), but the parts that exist are resolved.
    pub fn discover(given: &Path) -> std::io::Result<WorkspaceRoot> {
        let start = start_folder(given)?;
        Ok(WorkspaceRoot(workspace_file(&start).and_then(|f| f.parent().map(Path::to_path_buf)).unwrap_or(start)))
    }

    /// The `flowc.toml` that marks this root, if one does.
    pub fn settings_file(&self) -> Option<PathBuf> {
        Some(self.0.join(WORKSPACE_FILE)).filter(|f| f.is_file())
    }

    /// The root of `file`, found while walking the folder whose root is
    /// `folder`: a `flowc.toml` between the file and the folder makes a
    /// nested workspace, exactly as when the file is named on its own;
    /// otherwise the folder's root.
    pub fn for_file_in(file: &Path, folder: &WorkspaceRoot) -> std::io::Result<WorkspaceRoot> {
        let start = start_folder(file)?;
        Ok(match workspace_file(&start).and_then(|f| f.parent().map(Path::to_path_buf)) {
            Some(marked) if marked.starts_with(&folder.0) => WorkspaceRoot(marked),
            _ => folder.clone(),
        })
    }

    /// Does the canonical `real` path lie inside this root?
    pub fn contains(&self, real: &Path) -> bool {
        real.starts_with(&self.0)
    }
}

impl std::fmt::Display for WorkspaceRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

/// The canonical folder the search starts from: the folder itself, or the
/// folder the file is named in. For a file that is a symlink this is the
/// link's folder, not the target's: a link must not carry its own root along.
fn start_folder(given: &Path) -> std::io::Result<PathBuf> {
    let given = if given.as_os_str().is_empty() { Path::new(".") } else { given };
    if given.is_dir() {
        return real_path(given);
    }
    match given.parent() {
        Some(p) if !p.as_os_str().is_empty() => real_path(p),
        _ => real_path(Path::new(".")),
    }
}

/// The `flowc.toml` that applies to a file or folder given on the command
/// line, found exactly as [`WorkspaceRoot::discover`] finds the root: what a
/// settings loader reads.
pub fn find_workspace_file(given: &Path) -> Option<PathBuf> {
    start_folder(given).ok().and_then(|start| workspace_file(&start))
}

/// The nearest `flowc.toml` in `folder` or above it (`folder` canonical).
/// The one place that decides where a workspace's settings live: the loader
/// of `flowc.toml` reads the file this returns.
pub fn workspace_file(folder: &Path) -> Option<PathBuf> {
    folder.ancestors().map(|d| d.join(WORKSPACE_FILE)).find(|f| f.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flowc-root-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("ws/sub/deep")).expect("dir");
        std::fs::canonicalize(&d).expect("canonical")
    }

    #[test]
    fn without_a_workspace_file_the_root_is_the_folder_given_or_the_files_folder() {
        let d = tmp("none");
        let sub = d.join("ws/sub");
        assert_eq!(WorkspaceRoot::discover(&sub.join("c.flow")).expect("root").path(), sub);
        assert_eq!(WorkspaceRoot::discover(&sub).expect("root").path(), sub);
        assert_eq!(WorkspaceRoot::discover(&d.join("ws/sub/deep/../c.flow")).expect("root").path(), sub);
        // A linked file has the root of the folder it is named in.
        #[cfg(unix)]
        {
            std::fs::write(d.join("ws/target.flow"), "").expect("write");
            std::os::unix::fs::symlink(d.join("ws/target.flow"), sub.join("link.flow")).expect("link");
            assert_eq!(WorkspaceRoot::discover(&sub.join("link.flow")).expect("root").path(), sub);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_nearest_workspace_file_above_marks_the_root() {
        let d = tmp("marked");
        std::fs::write(d.join("ws/flowc.toml"), "").expect("toml");
        let ws = d.join("ws");
        for given in [d.join("ws/sub/deep/c.flow"), d.join("ws/sub"), d.join("ws"), d.join("ws/c.flow")] {
            assert_eq!(WorkspaceRoot::discover(&given).expect("root").path(), ws, "{}", given.display());
        }
        assert_eq!(workspace_file(&d.join("ws/sub")), Some(ws.join(WORKSPACE_FILE)));
        assert_eq!(find_workspace_file(&d.join("ws/sub/deep/c.flow")), Some(ws.join(WORKSPACE_FILE)));
        assert_eq!(
            WorkspaceRoot::discover(&d.join("ws/sub")).expect("root").settings_file(),
            Some(ws.join(WORKSPACE_FILE))
        );
        // A folder named flowc.toml marks nothing.
        std::fs::create_dir_all(d.join("ws/sub/flowc.toml")).expect("dir");
        assert_eq!(WorkspaceRoot::discover(&d.join("ws/sub/c.flow")).expect("root").path(), ws);
        // A nested workspace file wins for the files under it.
        std::fs::write(d.join("ws/sub/deep/flowc.toml"), "").expect("toml");
        let folder = WorkspaceRoot::discover(&ws).expect("root");
        assert_eq!(
            WorkspaceRoot::for_file_in(&d.join("ws/sub/deep/c.flow"), &folder).expect("root").path(),
            d.join("ws/sub/deep")
        );
        assert_eq!(WorkspaceRoot::for_file_in(&d.join("ws/sub/c.flow"), &folder).expect("root").path(), ws);
        let _ = std::fs::remove_dir_all(&d);
    }
}
