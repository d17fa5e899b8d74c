//! The editor packages through real third-party tools:
//! - `flowc lsp` driven by pytest-lsp with the recorded capabilities of VS Code
//!   and Neovim (tests/editors/test_flowc_lsp.py);
//! - the TextMate grammar under vscode-tmgrammar-test: scope assertions
//!   (editors/vscode/tests/grammar) and snapshots of every example
//!   (editors/vscode/tests/snap, `UPDATE_EXPECT=1` to accept changes);
//! - `npm run package` producing a `.vsix` that holds the extension.
//!
//! The tools are installed by tests/editors/setup.sh (which `.ci/run` runs
//! first, and which these tests run themselves when needed). Under `CI` a
//! failed install fails the tests; elsewhere (say, offline) they are skipped
//! with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Whether the tools are there; installs them once per test binary.
fn tools() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(common::root().join("tests/editors/setup.sh"))
            .output()
            .map_err(|e| format!("cannot run setup.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tests/editors/setup.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match ready {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
        Err(e) => {
            eprintln!("SKIPPED: editor tools unavailable ({e}); `bash tests/editors/setup.sh` installs them");
            false
        }
    }
}

fn vscode_dir() -> PathBuf {
    common::root().join("editors/vscode")
}

fn bin(name: &str) -> PathBuf {
    vscode_dir().join("node_modules/.bin").join(name)
}

#[track_caller]
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{text}", out.status);
    text
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowc-editors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn flow_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    files.sort();
    files
}

#[test]
fn language_server_through_pytest_lsp_as_vscode_and_neovim() {
    if !tools() {
        return;
    }
    let python = common::root().join("target/editor-tools/venv/bin/python");
    let out = run(Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/editors"])
        .current_dir(common::root())
        .env("FLOWC_BIN", env!("CARGO_BIN_EXE_flowc")));
    // Both clients ran every test: a collection mistake must not pass as green.
    assert!(out.contains("16 passed"), "{out}");
}

#[test]
fn textmate_grammar_scope_assertions() {
    if !tools() {
        return;
    }
    let cases = flow_files(&vscode_dir().join("tests/grammar"));
    assert!(!cases.is_empty());
    let out = run(Command::new(bin("vscode-tmgrammar-test")).arg("tests/grammar/*.flow").current_dir(vscode_dir()));
    assert_eq!(out.matches("run successfuly").count(), cases.len(), "{out}");
}

