//! The workspace boundary, end to end through the built binary: one root
//! however a path is spelled, symlinks that lead out of it, and inputs that
//! are not regular files (devices, FIFOs) or are too large.

mod common;

use common::TempDir;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs flowc in `dir`. A run that takes longer than a minute is killed and
/// fails the test: a FIFO or a device must never block a command.
fn flowc_in(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flowc");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("`flowc {}` did not finish within 60 s: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Everything the command printed, both streams, as words: a message
/// wrapped over several lines of a report still reads as one.
fn text(o: &Output) -> String {
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    all.split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ")
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("dir");
    }
    std::fs::write(path, text).expect("write");
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().expect("mkfifo").success();
    assert!(ok, "mkfifo {}", path.display());
}

const SHARED: &str = "template hello { channel email message marketing status published }\n";
const C5: &str = "import \"../shared.flow\"\ncampaign c5 {\n  trigger manual\n  send email.marketing hello\n}\n";

/// ws/shared.flow and ws/sub/c5.flow, which imports `../shared.flow`.
fn layout(name: &str) -> TempDir {
    let t = TempDir::new(name);
    write(&t.0.join("ws/shared.flow"), SHARED);
    write(&t.0.join("ws/sub/c5.flow"), C5);
    std::fs::create_dir_all(t.0.join("ws/other")).expect("dir");
    t
}

/// Every spelling of `ws/sub/c5.flow`, from several folders, with every
/// command that reads it: (folder to run in, arguments).
fn spellings(ws: &Path) -> Vec<(std::path::PathBuf, Vec<String>)> {
    let sub = ws.join("sub");
    let abs = sub.join("c5.flow").to_string_lossy().into_owned();
    let mut runs = Vec::new();
    for cmd in ["check", "compile", "dis", "graph"] {
        let with = |dir: &Path, file: &str| (dir.to_path_buf(), vec![cmd.to_string(), file.to_string()]);
        runs.push(with(&sub, "c5.flow"));
        runs.push(with(&sub, "./c5.flow"));
        runs.push(with(&sub, &abs));
        runs.push(with(ws, "sub/c5.flow"));
        runs.push(with(ws, "./sub/../sub/c5.flow"));
        runs.push(with(&ws.join("other"), "../sub/c5.flow"));
    }
    runs.push((sub.clone(), vec!["check".into(), ".".into()]));
    runs.push((sub.clone(), vec!["check".into()]));
    runs.push((ws.to_path_buf(), vec!["check".into(), "sub".into()]));
    runs.push((ws.to_path_buf(), vec!["check".into(), "sub/".into()]));
    runs.push((ws.to_path_buf(), vec!["export".into(), "sub/c5.flow".into()]));
    runs
}

#[test]
fn every_spelling_of_a_file_has_the_same_workspace_root() {
    let t = layout("ws-spellings");
    let ws = t.0.join("ws");
    // Without flowc.toml the root is the file's folder (`sub`): `../shared.flow` leaves it.
    for (dir, args) in spellings(&ws) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = flowc_in(&dir, &args);
        if args[0] == "export" {
            // export reads the one file, not its imports.
            assert_eq!(code(&o), 0, "{args:?} in {}: {}", dir.display(), text(&o));
            continue;
        }
        assert_eq!(code(&o), 1, "{args:?} in {}: {}", dir.display(), text(&o));
        assert!(
            text(&o).contains("import-error") && text(&o).contains("outside the workspace"),
            "{args:?} in {}: {}",
            dir.display(),
            text(&o)
        );
    }
    // A flowc.toml above marks the root for every spelling and every command.
    write(&ws.join("flowc.toml"), "");
    for (dir, args) in spellings(&ws) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = flowc_in(&dir, &args);
        assert_eq!(code(&o), 0, "{args:?} in {}: {}", dir.display(), text(&o));
    }
    let o = flowc_in(&ws, &["check", "."]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("checked 2 files"), "{}", text(&o));
}

