//! Builder JSON: schema validity, lossless round trips, errors with paths.

mod common;

use common::gen;
use flowc::source::FileId;
use flowc::syntax::ast::Item;
use proptest::prelude::*;

fn export(text: &str) -> serde_json::Value {
    let (tree, diags) = flowc::syntax::parse(text, FileId(0));
    assert!(diags.is_empty(), "{diags:?}");
    let imports: Vec<String> = tree.items.iter().filter_map(|i| if let Item::Import(im) = i { Some(im.path.value.clone()) } else { None }).collect();
    let c = tree.items.iter().find_map(|i| if let Item::Campaign(c) = i { Some(c) } else { None }).expect("a campaign");
    flowc::builder::export(&imports, c)
}

fn fmt(text: &str) -> String {
    let (tree, _) = flowc::syntax::parse(text, FileId(0));
    flowc::fmt::format(&tree, text)
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::root().join("docs/builder.schema.json")).expect("schema")).expect("json");
    jsonschema::validator_for(&schema).expect("schema compiles")
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
    let base = |timeline: &str| format!(r#"{{"format": "flowc-builder/1", "campaign": {{"id": "c"}}, "trigger": {{"type": "MANUAL"}}, "timeline": {timeline}}}"#);
    let cases = [
        (base(r#"[{"id": "a", "type": "END"}, {"id": "b", "type": "SEND", "config": {"template": "T"}}]"#), "$.timeline[1].config.template: `T` is not a valid name ([a-z_][a-z0-9_]*, not a keyword)"),
        (
            base(r#"[{"id": "t", "type": "AB_TEST", "config": {"name": "t", "variants": [{"name": "a", "weight": "half", "timeline": []}]}}]"#),
            "$.timeline[0].config.variants[0].weight: expected a number, found a string",
        ),
        (base(r#"[{"id": "w", "type": "WAIT", "config": {}}]"#), "$.timeline[0].config: missing `duration`"),
        (base(r#"[{"id": "x", "type": "JUMP"}]"#), "$.timeline[0].type: expected SEND, WAIT, CONDITION, AB_TEST, TAG or END, found `JUMP`"),
        (
            base(r#"[{"id": "i", "type": "CONDITION", "config": {"branches": [{"condition": {"compare": {"op": "=", "left": {"attribute": "a"}, "right": {"number": 1}}}, "timeline": []}]}}]"#),
            "$.timeline[0].config.branches[0].condition.compare.op: expected ==, !=, <, <=, > or >=, found `=`",
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
    let line = text.lines().find_map(|l| l.trim().strip_prefix("audience ")).unwrap_or_else(|| panic!("no audience in\n{text}")).to_string();
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

