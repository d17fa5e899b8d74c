//! Command-line parsing and dispatch; each subcommand lives in its own module.

#[macro_use]
mod out;

mod build;
mod builder;
mod campaign;
mod check;
mod db;
mod estimate;
mod events;
mod fmt;
mod run;
mod serve;
mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "flowc", version, about = "Toolchain for the .flow campaign language")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check .flow files (or folders of them) and report diagnostics.
    Check(check::Args),
    /// Compile a campaign to a program (JSON or binary).
    Compile(build::CompileArgs),
    /// Print a readable listing of a campaign's program (or of a compiled file).
    Dis(build::Source),
    /// Draw a campaign as SVG, DOT or Mermaid.
    Graph(build::GraphArgs),
    /// Show how the steps of one version of a campaign map onto another.
    Diff(build::DiffArgs),
    /// Run a campaign on the embedded store with the simulated provider.
    Run(run::RunArgs),
    /// Manage the contacts in the database.
    #[command(subcommand)]
    Contacts(run::ContactsCmd),
    /// Store contact events in the database.
    #[command(subcommand)]
    Events(events::EventsCmd),
    /// Launch, pause, resume and inspect campaigns in a database.
    #[command(subcommand)]
    Campaign(campaign::CampaignCmd),
    /// The prepaid balance.
    #[command(subcommand)]
    Balance(campaign::BalanceCmd),
    /// Format .flow files in the one canonical layout.
    Fmt(fmt::FmtArgs),
    /// Export a campaign as the dashboard's builder timeline JSON.
    Export(builder::ExportArgs),
    /// Import builder timeline JSON as formatted .flow source.
    Import(builder::ImportArgs),
    /// Audience size, reach per step and projected cost before launch.
    Estimate(estimate::EstimateArgs),
    /// Serve the REST API, with the interpreter in the same process.
    Serve(serve::ServeArgs),
    /// Run the due work of every RUNNING campaign until stopped (on
    /// PostgreSQL, any number of workers share it).
    Worker(worker::WorkerArgs),
    /// The language server, over stdio.
    Lsp,
    /// Explain a diagnostic code with a wrong and a right example.
    Explain {
        /// A code such as `unknown-template`.
        code: String,
    },
}

/// `--db`, shared by every command that opens the database.
#[derive(clap::Args)]
pub struct DbArg {
    /// The database: a SQLite file, or a PostgreSQL URL
    /// (`postgres://user@host/db`). Default: FLOWC_DATABASE_URL, else
    /// `database` in flowc.toml, else flowc.db.
    #[arg(long = "db", value_name = "PATH|URL")]
    db: Option<String>,
}

impl DbArg {
    /// The flag, else `FLOWC_DATABASE_URL`, else the `database` of the
    /// `flowc.toml` that applies to `near` (the command's .flow file; the
    /// current folder when `None`), else `flowc.db`.
    pub fn resolve(&self, near: Option<&std::path::Path>) -> Result<db::Database, Fatal> {
        if let Some(db) = &self.db {
            return db::Database::parse(db);
        }
        if let Some(url) = std::env::var(db::ENV).ok().filter(|v| !v.is_empty()) {
            return db::Database::parse(&url);
        }
        let config = settings(near)?;
        match config.database {
            Some(path) => db::Database::parse(&path.to_string_lossy()),
            None => Ok(db::Database::File(run::DEFAULT_DB.into())),
        }
    }
}

/// The `flowc.toml` that applies to `near` (a file or folder the command was
/// given; the current folder when `None`).
pub fn settings(near: Option<&std::path::Path>) -> Result<flowc::config::Config, Fatal> {
    flowc::config::load(near.unwrap_or(std::path::Path::new("."))).map_err(Fatal)
}

/// What a command returns; `main` maps it to the documented exit codes.
pub enum Outcome {
    Ok,
    Findings,
    /// A run that ended with its campaign paused (balance, provider
    /// outage, by hand): not a failure to run, but not done either. Exit 3.
    Paused,
}

