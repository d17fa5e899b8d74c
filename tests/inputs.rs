//! End-to-end tests of the data files flowc reads besides `.flow` source:
//! the template registry (`--templates`) and contacts (`contacts import`).
//! Each mistake is an error naming the entry or line, with a non-zero exit.

mod common;

use common::{flowc, stderr, TempDir};
use std::process::Output;

const USES_REGISTRY: &str = "campaign c {\n  trigger manual\n  send from_registry\n}\n";

fn entry(name: &str, channel: &str, message: &str, status: &str) -> String {
    format!(r#"{{"name":"{name}","channel":"{channel}","message_type":"{message}","status":"{status}"}}"#)
}

/// Checks `USES_REGISTRY` with a registry made of `entries`.
fn check_with_registry(dir: &TempDir, entries: &[String]) -> Output {
    std::fs::write(dir.path("c.flow"), USES_REGISTRY).expect("write");
    std::fs::write(dir.path("registry.json"), format!("[{}]", entries.join(","))).expect("write");
    flowc(&["check", "--templates", &dir.path("registry.json"), &dir.path("c.flow")])
}

#[test]
fn a_template_listed_twice_in_the_registry_is_an_error_naming_both_entries() {
    let dir = TempDir::new("registry-twice");
    let ok = entry("from_registry", "email", "marketing", "published");
    assert_eq!(check_with_registry(&dir, std::slice::from_ref(&ok)).status.code(), Some(0));
    for second in [
        ok.clone(),
        entry("from_registry", "sms", "promotional", "published"),
        entry("from_registry", "email", "marketing", "draft"),
    ] {
        let o = check_with_registry(&dir, &[entry("other", "email", "marketing", "published"), ok.clone(), second]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("$[2] (`from_registry`): template `from_registry` is already listed at $[1]"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn a_registry_template_on_an_unknown_channel_is_an_error_naming_the_entry() {
    let dir = TempDir::new("registry-channel");
    let o = check_with_registry(&dir, &[entry("from_registry", "fax", "marketing", "published")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("$[0] (`from_registry`): unknown channel `fax`"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("fax.marketing") && o.stdout.is_empty(), "{}", stderr(&o));
    let o = check_with_registry(&dir, &[entry("from_registry", "emial", "marketing", "published")]);
    assert!(stderr(&o).contains("unknown channel `emial`; did you mean `email`?"), "{}", stderr(&o));
    let o = check_with_registry(&dir, &[entry("from_registry", "email", "newsletter", "published")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("$[0] (`from_registry`): channel `email` has no message type `newsletter`"),
        "{}",
        stderr(&o)
    );
    // A channel the checked files declare themselves is known.
    std::fs::write(dir.path("fax.flow"), format!("channel fax {{\n  message marketing\n}}\n{USES_REGISTRY}"))
        .expect("write");
    let o = flowc(&["check", "--templates", &dir.path("registry.json"), &dir.path("fax.flow")]);
    assert!(stderr(&o).contains("newsletter"), "{}", stderr(&o));
    std::fs::write(dir.path("registry.json"), format!("[{}]", entry("from_registry", "fax", "marketing", "published")))
        .expect("write");
    let o = flowc(&["check", "--templates", &dir.path("registry.json"), &dir.path("fax.flow")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
}

const SCHEMA: &str = "contact {\n  score: number\n  plan: enum(free, pro)\n  vip: bool\n}\n";

/// Imports `csv` into a fresh database with `SCHEMA`.
fn import(dir: &TempDir, csv: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.path("schema.flow"), SCHEMA).expect("write");
    std::fs::write(dir.path("contacts.csv"), csv).expect("write");
    let _ = std::fs::remove_file(dir.path("db.sqlite"));
    let (db, schema, file) = (dir.path("db.sqlite"), dir.path("schema.flow"), dir.path("contacts.csv"));
    let mut args = vec!["contacts", "import", file.as_str(), "--db", db.as_str(), "--schema", schema.as_str()];
    args.extend_from_slice(extra);
    flowc(&args)
}

#[test]
fn a_csv_header_naming_a_column_twice_is_an_error() {
    let dir = TempDir::new("csv-header");
    for extra in [&[][..], &["--skip-invalid"][..]] {
        let o = import(&dir, "id,score,id\na,1,b\n", extra);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("line 1: column `id` appears twice (columns 1 and 3)"), "{}", stderr(&o));
        assert!(stderr(&o).contains("nothing imported") && !stderr(&o).contains("imported 1"), "{}", stderr(&o));
    }
}

#[test]
fn two_csv_rows_for_one_contact_are_an_error_naming_both_lines() {
    let dir = TempDir::new("csv-twice");
    let csv = "id,score\na,1\nb,2\na,3\n";
    let o = import(&dir, csv, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 4: field `id`: contact `a` is also on line 2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 of 3 rows is invalid"), "{}", stderr(&o));
    // Skipping imports the first row of the contact and says what it skipped.
    let o = import(&dir, csv, &["--skip-invalid"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("imported 2 contact(s)") && stderr(&o).contains("skipped 1 invalid row"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn csv_cells_are_trimmed_for_every_type() {
    let dir = TempDir::new("csv-trim");
    // A number and an enum value with the same stray space: both accepted.
    let o = import(&dir, "id, score , plan ,vip\n a , 5, pro , true\n", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("imported 1 contact(s)"), "{}", stderr(&o));
}

#[test]
fn invalid_csv_rows_are_counted_as_rows_with_every_error_listed() {
    let dir = TempDir::new("csv-count");
    // Two rows, five bad fields.
    let o = import(&dir, "id,score,plan,vip\na,x,gold,maybe\nb,y,silver,true\n", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("2 of 2 rows are invalid (5 errors)"), "{err}");
    for (line, field) in [(2, "score"), (2, "plan"), (2, "vip"), (3, "score"), (3, "plan")] {
        assert!(err.contains(&format!("line {line}: field `{field}`")), "{field} on {line}: {err}");
    }
}
