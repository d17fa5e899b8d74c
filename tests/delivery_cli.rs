//! Issue 19's delivery rules through the built binary: `flowc run` on a
//! `.flow` file with quiet hours and a rate limit, its reports and the
//! provider's log. Kept apart from tests/delivery.rs, which opens databases
//! in-process: a child forked while a test thread holds a database's lock
//! would hold it until it execs, and the next open could find it locked.

mod common;

const DECLS: &str = r#"
template promo { channel sms message promotional status published }
template code { channel sms message transactional status published }
template hello { channel email message marketing status published }
"#;

fn contact(id: &str, zone: Option<&str>) -> String {
    let mut c = serde_json::json!({
        "id": id, "email": format!("{id}@example.com"), "phone": "+33600000000", "locale": "fr",
        "created_at": "2026-02-01T10:00:00Z", "consent": ["sms", "email"],
    });
    if let Some(z) = zone {
        c["timezone"] = serde_json::Value::String(z.into());
    }
    c.to_string()
}

/// The fields of a provider log line this test reads.
#[derive(Debug, Clone, serde::Deserialize)]
struct LogLine {
    at: String,
    campaign: String,
    contact: String,
}

/// A `.flow` file with quiet hours and a rate limit through `flowc run`:
/// the human and JSON reports say what was skipped and held, and why.
#[test]
fn flowc_run_reports_quiet_hours_skips_and_held_sends() {
    let dir = common::TempDir::new("delivery-cli");
    let flow = dir.path("night.flow");
    std::fs::write(
        &flow,
        format!(
            "{DECLS}campaign night {{
  trigger manual
  quiet hours 21:00 to 08:00 then skip
  rate limit 2 per minute
  first: send sms.promotional promo
  code: send sms.transactional code
}}
campaign held {{
  trigger manual
  quiet hours 21:00 to 08:00
  send sms.promotional promo
}}
"
        ),
    )
    .expect("flow");
    // 23:00Z: night in London and without a zone (UTC), 08:00 in Tokyo.
    let contacts =
        [contact("london", Some("Europe/London")), contact("tokyo", Some("Asia/Tokyo")), contact("utc", None)];
    let file = dir.path("c.jsonl");
    std::fs::write(&file, contacts.join("\n")).expect("contacts");
    let args = |campaign: &'static str, report: &'static str| {
        let db = dir.path(&format!("{campaign}.db"));
        vec![
            "run".to_string(),
            flow.clone(),
            "--campaign".into(),
            campaign.into(),
            "--db".into(),
            db,
            "--contacts".into(),
            file.clone(),
            "--start".into(),
            "2026-01-10T23:00:00Z".into(),
            "--report".into(),
            report.into(),
        ]
    };
    let run = |a: Vec<String>| common::flowc(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args("night", "json"));
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let step = |id: &str| r["steps"].as_array().expect("steps").iter().find(|s| s["id"] == id).cloned().expect("step");
    assert_eq!(step("first")["skipped"]["quiet-hours"], 2, "{r}");
    assert_eq!(step("first")["sent"], 1);
    // One promotional and three transactional sends, two a minute: Tokyo's
    // two go in the first minute, London's and UTC's codes are held.
    assert_eq!(step("code")["sent"], 3);
    assert_eq!(step("code")["held"]["rate-limit"], 2, "{r}");

    let out = run(args("held", "human"));
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    let text = common::stdout(&out);
    assert!(text.contains("held sends (sent later): 2 by quiet-hours"), "{text}");
    assert!(text.contains("held by quiet-hours: 2"), "{text}");
    // London and UTC go at 08:00 local: 08:00Z for both in January.
    let db = dir.path("held.db");
    let log = std::fs::read_to_string(flowc::runtime::provider::log_path(std::path::Path::new(&db))).expect("log");
    let at: Vec<(String, String)> = log
        .lines()
        .map(|l| serde_json::from_str::<LogLine>(l).expect("log line"))
        .filter(|l| l.campaign == "held")
        .map(|l| (l.contact, l.at))
        .collect();
    assert!(at.contains(&("london".into(), "2026-01-11T08:00:00.000Z".into())), "{at:?}");
    assert!(at.contains(&("utc".into(), "2026-01-11T08:00:00.000Z".into())), "{at:?}");
    assert!(at.contains(&("tokyo".into(), "2026-01-10T23:00:00.000Z".into())), "{at:?}");
}
