//! Builder JSON: schema validity, lossless round trips, errors with paths.

mod common;

use common::gen;
use flowc::source::FileId;
use flowc::syntax::ast::Item;
use proptest::prelude::*;

fn export(text: &str) -> serde_json::Value {
    let (tree, diags) = flowc::syntax::parse(text, FileId(0));
    assert!(diags.is_empty(), "{diags:?}");
    let imports: Vec<String> = tree
        .items
        .iter()
        .filter_map(|i| if let Item::Import(im) = i { Some(im.path.value.clone()) } else { None })
        .collect();
    let c = tree.items.iter().find_map(|i| if let Item::Campaign(c) = i { Some(c) } else { None }).expect("a campaign");
    flowc::builder::export(&imports, c)
}

fn fmt(text: &str) -> String {
    let (tree, _) = flowc::syntax::parse(text, FileId(0));
    flowc::fmt::format(&tree, text)
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("docs/builder.schema.json")).expect("schema"),
    )
    .expect("json");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// The schema, compiled once for the property tests.
fn schema() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(validator)
}

/// Issue 18: a `wait until` is a WAIT_UNTIL node with one path per arm and
/// the timeout last; goal, exits and `on ineligible` are `settings`.
#[test]
fn wait_until_and_settings_export_as_documented() {
    let src = std::fs::read_to_string(common::root().join("tests/data/compile/wait_until.flow")).expect("read");
    let json = export(&src);
    let errors: Vec<String> = validator().iter_errors(&json).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        json["settings"],
        serde_json::json!({
            "goal": {"event": "order.completed", "where": [{"compare": {"op": ">", "left": {"attribute": "amount"}, "right": {"number": 10.0}}}], "within": "7d"},
            "exits": [
                {"event": "order.completed", "where": [{"compare": {"op": "==", "left": {"attribute": "currency"}, "right": {"string": "EUR"}}}]},
                {"condition": {"has": {"set": {"attribute": "tags"}, "value": {"string": "unsubscribed"}}}}
            ],
            "on_ineligible": "continue"
        })
    );
    let wait = &json["timeline"][1];
    assert_eq!((wait["id"].as_str(), wait["type"].as_str()), (Some("cart"), Some("WAIT_UNTIL")));
    let paths = wait["config"]["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 4);
    assert_eq!(paths[0]["timeline"][0]["id"], "cart/when1/1");
    assert_eq!(
        paths[1]["when"],
        serde_json::json!({"condition": {"predicate": {"name": "clicked", "arg": "reminder"}}})
    );
    assert_eq!(paths[3]["timeout"], "3d");
    assert_eq!(paths[3]["timeline"][0]["id"], "cart/timeout/1");
    let short = &json["timeline"][2];
    assert_eq!(
        short["config"],
        serde_json::json!({"form": "short", "paths": [{"when": {"event": "order.completed", "where": []}, "timeline": []}, {"timeout": "2d", "timeline": []}]})
    );
    let back = flowc::builder::import(&json.to_string()).expect("imports back");
    assert_eq!(export(&back), json);
    let campaign = &fmt(&src)[fmt(&src).find("campaign cart_wait").expect("campaign")..];
    assert!(back.ends_with(campaign), "{back}");
}

