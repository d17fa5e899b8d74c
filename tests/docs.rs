//! The documentation stands alone and stays true: no reference to files
//! outside the repository, every relative link resolves, the diagnostic
//! table is the code's own, every command and flag of `--help` is
//! documented, every field of the run report is described, and the
//! examples in the docs check and import.
//!
//! `UPDATE_EXPECT=1 cargo test --test docs` rewrites the generated part of
//! `docs/diagnostics.md`, as it rewrites the golden files.

mod common;

use common::{flowc, TempDir};
use flowc::diag::Code;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The Markdown a user reads: README, ARCHITECTURE and every file in docs/.
fn user_docs() -> Vec<PathBuf> {
    let root = common::root();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(common::root()).unwrap_or(path).display().to_string()
}

// ------------------------------------------------------------ stand alone

#[test]
fn docs_cite_nothing_outside_the_repository() {
    let mut found = Vec::new();
    for file in user_docs() {
        for (i, line) in read(&file).lines().enumerate() {
            if line.contains("LANGUAGE.md") || line.contains('§') {
                found.push(format!("{}:{}: {line}", rel(&file), i + 1));
            }
        }
    }
    assert!(found.is_empty(), "the docs cite a file users do not have (LANGUAGE.md, §-numbers):\n{}", found.join("\n"));
}

