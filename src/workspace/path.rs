//! Paths two ways: as the user spelled them (for messages) and as the
//! filesystem resolves them (for identity and the workspace boundary).

use std::path::{Component, Path, PathBuf};

/// Lexical normalisation: drops `.`, folds `..`; no filesystem access. Only
/// for paths shown to people: what a path *is* comes from [`real_path`].
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

/// A real path as messages show it: relative to the current folder when it
/// is inside it (so output does not depend on where a checkout lives),
/// absolute otherwise.
pub fn shown_from_cwd(real: &Path) -> PathBuf {
    match real_path(Path::new(".")) {
        Ok(cwd) => match real.strip_prefix(&cwd) {
            Ok(rel) => rel.to_path_buf(),
            Err(_) => real.to_path_buf(),
        },
        Err(_) => real.to_path_buf(),
    }
}

/// The absolute path with every symlink, `.` and `..` resolved, as far as
/// the path exists; a part that does not exist yet (an editor's unsaved
/// file) is appended as spelled, since it cannot be a link.
pub fn real_path(p: &Path) -> std::io::Result<PathBuf> {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) };
    match std::fs::canonicalize(&abs) {
        Ok(real) => Ok(real),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => resolve_existing_prefix(&abs),
        Err(e) => Err(e),
    }
}

/// [`real_path`] of a path that does not exist as a whole: each component
/// is resolved in turn until one is missing, and the rest is lexical.
fn resolve_existing_prefix(abs: &Path) -> std::io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut exists = true;
    for c in abs.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => resolved.push(c.as_os_str()),
            Component::CurDir => {}
            // `resolved` is canonical, so its lexical parent is its real parent.
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                resolved.push(name);
                if exists {
                    match std::fs::canonicalize(&resolved) {
                        Ok(real) => resolved = real,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => exists = false,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(normalize(Path::new("a/./b/../c.flow")), PathBuf::from("a/c.flow"));
        assert_eq!(normalize(Path::new("./c.flow")), PathBuf::from("c.flow"));
        assert_eq!(normalize(Path::new("../c.flow")), PathBuf::from("../c.flow"));
        assert_eq!(normalize(Path::new(".")), PathBuf::new());
    }

    #[test]
    fn real_paths_resolve_what_exists_and_keep_the_rest() {
        let d = std::env::temp_dir().join(format!("flowc-realpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b")).expect("dir");
        let d = std::fs::canonicalize(&d).expect("canonical");
        assert_eq!(real_path(&d.join("a/b/../b")).expect("real"), d.join("a/b"));
        assert_eq!(real_path(&d.join("a/missing/../b/new.flow")).expect("real"), d.join("a/b/new.flow"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.join("a/b"), d.join("link")).expect("link");
            assert_eq!(real_path(&d.join("link/new.flow")).expect("real"), d.join("a/b/new.flow"));
            // `..` after a link goes to the target's parent, as the filesystem does.
            assert_eq!(real_path(&d.join("link/../x.flow")).expect("real"), d.join("a/x.flow"));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