#[test]
fn a_folder_given_is_the_root_of_the_files_in_it() {
    let t = layout("ws-folder");
    let ws = t.0.join("ws");
    // `check .` from ws: ws is the root, so `../shared.flow` from sub/ stays inside.
    let o = flowc_in(&ws, &["check", "."]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = flowc_in(&t.0, &["check", "ws"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // A nested flowc.toml makes its folder the root of the files under it, as
    // it is when those files are named one by one.
    write(&ws.join("sub/flowc.toml"), "");
    let o = flowc_in(&ws, &["check", "."]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("outside the workspace"), "{}", text(&o));
    let o = flowc_in(&ws, &["compile", "sub/c5.flow"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
}

const SECRET: &str = "root:x:0:0:SECRET-FIRST-LINE:/root:/bin/bash\n";

#[test]
fn symlinks_out_of_the_workspace_are_refused_without_reading_the_target() {
    let t = TempDir::new("ws-symlinks");
    let ws = t.0.join("ws");
    let outside = t.0.join("outside");
    write(&outside.join("passwd"), SECRET);
    write(&outside.join("lib/x.flow"), SECRET);
    write(&ws.join("inside/real.flow"), SHARED);
    std::os::unix::fs::symlink(outside.join("passwd"), ws.join("pw.flow")).expect("link");
    std::os::unix::fs::symlink(outside.join("lib"), ws.join("lib")).expect("link");
    std::os::unix::fs::symlink(ws.join("inside/real.flow"), ws.join("alias.flow")).expect("link");
    write(&ws.join("a.flow"), "import \"pw.flow\"\n");
    write(&ws.join("b.flow"), "import \"lib/x.flow\"\n");
    write(
        &ws.join("c.flow"),
        "import \"alias.flow\"\ncampaign c {\n  trigger manual\n  send email.marketing hello\n}\n",
    );
    write(&ws.join("flowc.toml"), "");

    for (file, link) in [("a.flow", "pw.flow"), ("b.flow", "lib/x.flow")] {
        let o = flowc_in(&ws, &["check", file]);
        assert_eq!(code(&o), 1, "{}", text(&o));
        let out = text(&o);
        assert!(
            out.contains("import-error") && out.contains(&format!("`{link}`")) && out.contains("outside the workspace"),
            "{out}"
        );
        assert!(!out.contains("SECRET"), "the target's contents must not be shown: {out}");
    }
    // A link that stays inside the workspace is followed.
    let o = flowc_in(&ws, &["check", "c.flow"]);
    assert_eq!(code(&o), 0, "{}", text(&o));

    // A root that is such a link is refused too, named or found in a folder.
    for args in [vec!["check", "pw.flow"], vec!["check", "."], vec!["fmt", "--check", "pw.flow"]] {
        let o = flowc_in(&ws, &args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
        assert!(text(&o).contains("outside the workspace"), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("SECRET"), "{args:?}: {}", text(&o));
    }
    // fmt never writes through a link out of the workspace.
    let _ = flowc_in(&ws, &["fmt", "pw.flow"]);
    assert_eq!(std::fs::read_to_string(outside.join("passwd")).expect("read"), SECRET);
}

#[test]
fn devices_fifos_and_oversized_files_are_refused_at_once() {
    let t = TempDir::new("ws-kinds");
    let ws = t.0.join("ws");
    write(&ws.join("flowc.toml"), "");
    std::os::unix::fs::symlink("/dev/zero", ws.join("zero.flow")).expect("link");
    mkfifo(&ws.join("fifo.flow"));
    let big = std::fs::File::create(ws.join("big.flow")).expect("big");
    // Sparse: the size is there, the disk blocks are not.
    big.set_len((64 << 20) + 1).expect("set_len");
    drop(big);
    std::fs::create_dir_all(ws.join("dir.flow")).expect("dir");
    for (target, why) in [
        ("zero.flow", "is a link to `/dev/zero`, outside the workspace"),
        ("fifo.flow", "not a regular file"),
        ("big.flow", "larger than 64 MiB"),
        ("dir.flow", "a folder"),
    ] {
        write(&ws.join("src/main.flow"), &format!("import \"../{target}\"\n"));
        let o = flowc_in(&ws, &["check", "src/main.flow"]);
        assert_eq!(code(&o), 1, "{target}: {}", text(&o));
        assert!(text(&o).contains(why) && text(&o).contains(target), "{target}: {}", text(&o));
        // Named as the file to check, it is a failure to run.
        let o = flowc_in(&ws, &["check", target]);
        assert_eq!(code(&o), 2, "{target}: {}", text(&o));
        assert!(text(&o).contains(target), "{target}: {}", text(&o));
    }
    // A folder holding a FIFO named like a source file is no hang either.
    let o = flowc_in(&ws, &["check", "."]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("not a regular file"), "{}", text(&o));
    // A device named directly is inside its own folder's workspace, and still never read.
    let o = flowc_in(&ws, &["check", "/dev/zero"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("cannot read `/dev/zero`: it is a character device, not a regular file"), "{}", text(&o));
}

#[test]
fn other_inputs_named_on_the_command_line_must_be_regular_files() {
    let t = TempDir::new("ws-inputs");
    let dir = &t.0;
    write(&dir.join("c.flow"), "campaign c {\n  trigger manual\n  send email.marketing hello\n}\n");
    mkfifo(&dir.join("fifo.json"));
    mkfifo(&dir.join("fifo.csv"));
    mkfifo(&dir.join("fifo.jsonl"));
    let runs: Vec<Vec<&str>> = vec![
        vec!["check", "--templates", "fifo.json", "c.flow"],
        vec!["contacts", "import", "fifo.csv", "--db", "x.db"],
        vec!["contacts", "import", "fifo.jsonl", "--db", "x.db"],
        vec!["dis", "fifo.json"],
        vec!["import", "fifo.json"],
        vec!["check", "--templates", "/dev/zero", "c.flow"],
    ];
    for args in runs {
        let o = flowc_in(dir, &args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
        assert!(text(&o).contains("not a regular file"), "{args:?}: {}", text(&o));
    }
}