/// Issue 19: quiet hours, re-entry and the rate limit are campaign
/// `settings`; `set` is a SET node whose value is an expression; the policy
/// is the workspace's, never in a campaign's document.
#[test]
fn delivery_settings_and_set_export_as_documented() {
    let src = std::fs::read_to_string(common::root().join("tests/data/compile/delivery.flow")).expect("read");
    let json = export(&src);
    let errors: Vec<String> = validator().iter_errors(&json).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        json["settings"],
        serde_json::json!({
            "quiet_hours": {"start": "21:00", "end": "08:00", "then": "skip"},
            "reentry": {"after": "30d"},
            "rate_limit": {"count": 600, "per": "minute"}
        })
    );
    assert!(!json.to_string().contains("frequency"), "the policy is not a campaign's: {json}");
    let set = &json["timeline"][2];
    assert_eq!((set["id"].as_str(), set["type"].as_str()), (Some("bump"), Some("SET")));
    assert_eq!(set["config"], serde_json::json!({"field": "plan", "value": {"attribute": "pro"}}));
    let back = flowc::builder::import(&json.to_string()).expect("imports back");
    assert_eq!(export(&back), json);
    assert!(
        back.contains("  quiet hours 21:00 to 08:00 then skip\n  reentry after 30d\n  rate limit 600 per minute\n"),
        "{back}"
    );
    assert!(back.contains("  set lifetime_value = lifetime_value + 10\n"), "{back}");
    // `then` may be left out (hold), `reentry` is a word or an object.
    let doc = |settings: serde_json::Value| {
        serde_json::json!({"format": "flowc-builder/1", "campaign": {"id": "c"}, "trigger": {"type": "MANUAL"}, "settings": settings, "timeline": []}).to_string()
    };
    let text = flowc::builder::import(&doc(
        serde_json::json!({"quiet_hours": {"start": "21:00", "end": "08:00"}, "reentry": "always"}),
    ))
    .expect("import");
    assert!(text.contains("quiet hours 21:00 to 08:00\n  reentry always\n"), "{text}");
    for (bad, says) in [
        (serde_json::json!({"quiet_hours": {"start": "9pm", "end": "08:00"}}), "$.settings.quiet_hours.start"),
        (
            serde_json::json!({"quiet_hours": {"start": "21:00", "end": "08:00", "then": "drop"}}),
            "expected hold or skip",
        ),
        (serde_json::json!({"reentry": "twice"}), "$.settings.reentry"),
        (serde_json::json!({"rate_limit": {"count": -1, "per": "minute"}}), "$.settings.rate_limit.count"),
        (serde_json::json!({"rate_limit": {"count": 5, "per": "day"}}), "expected second, minute or hour"),
    ] {
        let e = flowc::builder::import(&doc(bad.clone())).expect_err("refused").to_string();
        assert!(e.contains(says), "{bad}: {e}");
        assert!(!schema().is_valid(&serde_json::from_str(&doc(bad)).expect("json")), "the schema refuses it too");
    }
}

#[test]
fn every_example_exports_validates_and_imports_back() {
    let v = validator();
    let mut n = 0;
    for entry in std::fs::read_dir(common::root().join("examples")).expect("examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        if path.extension().is_none_or(|e| e != "flow") || !text.contains("campaign ") {
            continue;
        }
        n += 1;
        let json = export(&text);
        let errors: Vec<String> = v.iter_errors(&json).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let back = flowc::builder::import(&json.to_string()).expect("imports back");
        assert_eq!(export(&back), json, "{}: import then export is the identity", path.display());
    }
    assert!(n >= 5);
}

#[test]
fn schema_rejects_what_import_rejects() {
    let v = validator();
    let bad = serde_json::json!({"format": "flowc-builder/1", "campaign": {"id": "c"}, "trigger": {"type": "MANUAL"},
        "timeline": [{"id": "x", "type": "WAIT", "config": {"duration": "soon"}}]});
    assert!(!v.is_valid(&bad));
    assert!(flowc::builder::import(&bad.to_string()).is_err());
}