/// A failure to run: bad arguments, unreadable input. Exit code 2.
pub struct Fatal(pub String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Fatal {
        Fatal(e.to_string())
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            // `--help` into a closed pipe is the same quiet stop as any output.
            return match e.print() {
                Err(io) if io.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(out::CLOSED),
                _ => ExitCode::from(code),
            };
        }
    };
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Compile(a) => build::compile_cmd(a),
        Command::Dis(a) => build::dis_cmd(a),
        Command::Graph(a) => build::graph_cmd(a),
        Command::Diff(a) => build::diff_cmd(a),
        Command::Run(a) => run::run_cmd(a),
        Command::Contacts(c) => run::contacts_cmd(c),
        Command::Events(c) => events::events_cmd(c),
        Command::Campaign(c) => campaign::campaign_cmd(c),
        Command::Balance(c) => campaign::balance_cmd(c),
        Command::Fmt(a) => fmt::run(a),
        Command::Export(a) => builder::export(a),
        Command::Import(a) => builder::import(a),
        Command::Estimate(a) => estimate::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Worker(a) => worker::run(a),
        Command::Lsp => match flowc::lsp::run(lsp_databases()) {
            Ok(flowc::lsp::Exit::AfterShutdown) => Ok(Outcome::Ok),
            // The protocol's exit code 1 for `exit` without `shutdown`.
            Ok(flowc::lsp::Exit::WithoutShutdown) => Ok(Outcome::Findings),
            Err(e) => Err(Fatal(e)),
        },
        Command::Explain { code } => explain(&code),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Ok(Outcome::Paused) => ExitCode::from(3),
        Err(Fatal(msg)) => {
            errln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn explain(code: &str) -> Result<Outcome, Fatal> {
    let Some(c) = flowc::diag::Code::parse(code) else {
        let all: Vec<&str> = flowc::diag::Code::ALL.iter().map(|c| c.as_str()).collect();
        let hint = flowc::suggest::help(code, all.iter().copied()).map(|h| format!(" ({h})")).unwrap_or_default();
        return Err(Fatal(format!("unknown diagnostic code `{code}`{hint}; the codes are: {}", all.join(", "))));
    };
    out!("{}", flowc::check::explain::render(c));
    Ok(Outcome::Ok)
}

/// Colour only for a terminal, and never under NO_COLOR.
pub fn use_color(choice: ColorChoice) -> bool {
    use std::io::IsTerminal;
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// How `flowc lsp` opens a workspace's database for its reach lenses: an
/// SQLite file that exists, read-only (the editor never creates or locks
/// one); anything else shows no lens.
fn lsp_databases() -> flowc::lsp::reach::Opener {
    std::sync::Arc::new(|path: &std::path::Path| {
        if !path.is_file() {
            return None;
        }
        flowc::runtime::sqlite::SqliteStore::open_as(path, flowc::runtime::sqlite::OpenMode::ReadOnly)
            .ok()
            .map(|s| Box::new(s) as Box<dyn flowc::runtime::store::Store>)
    })
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_hide_set() || id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                found.push(format!("`{path}` argument `{id}` has no help line"));
            }
            // One spelling for the shape of output across commands.
            if ["report", "json", "emit", "output_format"].contains(&id) {
                found.push(format!("`{path}` spells its output format `--{id}`; use `--format`"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                found.push(format!("`{p}` has no description"));
            }
            walk(sub, &p, found);
        }
    }

    #[test]
    fn every_argument_has_a_help_line_and_formats_are_spelled_alike() {
        let mut found = Vec::new();
        walk(&Cli::command(), "flowc", &mut found);
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn old_format_spellings_still_parse() {
        for args in [
            &["flowc", "run", "x.flow", "--report", "json"][..],
            &["flowc", "compile", "x.flow", "--emit", "binary", "-o", "x.bin"],
            &["flowc", "campaign", "status", "c", "--json"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }
}
