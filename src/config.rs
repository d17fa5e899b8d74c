//! `flowc.toml`: the workspace's settings, found by walking up from the file
//! or folder a command is given, so no flag has to be repeated on every
//! command. Flags override it; an unknown key is an error naming the key.
//!
//! ```toml
//! database = "campaigns.db"        # a path (relative to this file)
//! templates = "registry.json"      # the platform's template registry
//! allow-draft = false
//! deny-warnings = true
//!
//! [lints]
//! step-not-dominating = "allow"    # allow | warn | deny
//! ```

use crate::check::lints::{self, Level, Lints};
use crate::diag::Code;
use std::path::{Path, PathBuf};

/// The largest `flowc.toml` read; settings fit in a few hundred bytes.
const MAX_SIZE: u64 = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// The file it came from (`None`: no `flowc.toml` was found).
    pub path: Option<PathBuf>,
    /// Paths below are already resolved against the file's folder.
    pub database: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub allow_draft: Option<bool>,
    pub deny_warnings: Option<bool>,
    pub lints: Lints,
}

/// Finds and reads the configuration that applies to `start`; no file is
/// the default configuration, a broken one is an error.
pub fn load(start: &Path) -> Result<Config, String> {
    // The same walk that finds the workspace root, so settings and imports
    // always agree on which workspace a file is in.
    let Some(path) = crate::workspace::find_workspace_file(start) else { return Ok(Config::default()) };
    let bytes =
        crate::files::read_regular(&path, MAX_SIZE).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("`{}` is not UTF-8", path.display()))?;
    parse(&text, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the text of a `flowc.toml` found at `path`.
pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string().trim_end().to_string())?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = Config { path: Some(path.to_path_buf()), ..Config::default() };
    for (key, value) in &table {
        match key.as_str() {
            "database" => config.database = Some(base.join(string(key, value)?)),
            "templates" => config.templates = Some(base.join(string(key, value)?)),
            "allow-draft" => config.allow_draft = Some(boolean(key, value)?),
            "deny-warnings" => config.deny_warnings = Some(boolean(key, value)?),
            "lints" => config.lints = lint_table(value)?,
            other => {
                let known = ["database", "templates", "allow-draft", "deny-warnings", "lints"];
                let hint = crate::suggest::help(other, known).map(|h| format!(" ({h})")).unwrap_or_default();
                return Err(format!("unknown key `{other}`{hint}; the keys are {}", known.join(", ")));
            }
        }
    }
    Ok(config)
}

fn string<'v>(key: &str, v: &'v toml::Value) -> Result<&'v str, String> {
    v.as_str().filter(|s| !s.is_empty()).ok_or_else(|| format!("`{key}` must be a non-empty string"))
}

fn boolean(key: &str, v: &toml::Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("`{key}` must be true or false"))
}

fn lint_table(v: &toml::Value) -> Result<Lints, String> {
    let table = v.as_table().ok_or("`lints` must be a table: `[lints]` with `code = \"allow\"` lines")?;
    let mut out = Lints::new();
    for (name, level) in table {
        let code = Code::parse(name).ok_or_else(|| {
            let all = Code::ALL.iter().map(|c| c.as_str());
            let hint = crate::suggest::help(name, all).map(|h| format!(" ({h})")).unwrap_or_default();
            format!("[lints]: unknown code `{name}`{hint}")
        })?;
        lints::settable(code).map_err(|e| format!("[lints]: {e}"))?;
        let level = level
            .as_str()
            .and_then(Level::parse)
            .ok_or_else(|| format!("[lints]: `{name}` must be \"allow\", \"warn\" or \"deny\""))?;
        out.insert(code, level);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_at(text: &str) -> Result<Config, String> {
        parse(text, Path::new("/w/flowc.toml"))
    }

    #[test]
    fn reads_every_key_with_paths_relative_to_the_file() {
        let c = parse_at("database = \"c.db\"\ntemplates = \"t/registry.json\"\nallow-draft = true\ndeny-warnings = true\n[lints]\nstep-not-dominating = \"allow\"\nengagement-too-early = \"deny\"\n").expect("valid");
        assert_eq!(c.database, Some(PathBuf::from("/w/c.db")));
        assert_eq!(c.templates, Some(PathBuf::from("/w/t/registry.json")));
        assert_eq!((c.allow_draft, c.deny_warnings), (Some(true), Some(true)));
        assert_eq!(c.lints.get(&Code::StepNotDominating), Some(&Level::Allow));
        assert_eq!(c.lints.get(&Code::EngagementTooEarly), Some(&Level::Deny));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for (text, says) in [
            ("databse = \"x\"", "unknown key `databse` (did you mean `database`?)"),
            ("deny-warnings = \"yes\"", "`deny-warnings` must be true or false"),
            ("[lints]\nstep-not-dominatin = \"allow\"", "unknown code `step-not-dominatin`"),
            ("[lints]\nunknown-template = \"allow\"", "only warnings can be allowed"),
            ("[lints]\nno-send = \"off\"", "must be \"allow\", \"warn\" or \"deny\""),
            ("database = ", "TOML parse error"),
        ] {
            let e = parse_at(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