#[test]
fn errors_name_the_json_path_and_the_reason() {
    let base = |timeline: &str| {
        format!(
            r#"{{"format": "flowc-builder/1", "campaign": {{"id": "c"}}, "trigger": {{"type": "MANUAL"}}, "timeline": {timeline}}}"#
        )
    };
    let cases = [
        (
            base(r#"[{"id": "a", "type": "END"}, {"id": "b", "type": "SEND", "config": {"template": "T"}}]"#),
            "$.timeline[1].config.template: `T` is not a valid name ([a-z_][a-z0-9_]*, not a keyword)",
        ),
        (
            base(
                r#"[{"id": "t", "type": "AB_TEST", "config": {"name": "t", "variants": [{"name": "a", "weight": "half", "timeline": []}]}}]"#,
            ),
            "$.timeline[0].config.variants[0].weight: expected a number, found a string",
        ),
        (base(r#"[{"id": "w", "type": "WAIT", "config": {}}]"#), "$.timeline[0].config: missing `duration`"),
        (
            base(r#"[{"id": "x", "type": "JUMP"}]"#),
            "$.timeline[0].type: expected SEND, WAIT, WAIT_UNTIL, CONDITION, AB_TEST, TAG, SET or END, found `JUMP`",
        ),
        (
            base(
                r#"[{"id": "i", "type": "CONDITION", "config": {"branches": [{"condition": {"compare": {"op": "=", "left": {"attribute": "a"}, "right": {"number": 1}}}, "timeline": []}]}}]"#,
            ),
            "$.timeline[0].config.branches[0].condition.compare.op: expected ==, !=, <, <=, > or >=, found `=`",
        ),
        (
            base(
                r#"[{"id": "w", "type": "WAIT_UNTIL", "config": {"paths": [{"timeout": "1d", "timeline": []}, {"when": {"event": "x"}, "timeline": []}]}}]"#,
            ),
            "$.timeline[0].config.paths[1]: the timeout path comes last",
        ),
        (
            base(
                r#"[{"id": "w", "type": "WAIT_UNTIL", "config": {"form": "short", "paths": [{"when": {"condition": {"attribute": "vip"}}, "timeline": []}, {"timeout": "1d", "timeline": []}]}}]"#,
            ),
            "$.timeline[0].config.form: the short form has one event path and a timeout, both with empty timelines",
        ),
        (
            base(r#"[{"id": "w", "type": "WAIT_UNTIL", "config": {"paths": [{"when": {"event": "x", "within": "1d"}, "timeline": []}]}}]"#),
            "$.timeline[0].config.paths[0].when.within: unknown key `within` (expected event, where)",
        ),
        (
            r#"{"format": "flowc-builder/1", "campaign": {"id": "c"}, "trigger": {"type": "MANUAL"}, "settings": {"on_ineligible": "drop"}, "timeline": []}"#.to_string(),
            "$.settings.on_ineligible: expected skip or continue, found `drop`",
        ),
        ("{".to_string(), "$: invalid JSON: EOF while parsing an object at line 1 column 1"),
        (r#"{"format": "other"}"#.to_string(), "$.format: expected \"flowc-builder/1\", found \"other\""),
    ];
    for (input, want) in cases {
        assert_eq!(flowc::builder::import(&input).unwrap_err().to_string(), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// export then import gives back the formatted source; import then
    /// export gives back the JSON (maps compare without key order).
    #[test]
    fn round_trips((trigger, steps) in gen::campaign()) {
        let src = format!("import \"prelude.flow\"\n\n{}", gen::render_campaign(trigger, &steps));
        let json = export(&src);
        prop_assert!(schema().is_valid(&json), "{}", json);
        let back = flowc::builder::import(&json.to_string()).expect("import");
        prop_assert_eq!(&back, &fmt(&src));
        prop_assert_eq!(export(&back), json);
    }
}

/// A document whose audience is `cond`.
fn with_audience(cond: &serde_json::Value) -> String {
    serde_json::json!({"format": "flowc-builder/1", "campaign": {"id": "c"}, "trigger": {"type": "MANUAL"}, "audience": cond, "timeline": []}).to_string()
}

/// The audience of an imported document, as text and exported again.
fn audience_trip(cond: &serde_json::Value) -> (String, serde_json::Value) {
    let text = flowc::builder::import(&with_audience(cond)).unwrap_or_else(|e| panic!("{cond}: {e}"));
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("audience "))
        .unwrap_or_else(|| panic!("no audience in\n{text}"))
        .to_string();
    (line, export(&text)["audience"].clone())
}

mod j {
    use serde_json::{json, Value};
    pub fn attr(n: &str) -> Value {
        json!({"attribute": n})
    }
    pub fn cmp(op: &str, l: Value, r: Value) -> Value {
        json!({"compare": {"op": op, "left": l, "right": r}})
    }
    pub fn s(v: &str) -> Value {
        json!({"string": v})
    }
    pub fn n(v: f64) -> Value {
        json!({"number": v})
    }
    pub fn or(v: &[Value]) -> Value {
        json!({"or": v})
    }
    pub fn and(v: &[Value]) -> Value {
        json!({"and": v})
    }
    pub fn not(v: Value) -> Value {
        json!({"not": v})
    }
    pub fn has(set: Value, value: Value) -> Value {
        json!({"has": {"set": set, "value": value}})
    }
    pub fn arith(first: Value, rest: &[(&str, Value)]) -> Value {
        json!({"arith": {"first": first, "rest": rest.iter().map(|(op, v)| json!({"op": op, "value": v})).collect::<Vec<_>>()}})
    }
    pub fn happened(filter: &[Value]) -> Value {
        json!({"happened": {"event": "order.completed", "within": null, "where": filter}})
    }
}

/// Every shape issue 15 found changing a campaign (or not parsing) on import:
/// each prints with the parentheses its meaning needs and exports back unchanged.
#[test]
fn import_keeps_the_meaning_of_every_condition() {
    use j::*;
    let fr = cmp("==", attr("country"), s("FR"));
    let free = cmp("==", attr("plan"), attr("free"));
    let cases = [
        (not(or(&[fr.clone(), free.clone()])), r#"not (country == "FR" or plan == free)"#),
        (not(and(&[attr("a"), attr("b")])), "not (a and b)"),
        (and(&[or(&[attr("a"), attr("b")]), attr("x")]), "(a or b) and x"),
        (and(&[attr("x"), or(&[attr("a"), attr("b")])]), "x and (a or b)"),
        (cmp(">", arith(attr("x"), &[("-", arith(attr("y"), &[("+", attr("z"))]))]), n(1.0)), "x - (y + z) > 1"),
        (cmp(">", arith(arith(attr("x"), &[("-", attr("y"))]), &[("+", attr("z"))]), n(1.0)), "(x - y) + z > 1"),
        (has(or(&[attr("a"), attr("b")]), s("v")), r#"(a or b) has "v""#),
        (has(attr("tags"), or(&[s("a"), s("b")])), r#"tags has ("a" or "b")"#),
        (has(has(attr("a"), attr("b")), attr("c")), "(a has b) has c"),
        (has(attr("a"), has(attr("b"), attr("c"))), "a has (b has c)"),
        (happened(&[or(&[attr("a"), attr("b")])]), "happened order.completed where (a or b)"),
        (and(&[happened(&[attr("a")]), attr("b")]), "(happened order.completed where a) and b"),
        (or(&[happened(&[attr("a")]), attr("b")]), "happened order.completed where a or b"),
        (cmp("==", cmp("==", n(1.0), n(1.0)), serde_json::json!({"bool": true})), "(1 == 1) == true"),
        (serde_json::json!({"in": {"value": attr("x"), "list": [or(&[attr("a"), attr("b")])]}}), "x in [(a or b)]"),
        (serde_json::json!({"in": {"value": attr("x"), "list": [arith(n(1.0), &[("+", n(2.0))])]}}), "x in [(1 + 2)]"),
        (cmp("==", not(attr("x")), serde_json::json!({"bool": false})), "(not x) == false"),
        (or(&[or(&[attr("a"), attr("b")]), attr("c")]), "(a or b) or c"),
        (and(&[attr("a"), and(&[attr("b"), attr("c")])]), "a and (b and c)"),
        (not(not(attr("a"))), "not not a"),
        (serde_json::json!({"group": attr("a")}), "(a)"),
        // A field named `happened` would start `happened EVENT` and take `and` as the event.
        (and(&[attr("happened"), attr("b")]), "(happened) and b"),
        (serde_json::json!({"group": attr("happened")}), "((happened))"),
    ];
    let mut wrong = Vec::new();
    for (cond, want) in &cases {
        let (text, back) = audience_trip(cond);
        if text != *want || back != *cond {
            wrong.push(format!("{cond}\n  printed {text}\n  wanted  {want}\n  exported back {back}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Any condition JSON (from trees made directly) imports and exports back
    /// unchanged.
    #[test]
    fn conditions_round_trip(e in gen::expr::tree()) {
        let json = flowc::builder::expr(&e);
        let (text, back) = audience_trip(&json);
        prop_assert_eq!(back, json, "printed as `{}`", text);
    }
}

/// A document with `timeline`, or with `trigger` and `audience` replaced.
fn doc_with(
    timeline: serde_json::Value,
    trigger: serde_json::Value,
    audience: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut d = serde_json::json!({"format": "flowc-builder/1", "campaign": {"id": "c"}, "trigger": trigger, "timeline": timeline});
    if let Some(a) = audience {
        d["audience"] = a;
    }
    d
}

/// What import used to accept and silently change (issue 15): each is refused
/// with the JSON path and the reason, and the schema refuses it too.
#[test]
fn import_refuses_what_it_would_silently_change() {
    use serde_json::json;
    let manual = json!({"type": "MANUAL"});
    let wait = |id: &str| json!({"id": id, "type": "WAIT", "config": {"duration": "1d"}});
    let cases = [
        // Structural ids are fixed by position; renumbering would move running contacts.
        (doc_with(json!([wait("c/99")]), manual.clone(), None), "$.timeline[0].id: `c/99` is not the structural id of the step at this position (`c/1`); use that, or a label"),
        (doc_with(json!([wait("c/1"), wait("c/1")]), manual.clone(), None), "$.timeline[1].id: `c/1` is not the structural id of the step at this position (`c/2`); use that, or a label"),
        (
            doc_with(json!([{"id": "c/1", "type": "CONDITION", "config": {"branches": [{"condition": {"bool": true}, "timeline": [wait("c/1/else/1")]}]}}]), manual.clone(), None),
            "$.timeline[0].config.branches[0].timeline[0].id: `c/1/else/1` is not the structural id of the step at this position (`c/1/then/1`); use that, or a label",
        ),
        (doc_with(json!([wait("a"), wait("a")]), manual.clone(), None), "$.timeline[1].id: `a` is already the id of $.timeline[0]; step ids are unique"),
        // Markers are `true`; `false` does not mean `now`.
        (doc_with(json!([]), manual.clone(), Some(json!({"compare": {"op": "<", "left": {"attribute": "d"}, "right": {"now": false}}}))), "$.audience.compare.right.now: expected true, found false"),
        (doc_with(json!([]), manual.clone(), Some(json!({"compare": {"op": "==", "left": {"attribute": "d"}, "right": {"none": 1}}}))), "$.audience.compare.right.none: expected true, found a number"),
        // Unknown keys are misspellings, not extras.
        (doc_with(json!([{"id": "w", "type": "WAIT", "config": {"duration": "1d", "jitter": "1h"}}]), manual.clone(), None), "$.timeline[0].config.jitter: unknown key `jitter` (expected duration)"),
        (doc_with(json!([{"id": "e", "type": "END", "config": {"reason": "done"}}]), manual.clone(), None), "$.timeline[0].config.reason: unknown key `reason` (no keys here)"),
        (
            doc_with(json!([{"id": "s", "type": "SEND", "config": {"template": "t", "fallback": {"template": "u", "chanel": "sms"}}}]), manual.clone(), None),
            "$.timeline[0].config.fallback.chanel: unknown key `chanel` (expected channel, message_type, template)",
        ),
        (doc_with(json!([{"id": "w", "type": "WAIT", "confg": {"duration": "1d"}}]), manual.clone(), None), "$.timeline[0].confg: unknown key `confg` (expected id, type, config)"),
        (doc_with(json!([{"id": "e", "type": "END", "note": "x"}]), manual.clone(), None), "$.timeline[0].note: unknown key `note` (expected id, type, config)"),
        (doc_with(json!([]), json!({"type": "EVENT", "event": "order.completed", "wher": {"bool": true}}), None), "$.trigger.wher: unknown key `wher` (expected type, event, where)"),
        (doc_with(json!([]), json!({"type": "MANUAL", "at": "2026-12-01 09:00"}), None), "$.trigger.at: unknown key `at` (expected type)"),
        (doc_with(json!([]), manual.clone(), Some(json!({"compare": {"op": "==", "left": {"attribute": "a"}, "rigth": {"number": 1}}}))), "$.audience.compare.rigth: unknown key `rigth` (expected op, left, right)"),
    ];
    let schema = validator();
    let mut wrong = Vec::new();
    for (doc, want) in &cases {
        match flowc::builder::import(&doc.to_string()) {
            Ok(text) => wrong.push(format!("accepted {doc}\n  as {text}")),
            Err(e) if e.to_string() != *want => wrong.push(format!("{doc}\n  said   {e}\n  wanted {want}")),
            Err(_) => {}
        }
        // Ids are fixed by position, which a schema cannot say.
        if !want.contains(".id: ") && schema.is_valid(doc) {
            wrong.push(format!("the schema accepts {doc}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// serde_json keeps the last of two equal keys: `"id": "welcome", "id": "evil"`
/// imported as `campaign evil`. A key given twice is an error at its path.
#[test]
fn import_refuses_duplicate_json_keys() {
    let text = r#"{"format": "flowc-builder/1", "campaign": {"id": "welcome", "id": "evil"}, "trigger": {"type": "MANUAL"}, "timeline": []}"#;
    assert_eq!(
        flowc::builder::import(text).unwrap_err().to_string(),
        "$.campaign.id: duplicate key `id`: each key may appear once (line 1, column 64)"
    );
    let nested = r#"{"format": "flowc-builder/1", "campaign": {"id": "c"}, "trigger": {"type": "MANUAL"},
        "timeline": [{"id": "w", "type": "WAIT", "config": {"duration": "1d", "duration": "30d"}}]}"#;
    assert_eq!(
        flowc::builder::import(nested).unwrap_err().to_string(),
        "$.timeline[0].config.duration: duplicate key `duration`: each key may appear once (line 2, column 88)"
    );
}

/// Conditions nested past what `.flow` allows (32 levels of parentheses and
/// braces) are refused instead of printed as a file that does not parse.
#[test]
fn import_refuses_what_would_nest_too_deep_as_text() {
    let mut e = j::attr("a");
    for _ in 0..40 {
        e = j::arith(e, &[("+", j::n(1.0))]);
    }
    let err = flowc::builder::import(&with_audience(&j::cmp(">", e, j::n(1.0)))).expect_err("too deep");
    assert_eq!(
        err.to_string(),
        "$.audience: nests deeper than .flow allows (32 levels of braces, brackets and parentheses)"
    );
}
