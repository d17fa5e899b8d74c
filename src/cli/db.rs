//! Which database a command opens: a SQLite file (the embedded default) or
//! a PostgreSQL server (`postgres://…`), from `--db`, else
//! `FLOWC_DATABASE_URL`, else `database` in flowc.toml, else `flowc.db`.
//! The one place that chooses a `Store` backend.

use super::Fatal;
use flowc::runtime::postgres::PgStore;
use flowc::runtime::sqlite::{OpenMode, SqliteStore};
use flowc::runtime::store::Store;
use std::path::{Path, PathBuf};

/// The environment variable naming the database when `--db` is not given.
pub const ENV: &str = "FLOWC_DATABASE_URL";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    File(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Database {
    /// A `--db` value, the variable, or flowc.toml's `database`: a
    /// PostgreSQL URL by its scheme, else a file path.
    pub fn parse(spelled: &str) -> Result<Database, Fatal> {
        // SQLite takes an empty name for a private temporary database:
        // everything written to it would be gone at exit.
        if spelled.trim().is_empty() {
            return Err(Fatal("the database is empty: give --db a file path or a postgres:// URL".into()));
        }
        if spelled.starts_with("postgres://") || spelled.starts_with("postgresql://") {
            return Ok(Database::Postgres(spelled.to_string()));
        }
        // `mysql://…`, `sqlite://…`: a URL flowc does not speak, not a file
        // name (which it would otherwise create, as `mysql:/…`).
        if let Some((scheme, _)) = spelled.split_once("://") {
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
                return Err(Fatal(format!(
                    "`{}`: flowc keeps its data in an SQLite file (a path) or PostgreSQL (postgres://user@host/db), not `{scheme}://`",
                    without_password(spelled)
                )));
            }
        }
        Ok(Database::File(PathBuf::from(spelled)))
    }

    /// Opens the store; `ReadOnly` commands run beside a writer (SQLite
    /// only: a PostgreSQL server has no writer lock to avoid).
    pub fn open(&self, mode: OpenMode) -> Result<Box<dyn Store + Send>, Fatal> {
        match self {
            Database::File(path) => SqliteStore::open_as(path, mode)
                .map(|s| Box::new(s) as Box<dyn Store + Send>)
                .map_err(|e| Fatal(format!("`{}`: {e}", path.display()))),
            Database::Postgres(url) => match mode {
                // A command that only reads never creates or migrates a database.
                OpenMode::ReadOnly => PgStore::connect_existing(url),
                OpenMode::ReadWrite | OpenMode::Handlers => PgStore::connect(url),
            }
            .map(|s| Box::new(s) as Box<dyn Store + Send>)
            .map_err(|e| Fatal(format!("`{self}`: {e}"))),
        }
    }

    /// The simulated provider's delivery log: `--provider-log`, else beside
    /// a SQLite file (`DB.provider.log`), else `flowc.provider.log` in the
    /// current folder (a server has no folder of its own; workers sharing
    /// one database name one log with `--provider-log`).
    pub fn provider_log(&self, flag: Option<&Path>) -> PathBuf {
        match (flag, self) {
            (Some(p), _) => p.to_path_buf(),
            (None, Database::File(path)) => flowc::runtime::provider::log_path(path),
            (None, Database::Postgres(_)) => PathBuf::from("flowc.provider.log"),
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::File(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`: a
/// URL printed in an error or a hint never shows its password.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_postgres_and_anything_else_a_file() {
        assert_eq!(Database::parse("postgres://u@h/db").ok(), Some(Database::Postgres("postgres://u@h/db".into())));
        assert_eq!(Database::parse("postgresql://h/db").ok(), Some(Database::Postgres("postgresql://h/db".into())));
        assert_eq!(Database::parse("postgres.db").ok(), Some(Database::File("postgres.db".into())));
        assert!(Database::parse("mysql://u:pw@h/db")
            .is_err_and(|e| e.0.contains("mysql://u:***@h/db") && !e.0.contains("pw")));
        assert!(Database::parse("sqlite:///tmp/x.db").is_err());
        assert!(Database::parse("").is_err() && Database::parse("  ").is_err());
    }

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(
            Database::parse("postgres://u:s3cret@h:5432/db").map(|d| d.to_string()).unwrap_or_default(),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            Database::parse("postgres://u@h/db").map(|d| d.to_string()).unwrap_or_default(),
            "postgres://u@h/db"
        );
        assert_eq!(
            Database::parse("postgres://u:p@ss@h/db").map(|d| d.to_string()).unwrap_or_default(),
            "postgres://u:***@h/db"
        );
    }
}
