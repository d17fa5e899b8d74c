//! Tidy: the invariants ARCHITECTURE.md states as absences, checked by reading
//! the source as text (like rust-analyzer's tidy). Each test names the rule
//! it keeps; an allow-list may only shrink.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every `.rs` file under `src/`, as (path relative to `src/`, text).
/// `TIDY_SRC` points the checks at another tree (to see them fail on an old one).
fn sources() -> Vec<(String, String)> {
    let src = std::env::var_os("TIDY_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut pending = vec![src.clone()];
    let mut out = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).expect("read source")));
            }
        }
    }
    out.sort();
    out
}

/// The text before the file's `#[cfg(test)]` module (test modules are the last
/// item of their file: `test_modules_come_last` keeps that true), without
/// line comments, so a doc comment may name what the code may not use.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or_default();
    body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The top-level module a file belongs to: `check` for `check/expr.rs`,
/// `config` for `config.rs`.
fn top(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs")
}

/// The crate paths a file names, first two segments: `check::model`,
/// `syntax::print`. The binary names the library `flowc::`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "flowc::"] {
        for (i, _) in code.match_indices(prefix) {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).take(2).collect();
            out.push(segs.join("::"));
        }
    }
    out
}

/// "Each layer only knows the ones before it": text → syntax → check (model)
/// → compile (program) → runtime → store; the leaves (`source`, `files`,
/// `limits`, `suggest`) and `diag` below everything; the tools (`fmt`,
/// `builder`) on the syntax layer; the applications (`service`, `lsp`,
/// `config`, the binary) on top. For each module, the crate modules its
/// non-test code may name.
const LAYERS: &[(&str, &[&str])] = &[
    ("source", &[]),
    ("files", &[]),
    ("limits", &[]),
    ("suggest", &[]),
    ("diag", &["source"]),
    ("syntax", &["source", "diag", "limits", "suggest"]),
    ("workspace", &["source", "diag", "files", "syntax"]),
    ("check", &["source", "diag", "limits", "suggest", "syntax", "workspace"]),
    ("fmt", &["source", "syntax"]),
    ("builder", &["source", "syntax", "fmt"]),
    // `check` means `check::model` only (`compile_reads_only_the_model`);
    // `syntax` only in the presentation module `dis`.
    ("compile", &["source", "limits", "check", "syntax"]),
    // `check` means `check::model` only (`runtime_reads_only_the_model`);
    // `files` for the bounded read of the estimate cache beside a database.
    ("runtime", &["source", "files", "limits", "suggest", "check", "compile"]),
    ("config", &["diag", "files", "suggest", "workspace", "check"]),
    ("service", &["source", "limits", "suggest", "check", "compile", "runtime"]),
    // `compile` and `runtime` for reach and cost (`lsp::reach`), through the
    // estimate's public functions.
    (
        "lsp",
        &["source", "diag", "limits", "suggest", "syntax", "workspace", "check", "config", "fmt", "compile", "runtime"],
    ),
];