/// Strings in the code reach users (help, errors, the OpenAPI document):
/// none may send them to a file they do not have.
#[test]
fn no_user_visible_string_cites_the_contract_file() {
    let mut found = Vec::new();
    let mut stack = vec![common::root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src folder").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            for (i, line) in read(&path).lines().enumerate() {
                let Some(at) = line.find("LANGUAGE.md") else { continue };
                // A comment is for readers of the code; anything else may be shown.
                if !line[..at].contains("//") {
                    found.push(format!("{}:{}: {}", rel(&path), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "user-visible strings cite LANGUAGE.md:\n{}", found.join("\n"));
}

/// Text outside fenced code blocks, line by line, with line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The targets of inline links `[text](target)` on one line.
fn links(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown file has (repeated headings get `-1`, `-2`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while out.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        out.insert(anchor);
    }
    out
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = common::root().canonicalize().expect("root");
    let mut broken = Vec::new();
    for file in user_docs() {
        let text = read(&file);
        for (line_no, line) in prose(&text) {
            for target in links(line) {
                if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let where_ = format!("{}:{line_no}: `{target}`", rel(&file));
                let dest = if path.is_empty() { file.clone() } else { file.parent().unwrap_or(&root).join(path) };
                let Ok(dest) = dest.canonicalize() else {
                    broken.push(format!("{where_}: no such file"));
                    continue;
                };
                if !dest.starts_with(&root) {
                    broken.push(format!("{where_}: outside the repository"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if dest.extension().is_some_and(|x| x == "md") && !anchors(&read(&dest)).contains(anchor) {
                        broken.push(format!("{where_}: no heading with anchor `#{anchor}`"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

// ------------------------------------------------------------ diagnostics

const GENERATED_START: &str = "<!-- generated from flowc::diag::Code::ALL by tests/docs.rs; UPDATE_EXPECT=1 cargo test --test docs rewrites it -->";
const GENERATED_END: &str = "<!-- end of generated part -->";

/// The table of every code, then each code's explanation: what `flowc
/// explain CODE` prints, as Markdown.
fn diagnostics_reference() -> String {
    let mut out = String::new();
    out.push_str("| code | severity | meaning |\n|---|---|---|\n");
    for code in Code::ALL {
        out.push_str(&format!(
            "| [`{code}`](#{}) | {} | {} |\n",
            slug(&format!("`{code}`")),
            code.default_severity().as_str(),
            code.summary().replace('|', "\\|")
        ));
    }
    for code in Code::ALL {
        let (story, wrong, right) = flowc::check::explain::explain(*code);
        out.push_str(&format!("\n### `{code}`\n\n{} — {}.\n\n{story}\n\nWrong:\n\n```text\n{wrong}\n```\n\nRight:\n\n```text\n{right}\n```\n", code.default_severity().as_str(), code.summary()));
    }
    out
}

#[test]
fn diagnostics_doc_is_the_codes_own_table() {
    let path = common::root().join("docs/diagnostics.md");
    let text = read(&path);
    let (Some(start), Some(end)) = (text.find(GENERATED_START), text.find(GENERATED_END)) else {
        panic!("docs/diagnostics.md must hold the markers\n{GENERATED_START}\n{GENERATED_END}");
    };
    let body_start = start + GENERATED_START.len() + 1;
    assert!(body_start <= end, "the generated part's markers are out of order");
    let expected = format!("\n{}\n", diagnostics_reference());
    let actual = &text[body_start - 1..end];
    if actual == expected {
        return;
    }
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let rewritten = format!("{}{expected}{}", &text[..body_start - 1], &text[end..]);
        std::fs::write(&path, rewritten).expect("write docs/diagnostics.md");
        return;
    }
    let first = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, e)| a != e)
        .unwrap_or(actual.lines().count().min(expected.lines().count()));
    panic!(
        "docs/diagnostics.md's generated part differs from flowc::diag::Code (UPDATE_EXPECT=1 cargo test --test docs to rewrite it); first difference at line {} of the part:\n- {}\n+ {}",
        first + 1,
        actual.lines().nth(first).unwrap_or("<none>"),
        expected.lines().nth(first).unwrap_or("<none>")
    );
}

#[test]
fn the_language_reference_points_at_every_diagnostic_and_explain() {
    let diags = read(&common::root().join("docs/diagnostics.md"));
    assert!(diags.contains("flowc explain"), "docs/diagnostics.md must mention `flowc explain CODE`");
    let lang = read(&common::root().join("docs/language.md"));
    assert!(
        lang.contains("(diagnostics.md)") || lang.contains("(diagnostics.md#"),
        "docs/language.md must link to docs/diagnostics.md"
    );
}

// ------------------------------------------------------------ commands

/// The names under `Commands:` in a `--help` text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags under `Options:` in a `--help` text (without --help and --version).
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Options:")
        .skip(1)
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').split(['=', '[', '<']).next().unwrap_or(w).to_string())
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

fn help_of(path: &[&str]) -> String {
    let mut args = path.to_vec();
    args.push("--help");
    let o = flowc(&args);
    assert!(o.status.success(), "flowc {} --help failed", path.join(" "));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every command as its words (`["campaign", "launch"]`), leaves only.
fn every_command() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for top in subcommands(&help_of(&[])) {
        let subs = subcommands(&help_of(&[&top]));
        if subs.is_empty() {
            out.push(vec![top]);
        } else {
            out.extend(subs.into_iter().map(|s| vec![top.clone(), s]));
        }
    }
    out
}

/// The rows of the table under README's `## Commands`.
fn readme_command_rows() -> Vec<String> {
    let text = read(&common::root().join("README.md"));
    text.lines()
        .skip_while(|l| l.trim() != "## Commands")
        .skip(1)
        .take_while(|l| !l.starts_with("## ") && !l.starts_with("### "))
        .filter(|l| l.starts_with('|'))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_command_table_lists_every_command() {
    let rows = readme_command_rows();
    assert!(rows.len() > 2, "README.md has no table under `## Commands`");
    let mut missing = Vec::new();
    for cmd in every_command() {
        let top = format!("flowc {}", cmd[0]);
        let listed = rows.iter().any(|row| {
            let first_cell = row.split(" | ").next().unwrap_or(row);
            first_cell.contains(&format!("`{top}")) && cmd.get(1).is_none_or(|sub| first_cell.contains(sub.as_str()))
        });
        if !listed {
            missing.push(cmd.join(" "));
        }
    }
    assert!(missing.is_empty(), "README's command table does not list: {}", missing.join(", "));
}

/// The sections of a Markdown file: (heading line, text up to the next heading).
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (_, line) in prose(text) {
        if line.starts_with('#') {
            out.push((line.to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// `text` names `flag` in code: "`--seed N`" names `--seed`, "`--seeds`" does not.
fn mentions_flag(text: &str, flag: &str) -> bool {
    let needle = format!("`{flag}");
    text.match_indices(&needle).any(|(at, _)| {
        text[at + needle.len()..].chars().next().is_some_and(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

#[test]
fn cli_doc_describes_every_command_and_flag() {
    let text = read(&common::root().join("docs/cli.md"));
    let sections = sections(&text);
    let mut missing = Vec::new();
    for cmd in every_command() {
        let name = format!("`flowc {}", cmd.join(" "));
        // `### `flowc campaign launch …`` or, for a group documented together, `### `flowc balance …``.
        let section = sections
            .iter()
            .find(|(h, _)| h.contains(&format!("{name}`")) || h.contains(&format!("{name} ")))
            .or_else(|| sections.iter().find(|(h, _)| cmd.len() > 1 && h.contains(&format!("`flowc {}`", cmd[0]))));
        let Some((_, body)) = section else {
            missing.push(format!("a section headed {name}`"));
            continue;
        };
        let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
        for flag in long_flags(&help_of(&words)) {
            if !mentions_flag(body, &flag) {
                missing.push(format!("flowc {}: `{flag}`", cmd.join(" ")));
            }
        }
    }
    assert!(missing.is_empty(), "docs/cli.md does not describe:\n{}", missing.join("\n"));
}

#[test]
fn exit_codes_are_documented_where_users_look() {
    for file in ["README.md", "docs/cli.md"] {
        let text = read(&common::root().join(file));
        for code in ["**0**", "**1**", "**2**", "**3**", "**141**"] {
            assert!(text.contains(code), "{file} does not document exit code {code}");
        }
    }
}

// ------------------------------------------------------------ run report

/// Every object key in a JSON value, except the keys that are data (A/B
/// test and variant names).
fn keys(v: &serde_json::Value, parent: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if parent != "ab_tests" && parent != "ab_test" {
                    out.insert(k.clone());
                }
                keys(x, if parent == "ab_tests" { "ab_test" } else { k }, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| keys(x, parent, out)),
        _ => {}
    }
}

#[test]
fn every_field_of_the_json_run_report_is_documented() {
    let tmp = TempDir::new("docs-report");
    let db = tmp.path("report.db");
    let o = flowc(&["run", "examples/welcome.flow", "--db", &db, "--report", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("report is JSON");
    let mut found = BTreeSet::new();
    keys(&report, "", &mut found);
    assert!(found.contains("provider") && found.contains("entered"), "unexpected report: {report}");
    let doc = read(&common::root().join("docs/cli.md"));
    let missing: Vec<&String> = found.iter().filter(|k| !doc.contains(&format!("`{k}`"))).collect();
    assert!(missing.is_empty(), "docs/cli.md does not describe these fields of `flowc run --report json`: {missing:?}");
    // The step kinds the report names are described too.
    for step in report["steps"].as_array().expect("steps") {
        let kind = step["kind"].as_str().expect("kind");
        assert!(doc.contains(&format!("`{kind}`")), "docs/cli.md does not describe the step kind `{kind}`");
    }
}

// ------------------------------------------------------------ examples

/// The fenced blocks of one language in a Markdown file.
fn fenced(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```") && fence[3..].trim() == lang => current = Some((i + 1, String::new())),
            Some(_) if fence.starts_with("```") => out.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Every ```flow block of the language reference is a whole file that checks
/// without errors: the examples show the language as flowc implements it.
#[test]
fn language_reference_examples_check() {
    let text = read(&common::root().join("docs/language.md"));
    let blocks = fenced(&text, "flow");
    assert!(blocks.len() >= 5, "docs/language.md has only {} ```flow examples", blocks.len());
    let mut failures = Vec::new();
    for (line, block) in blocks {
        let (analysis, ws) = common::check_source(&block);
        let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).cloned().collect();
        if !errors.is_empty() {
            failures.push(format!("docs/language.md:{line}:\n{}", common::human(&errors, &ws.sources)));
        }
    }
    assert!(failures.is_empty(), "examples that do not check:\n{}", failures.join("\n"));
}

/// The contacts format's examples import as they are, against the schema
/// the same page declares.
#[test]
fn contacts_doc_examples_import() {
    let text = read(&common::root().join("docs/contacts.md"));
    let schema = fenced(&text, "flow");
    let jsonl = fenced(&text, "jsonl");
    let csv = fenced(&text, "csv");
    assert!(
        schema.len() == 1 && !jsonl.is_empty() && !csv.is_empty(),
        "docs/contacts.md needs one ```flow schema and ```jsonl and ```csv examples"
    );
    let tmp = TempDir::new("docs-contacts");
    let flow = tmp.path("schema.flow");
    std::fs::write(&flow, &schema[0].1).expect("write schema");
    for (ext, blocks) in [("jsonl", jsonl), ("csv", csv)] {
        for (line, block) in blocks {
            let file = tmp.path(&format!("contacts-{line}.{ext}"));
            std::fs::write(&file, &block).expect("write contacts");
            let db = tmp.path(&format!("contacts-{line}.db"));
            let o = flowc(&["contacts", "import", &file, "--schema", &flow, "--db", &db]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "docs/contacts.md:{line} does not import:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
