//! Golden tests: parse dumps, rendered check diagnostics, one file per code.

mod common;

use flowc::diag::Code;

#[test]
fn parse_goldens() {
    common::golden("parse", common::parse_file);
}

#[test]
fn check_goldens() {
    common::golden("check", common::check_rendered);
}

/// `check/<code>.flow` must raise `<code>`; `check/<code>.ok.flow`, a near miss, must not.
#[test]
fn every_code_has_a_trigger_and_a_near_miss() {
    let dir = common::root().join("tests/data/check");
    let mut missing = Vec::new();
    for code in Code::ALL {
        for (suffix, want) in [("", true), (".ok", false)] {
            // A code about several files (`duplicate-campaign`) has a folder
            // of roots instead of one file.
            let folder = std::path::PathBuf::from(format!("tests/data/check/{}{suffix}", code.as_str()));
            let rel = std::path::PathBuf::from(format!("tests/data/check/{}{suffix}.flow", code.as_str()));
            let (analysis, rel) = if dir.join(format!("{}{suffix}", code.as_str())).is_dir() {
                (common::check_folder(&folder, &common::golden_options()).0, folder)
            } else if dir.join(format!("{}{suffix}.flow", code.as_str())).exists() {
                (common::check_file(&rel, &common::golden_options()).0, rel)
            } else {
                missing.push(format!("{} (missing file)", rel.display()));
                continue;
            };
            let has = analysis.diags.iter().any(|d| d.code == *code);
            if has != want {
                missing.push(format!("{}: expected {} `{code}`", rel.display(), if want { "a" } else { "no" }));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