#[test]
fn each_layer_only_knows_the_ones_before_it() {
    let mut bad = Vec::new();
    for (rel, text) in sources() {
        let module = top(&rel);
        if matches!(module, "lib" | "main" | "cli") {
            continue; // the crate root and the binary see everything
        }
        let Some((_, allowed)) = LAYERS.iter().find(|(m, _)| *m == module) else {
            bad.push(format!("{rel}: module `{module}` is not in tidy's LAYERS table; place it in a layer"));
            continue;
        };
        for path in crate_paths(&code(&text)) {
            let used = path.split("::").next().unwrap_or_default();
            if used != module && !allowed.contains(&used) {
                bad.push(format!("{rel}: `{module}` names `{path}`"));
            }
        }
    }
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn syntax_knows_nothing_of_the_checker() {
    let bad: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, text)| rel.starts_with("syntax/") && code(text).contains("crate::check"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(bad.is_empty(), "`crate::check` under src/syntax: {bad:?}");
}

/// The presentation modules of `compile` that may build syntax trees and print
/// them through `syntax::print` (the one printer of expressions): `dis` prints
/// conditions as `.flow` text. Everything else in `compile` reads only the
/// checked model.
const COMPILE_PRESENTATION: &[&str] = &["compile/dis.rs"];

#[test]
fn compile_reads_only_the_model() {
    let mut bad = Vec::new();
    for (rel, text) in sources().into_iter().filter(|(rel, _)| top(rel) == "compile") {
        for path in crate_paths(&code(&text)) {
            let ok = match path.split("::").next().unwrap_or_default() {
                "check" => path == "check::model",
                "syntax" => {
                    COMPILE_PRESENTATION.contains(&rel.as_str()) && (path == "syntax::ast" || path == "syntax::print")
                }
                _ => true,
            };
            if !ok {
                bad.push(format!("{rel}: {path}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "compile reads only check::model (dis may print through the syntax layer):\n{}",
        bad.join("\n")
    );
}

#[test]
fn runtime_reads_only_the_model() {
    // The runtime reads the checked model's schema types (declared contact
    // fields, channels, events) for imports and the API; it never runs the
    // checker or the front end.
    let mut bad = Vec::new();
    for (rel, text) in sources().into_iter().filter(|(rel, _)| matches!(top(rel), "runtime")) {
        for path in crate_paths(&code(&text)) {
            if path.starts_with("check") && path != "check::model" {
                bad.push(format!("{rel}: {path}"));
            }
        }
    }
    assert!(bad.is_empty(), "the runtime reads only check::model:\n{}", bad.join("\n"));
}

/// The store's own modules: `SqliteStore` (`runtime/sqlite.rs`) and its
/// submodules (`runtime/sqlite/`: the condition compiler, the estimate's
/// queries), `PgStore` (`runtime/postgres.rs`) and its submodules
/// (`runtime/postgres/`: schema, claims, a round's commit). Only they may
/// name a database client or reach for the raw connection; everything else
/// goes through `store::Store`. Benches and tests (outside `src/`) may take
/// `connection()` to measure or corrupt SQLite itself.
fn is_the_store(rel: &str) -> bool {
    rel == "runtime/sqlite.rs"
        || rel.starts_with("runtime/sqlite/")
        || rel == "runtime/postgres.rs"
        || rel.starts_with("runtime/postgres/")
}

/// Whether `code` names the `postgres` client crate: a path that starts
/// with it (`postgres::Client`, `::postgres::NoTls`), not the store's module
/// (`runtime::postgres::PgStore`) nor another crate (`tokio_postgres::`).
fn names_the_postgres_crate(code: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices("postgres::").any(|(i, _)| {
        let before = &code[..i];
        match before.strip_suffix("::") {
            Some(parent) => !parent.ends_with(ident),
            None => !before.ends_with(ident),
        }
    })
}

#[test]
fn sqlite_only_behind_the_store() {
    let mut bad = Vec::new();
    for (rel, text) in sources().into_iter().filter(|(rel, _)| !is_the_store(rel)) {
        let code = code(&text);
        if code.contains("rusqlite") {
            bad.push(format!("{rel}: names rusqlite outside the store"));
        }
        if names_the_postgres_crate(&code) {
            bad.push(format!("{rel}: names the postgres crate outside the store"));
        }
        if code.contains(".connection()") {
            bad.push(format!("{rel}: takes the store's raw connection"));
        }
    }
    assert!(bad.is_empty(), "only the store knows SQL (go through `store::Store`):\n{}", bad.join("\n"));
}

/// The runtime and the service take any `Store`: only the commands (`cli`)
/// choose and open a store implementation, so another backend runs the same
/// engine, API and runner.
#[test]
fn only_the_commands_choose_a_store() {
    let bad: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, _)| !is_the_store(rel) && top(rel) != "cli")
        .filter(|(_, text)| code(text).contains("SqliteStore") || code(text).contains("PgStore"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        bad.is_empty(),
        "names `SqliteStore` or `PgStore` outside the store and `cli` (take `&mut dyn Store`): {bad:?}"
    );
}

#[test]
fn the_store_is_the_sqlite_and_postgres_modules_and_their_children() {
    assert!(is_the_store("runtime/sqlite.rs"));
    assert!(is_the_store("runtime/sqlite/segment.rs"));
    assert!(is_the_store("runtime/postgres.rs"));
    assert!(is_the_store("runtime/postgres/round.rs"));
    assert!(!is_the_store("runtime/postgres_extra.rs"));
    assert!(!is_the_store("runtime/sql.rs"));
    assert!(!is_the_store("runtime/sqlite_extra.rs"));
    assert!(!is_the_store("cli/estimate.rs"));
    assert!(names_the_postgres_crate("use postgres::Client;"));
    assert!(names_the_postgres_crate("let c = ::postgres::NoTls;"));
    assert!(!names_the_postgres_crate("use flowc::runtime::postgres::PgStore;"));
    assert!(!names_the_postgres_crate("tokio_postgres::connect"));
}

#[test]
fn only_lsp_knows_the_protocol_crates() {
    let bad: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, text)| !rel.starts_with("lsp/") && (text.contains("lsp_types") || text.contains("lsp_server")))
        .map(|(rel, _)| rel)
        .collect();
    assert!(bad.is_empty(), "lsp_types/lsp_server outside src/lsp: {bad:?}");
}

#[test]
fn only_render_formats_diagnostics() {
    // A `help:` line or miette outside `diag` is a second idea of how a
    // diagnostic looks.
    let bad: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, text)| {
            let code = code(text);
            !rel.starts_with("diag/")
                && (code.contains("\"help: ")
                    || code.contains("\\nhelp:")
                    || code.contains("help: {")
                    || code.contains("miette"))
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(bad.is_empty(), "diagnostics formatted outside diag::render: {bad:?}");
}

/// `.unwrap()` / `.expect(` in non-test code: how many each file may have,
/// and why each cannot fail on outside input. This list may only shrink.
const PANICS: &[(&str, usize, &str)] =
    &[("syntax/build.rs", 1, "`next`: the grammar guarantees the child; absence is a flowc bug, never input")];

#[test]
fn no_unwrap_outside_tests() {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (rel, text) in sources() {
        // A `tests.rs` is a `#[cfg(test)] mod tests;` of its own: all test code.
        if rel.ends_with("/tests.rs") {
            continue;
        }
        let code = code(&text);
        let n = code.matches(".unwrap()").count() + code.matches(".expect(").count();
        if n > 0 {
            counts.insert(rel, n);
        }
    }
    let allowed: BTreeMap<String, usize> = PANICS.iter().map(|(f, n, _)| (f.to_string(), *n)).collect();
    assert_eq!(counts, allowed, "unwrap/expect outside tests differ from the allow-list (a new one needs a reason there; a removed one leaves the list)");
}

/// Functions that may take a `bool`: the conversions into the enum the code
/// passes on from a command-line flag (`from_flag`) or from the persisted
/// program's `Op::Tag { add }` (`of_op`), serde's visitor callback, and
/// mimalloc's `mi_collect`, whose signature is the C library's.
const BOOL_PARAMETERS: &[&str] = &["from_flag", "of_op", "visit_bool", "mi_collect"];

/// The functions of `code` with a `bool` parameter, by name. Reads each
/// signature from `fn name(` to its closing parenthesis, across lines.
fn functions_with_bool_parameters(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("fn ") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + 3..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let Some(open) = rest.find('(') else { continue };
        if rest[name.len()..open].contains(['{', ';']) {
            continue;
        }
        let mut depth = 0usize;
        let mut params = "";
        for (j, c) in rest[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        params = &rest[open + 1..open + j];
                        break;
                    }
                }
                _ => {}
            }
        }
        let takes_bool = params.split(',').any(|p| p.split_once(':').is_some_and(|(_, ty)| ty.trim() == "bool"));
        if takes_bool && !BOOL_PARAMETERS.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out
}