#[test]
fn textmate_grammar_snapshots_of_every_example() {
    if !tools() {
        return;
    }
    // The tool keeps `X.flow.snap` beside `X.flow`: work on copies so examples/ stays clean.
    let work = temp_dir("snap");
    let snaps = vscode_dir().join("tests/snap");
    let examples = flow_files(&common::root().join("examples"));
    for f in &examples {
        let name = f.file_name().expect("name");
        std::fs::copy(f, work.join(name)).expect("copy example");
        let snap = snaps.join(format!("{}.snap", name.to_string_lossy()));
        if snap.exists() {
            std::fs::copy(&snap, work.join(snap.file_name().expect("name"))).expect("copy snap");
        }
    }
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut cmd = Command::new(bin("vscode-tmgrammar-snap"));
    cmd.current_dir(vscode_dir()).args(["-g", "syntaxes/flow.tmLanguage.json", "-s", "source.flow"]);
    if update {
        cmd.arg("-u");
    }
    cmd.arg(work.join("*.flow"));
    let out = run(&mut cmd);
    for f in &examples {
        let name = format!("{}.snap", f.file_name().expect("name").to_string_lossy());
        let produced = work.join(&name);
        if update {
            std::fs::copy(&produced, snaps.join(&name)).expect("write snap");
        } else {
            assert!(snaps.join(&name).exists(), "no snapshot for {name}: run with UPDATE_EXPECT=1\n{out}");
        }
    }
    // Stale snapshots (of removed examples) would silently test nothing.
    for s in std::fs::read_dir(&snaps).expect("snaps").filter_map(|e| e.ok()) {
        let n = s.file_name().to_string_lossy().into_owned();
        assert!(
            examples.iter().any(|e| format!("{}.snap", e.file_name().unwrap_or_default().to_string_lossy()) == n),
            "stale snapshot {n}"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn vscode_extension_packages_to_a_vsix() {
    if !tools() {
        return;
    }
    let work = temp_dir("vsix");
    let vsix = work.join("flowc-flow.vsix");
    run(Command::new("npm").args(["run", "package", "--", "--out"]).arg(&vsix).current_dir(vscode_dir()));
    // A .vsix is a zip: list it with Python's zipfile (the venv is there) and
    // check the extension's manifest, grammar and client are inside.
    let python = common::root().join("target/editor-tools/venv/bin/python");
    let listing = run(Command::new(python)
        .args(["-c", "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))"])
        .arg(&vsix));
    for member in [
        "extension/package.json",
        "extension/extension.js",
        "extension/syntaxes/flow.tmLanguage.json",
        "extension/language-configuration.json",
        "extension.vsixmanifest",
    ] {
        assert!(listing.lines().any(|l| l == member), "{member} missing from the vsix:\n{listing}");
    }
    assert!(
        listing.lines().any(|l| l.starts_with("extension/node_modules/vscode-languageclient/")),
        "the client library is bundled"
    );
    assert!(!listing.contains("extension/tests/"), "test files are not shipped:\n{listing}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn language_server_through_headless_neovim() {
    // Neovim comes from Debian (`.ci/run` installs it); the package supports 0.7+.
    let has_nvim = Command::new("nvim").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_nvim {
        assert!(std::env::var_os("CI").is_none(), "nvim is not installed: .ci/run installs it with apt-get");
        eprintln!("SKIPPED: nvim is not installed (apt-get install neovim)");
        return;
    }
    let work = temp_dir("nvim");
    for f in flow_files(&common::root().join("examples")) {
        std::fs::copy(&f, work.join(f.file_name().expect("name"))).expect("copy example");
    }
    // A database named in flowc.toml, for the reach lens (issue 22), and
    // what `flowc estimate` says of the campaign as it is once fixed.
    std::fs::copy(common::root().join("examples/contacts.jsonl"), work.join("contacts.jsonl")).expect("contacts");
    std::fs::write(work.join("flowc.toml"), "database = \"reach.db\"\n").expect("flowc.toml");
    let flowc_in_work = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flowc")).args(args).current_dir(&work).output().expect("flowc");
        assert!(out.status.success(), "flowc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    flowc_in_work(&["contacts", "import", "contacts.jsonl", "--db", "reach.db", "--schema", "shared.flow"]);
    let estimate: serde_json::Value =
        serde_json::from_str(&flowc_in_work(&["estimate", "welcome.flow", "--db", "reach.db", "--format", "json"]))
            .expect("estimate json");
    let audience = estimate["audience"].as_u64().expect("audience");
    let lens = format!(
        "≈ {} contacts · €{:.2}",
        flowc::runtime::report::grouped(audience),
        estimate["cost"]["expected"].as_f64().expect("cost")
    );
    let welcome = work.join("welcome.flow");
    let text = std::fs::read_to_string(&welcome).expect("welcome");
    let typo = "hello: send email.marketing welcome_email";
    assert!(text.contains(typo), "the example changed: update the test");
    std::fs::write(&welcome, text.replace(typo, "hello: send email.marketing welcome_emial")).expect("write");
    let out = run(Command::new("nvim")
        .args(["--headless", "--clean", "-u", "NONE", "-c", "luafile tests/editors/nvim_session.lua"])
        .current_dir(common::root())
        .env("FLOWC_ROOT", common::root())
        .env("FLOWC_BIN", env!("CARGO_BIN_EXE_flowc"))
        .env("FLOWC_EXAMPLE", &welcome)
        .env("FLOWC_EXPECT_LENS", &lens)
        .env("HOME", &work)
        .env("XDG_STATE_HOME", &work)
        .env("XDG_DATA_HOME", &work)
        .stdin(std::process::Stdio::null()));
    assert!(out.contains("NVIM-OK"), "{out}");
    assert!(out.contains("ok: completion: offer_a,offer_b,welcome_email"), "{out}");
    assert!(out.contains(&format!("ok: code lens: {lens}")), "{out}");
    let _ = std::fs::remove_dir_all(&work);
}
