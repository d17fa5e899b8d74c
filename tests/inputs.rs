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

/// `n` valid JSON Lines contacts of `SCHEMA`, ids `c0` …
fn jsonl_rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"id\": \"c{i}\", \"score\": {}, \"plan\": \"{}\", \"vip\": {}}}\n",
                i % 100,
                if i % 3 == 0 { "pro" } else { "free" },
                i % 2 == 0
            )
        })
        .collect()
}

/// What a database holds, read through the store: its contacts (id and
/// attributes) and the fields of its kept schema.
fn held(db: &str) -> (Vec<(String, String)>, Option<Vec<String>>) {
    use flowc::runtime::store::Store;
    let store = flowc::runtime::sqlite::SqliteStore::open_as(
        std::path::Path::new(db),
        flowc::runtime::sqlite::OpenMode::ReadOnly,
    )
    .expect("open");
    let mut contacts = Vec::new();
    store.for_each_contact(&mut |c| contacts.push((c.id.0, format!("{:?}", c.attrs)))).expect("contacts");
    let schema =
        flowc::runtime::contacts::stored_schema(&store).expect("schema").map(|s| s.fields.into_keys().collect());
    (contacts, schema)
}

#[test]
fn a_bad_row_at_the_end_of_a_big_file_imports_nothing_and_leaves_the_database_as_it_was() {
    let dir = TempDir::new("import-bad-end");
    let (db, file) = (dir.path("db.sqlite"), dir.path("big.jsonl"));
    std::fs::write(dir.path("schema.flow"), SCHEMA).expect("write");
    std::fs::write(&file, jsonl_rows(3)).expect("write");
    let o = flowc(&["contacts", "import", &file, "--db", &db, "--schema", &dir.path("schema.flow")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = held(&db);
    let bytes_before = std::fs::read(&db).expect("db");
    // Many chunks of valid rows (replacing the stored ones, adding others),
    // then one bad row; imported with a schema that declares one more field.
    let mut big = jsonl_rows(20_000).replace("\"score\": 7,", "\"score\": 8,");
    big.push_str("{\"id\": \"last\", \"score\": \"high\"}\n");
    std::fs::write(&file, big).expect("write");
    std::fs::write(dir.path("wider.flow"), format!("{SCHEMA}contact {{\n  extra: string?\n}}\n")).expect("write");
    let o = flowc(&["contacts", "import", &file, "--db", &db, "--schema", &dir.path("wider.flow")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line 20001: field `score`: expected number, found `high`"), "{err}");
    assert!(err.contains("1 of 20001 rows is invalid (1 error)") && err.contains("nothing imported"), "{err}");
    assert_eq!(held(&db), before, "neither a contact nor the wider schema is stored");
    assert_eq!(std::fs::read(&db).expect("db"), bytes_before, "the database file is as it was");
    // The same file without its bad row imports every contact, and the schema with them.
    let mut good = jsonl_rows(20_000);
    good.push('\n');
    std::fs::write(&file, good).expect("write");
    let o = flowc(&["contacts", "import", &file, "--db", &db, "--schema", &dir.path("wider.flow")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("imported 20000 contact(s)"), "{}", stderr(&o));
    let (contacts, schema) = held(&db);
    assert_eq!(contacts.len(), 20_000);
    assert!(schema.is_some_and(|s| s.contains(&"extra".to_string())));
}

#[test]
fn the_errors_shown_are_capped_with_a_count_of_the_rest() {
    let dir = TempDir::new("import-capped");
    let (db, file) = (dir.path("db.sqlite"), dir.path("bad.jsonl"));
    std::fs::write(dir.path("schema.flow"), SCHEMA).expect("write");
    let mut text = jsonl_rows(10_000);
    for i in 0..120 {
        text.push_str(&format!("{{\"id\": \"x{i}\", \"score\": \"none\"}}\n"));
    }
    std::fs::write(&file, text).expect("write");
    let schema = dir.path("schema.flow");
    for skip in [&[][..], &["--skip-invalid"][..]] {
        let mut args = vec!["contacts", "import", file.as_str(), "--db", db.as_str(), "--schema", schema.as_str()];
        args.extend_from_slice(skip);
        let o = flowc(&args);
        let err = stderr(&o);
        assert_eq!(err.matches("expected number, found `none`").count(), 50, "the first 50 only:\n{err}");
        assert!(err.contains("line 10001: field `score`") && err.contains("line 10050: field `score`"), "{err}");
        assert!(!err.contains("line 10051"), "{err}");
        assert!(err.contains("… and 70 more errors"), "{err}");
        if skip.is_empty() {
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(err.contains("120 of 10120 rows are invalid (120 errors)"), "{err}");
            assert!(!std::path::Path::new(&db).exists(), "a refused import into a new database leaves none");
        } else {
            assert_eq!(o.status.code(), Some(0), "{err}");
            assert!(err.contains("imported 10000 contact(s)") && err.contains("skipped 120 invalid rows"), "{err}");
            assert_eq!(held(&db).0.len(), 10_000);
        }
    }
}

#[test]
fn rows_are_taken_in_file_order_across_chunks() {
    // Chunks are validated on several threads; repeated ids, line numbers
    // and which of two rows is kept still follow the file.
    let dir = TempDir::new("import-order");
    let (db, file) = (dir.path("db.sqlite"), dir.path("c.jsonl"));
    std::fs::write(dir.path("schema.flow"), SCHEMA).expect("write");
    let mut text = jsonl_rows(30_000);
    text.push_str("\n   \n{\"id\": \"c10\", \"score\": 1000}\n{\"id\": \"c29999\", \"score\": 1000}\n");
    std::fs::write(&file, text).expect("write");
    let o = flowc(&["contacts", "import", &file, "--db", &db, "--schema", &dir.path("schema.flow"), "--skip-invalid"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("line 30003: field `id`: contact `c10` is also on line 11"), "{err}");
    assert!(err.contains("line 30004: field `id`: contact `c29999` is also on line 30000"), "{err}");
    assert!(err.contains("imported 30000 contact(s)") && err.contains("skipped 2 invalid rows"), "{err}");
    let contacts = held(&db).0;
    assert_eq!(contacts.len(), 30_000);
    assert!(contacts.iter().all(|(_, attrs)| !attrs.contains("1000")), "the first row of each contact is kept");
}

#[test]
fn a_row_that_is_not_utf8_or_too_long_is_an_error_of_its_own() {
    let dir = TempDir::new("import-rows");
    let (db, file) = (dir.path("db.sqlite"), dir.path("c.jsonl"));
    std::fs::write(dir.path("schema.flow"), SCHEMA).expect("write");
    let mut bytes = jsonl_rows(2).into_bytes();
    bytes.extend_from_slice(b"{\"id\": \"\xff\"}\n");
    bytes.extend_from_slice(format!("{{\"id\": \"long\", \"nick\": \"{}\"}}\n", "x".repeat(2 << 20)).as_bytes());
    bytes.extend_from_slice(jsonl_rows(4).split_inclusive('\n').next_back().unwrap_or_default().as_bytes());
    std::fs::write(&file, bytes).expect("write");
    let schema = dir.path("schema.flow");
    let o = flowc(&["contacts", "import", &file, "--db", &db, "--schema", &schema]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line 3: the row is not UTF-8"), "{err}");
    assert!(err.contains("line 4: the row is longer than 1048576 bytes"), "{err}");
    assert!(err.contains("2 of 5 rows are invalid (2 errors)"), "{err}");
    let o = flowc(&["contacts", "import", &file, "--db", &db, "--schema", &schema, "--skip-invalid"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("imported 3 contact(s)"), "{}", stderr(&o));
    // A CSV record cannot be skipped without reading it whole: one too long
    // makes the file unreadable, and nothing is imported.
    let csv = dir.path("c.csv");
    std::fs::write(&csv, format!("id,score\na,1\nb,\"{}\"\nc,3\n", "9".repeat(3 << 20))).expect("write");
    let _ = std::fs::remove_file(&db);
    let o = flowc(&["contacts", "import", &csv, "--db", &db, "--schema", &schema, "--skip-invalid"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("a row is longer than 1048576 bytes; nothing imported"), "{err}");
    assert!(!std::path::Path::new(&db).exists(), "a refused import into a new database leaves none");
}