/// STYLE.md: no boolean parameters; a flag that changes what a function does
/// is an enum whose variants say it at the call site.
#[test]
fn no_boolean_parameters() {
    let bad: Vec<String> = sources()
        .iter()
        .flat_map(|(rel, text)| {
            functions_with_bool_parameters(&code(text)).into_iter().map(move |f| format!("{rel}: fn {f}"))
        })
        .collect();
    assert!(bad.is_empty(), "functions with a bool parameter (use an enum): {bad:#?}");
}

#[test]
fn the_bool_parameter_reader_sees_signatures_across_lines() {
    let code = "fn a(x: bool) {}\nfn b(\n    y: &str,\n    z: bool,\n) -> u8 {}\nfn c(f: &dyn Fn(bool) -> bool) {}\nfn d(v: Vec<bool>) {}";
    assert_eq!(functions_with_bool_parameters(code), ["a", "b"]);
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let bad: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.lines().next().is_some_and(|l| l.starts_with("//! ") && l.len() > 5))
        .map(|(rel, _)| rel)
        .collect();
    assert!(bad.is_empty(), "modules without a `//!` first line: {bad:?}");
}

#[test]
fn test_modules_come_last() {
    // `code` cuts each file at `#[cfg(test)]`; that is only sound when the
    // test module is the file's last item.
    let mut bad = Vec::new();
    for (rel, text) in sources() {
        let mut parts = text.split("#[cfg(test)]");
        let _ = parts.next();
        let tail: Vec<&str> = parts.collect();
        if tail.len() > 1 {
            bad.push(format!("{rel}: more than one #[cfg(test)]"));
        }
        if let Some(t) = tail.first() {
            let col0: Vec<&str> = t.lines().filter(|l| l.starts_with(|c: char| !c.is_whitespace())).collect();
            // Either the module inline, or `mod tests;` in a file of its own.
            let outlined = col0.len() == 1 && col0[0].starts_with("mod ") && col0[0].ends_with(';');
            if !outlined && (col0.len() != 2 || !col0[0].starts_with("mod ") || col0[1] != "}") {
                bad.push(format!("{rel}: the #[cfg(test)] module is not the last item"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_crate_paths_reader_sees_uses_and_calls() {
    let text = "use crate::check::model::{A, B};\nlet x = crate::syntax::print::percent(1);\nmy_crate::x();";
    assert_eq!(crate_paths(text), ["check::model", "syntax::print"]);
    assert_eq!(top("check/expr.rs"), "check");
    assert_eq!(top("config.rs"), "config");
    assert!(!code("a\n// crate::check\nb").contains("check"));
}

/// The console (`src/service/console/`, its script and stylesheet too)
/// reads through the `Store` and holds no SQL; its script writes text,
/// never markup (`innerHTML` and its kin would parse names from `.flow`
/// files and contacts as HTML); its pages have no inline script, style or
/// event handler (the Content-Security-Policy forbids them anyway).
#[test]
fn the_console_holds_no_sql_and_writes_no_markup_from_script() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/service/console");
    let mut pending = vec![dir.clone()];
    let mut bad = Vec::new();
    let mut seen = 0;
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read console dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            seen += 1;
            let rel = path.strip_prefix(&dir).expect("under console").display().to_string();
            let text = std::fs::read_to_string(&path).expect("read console file");
            let text = if rel.ends_with(".rs") { code(&text) } else { text };
            // The store's SQL is written in capitals; prose in lower case is not SQL.
            for sql in ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE", " WHERE ", "rusqlite"] {
                if text.contains(sql) {
                    bad.push(format!("{rel}: SQL (`{}`)", sql.trim()));
                }
            }
            for markup in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
                if text.contains(markup) {
                    bad.push(format!("{rel}: `{markup}`"));
                }
            }
            if rel.ends_with(".rs") {
                for inline in ["<script>", " style=\\\"", " onclick=", " onload=", " onerror=", "javascript:"] {
                    if text.contains(inline) {
                        bad.push(format!("{rel}: inline `{}`", inline.trim()));
                    }
                }
            }
        }
    }
    assert!(seen >= 4, "the console's files were not found under {}", dir.display());
    assert!(bad.is_empty(), "the console:\n{}", bad.join("\n"));
}
