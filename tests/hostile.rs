//! Hostile input: deep nesting, huge files, NUL bytes, random mutations.
//! Each must give a result or a clean error, never a panic, overflow or hang.

mod common;

use flowc::source::FileId;
use proptest::prelude::*;

fn parse(text: &str) -> (flowc::syntax::ast::SourceFile, Vec<flowc::diag::Diagnostic>) {
    flowc::syntax::parse(text, FileId(0))
}

#[test]
fn ten_thousand_nested_ifs_hit_the_nesting_limit() {
    let mut text = String::from("campaign c {\n  trigger manual\n");
    for _ in 0..10_000 {
        text.push_str("if plan == pro {\n");
    }
    for _ in 0..10_000 {
        text.push('}');
    }
    text.push_str("\n}\nsegment after = plan == pro\n");
    let (tree, diags) = parse(&text);
    assert!(diags.iter().any(|d| d.message.contains("nesting deeper than")), "{diags:?}");
    assert_eq!(tree.items.len(), 1, "the declaration after the deep one still parses");
}

#[test]
fn nesting_just_under_the_limit_parses_and_checks() {
    // Each `if` block is one level; the campaign body is another.
    let depth = flowc::syntax::MAX_NESTING - 1;
    let mut text = String::from(
        "template t { channel email message marketing status published }\ncampaign c {\n  trigger manual\n",
    );
    for _ in 0..depth {
        text.push_str("if not (tags has \"x\") {\n");
    }
    text.push_str("send email.marketing t\n");
    for _ in 0..depth {
        text.push('}');
    }
    text.push_str("\n}\n");
    let (tree, diags) = parse(&text);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(tree.items.len(), 2);
    let (analysis, _) = common::check_source(&text);
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
}

#[test]
fn long_operator_chains_are_flat() {
    let chain = vec!["plan == pro"; 20_000].join(" or ");
    let not_chain = format!("{}plan == pro", "not ".repeat(10_000));
    let (tree, diags) =
        parse(&format!("contact {{ plan: enum(pro) }}\nsegment s = {chain}\nsegment n = {not_chain}\n"));
    assert_eq!(tree.items.len(), 3);
    assert_eq!(diags.len(), 1, "too many `not`s is reported once: {diags:?}");
}

#[test]
fn nul_bytes_and_garbage() {
    let (_, diags) = parse(&"\0".repeat(100_000));
    assert_eq!(diags.len(), 1);
    let (_, diags) = parse("\u{feff}segment a = \u{0}");
    assert!(!diags.is_empty());
}

#[test]
fn a_large_file_parses() {
    // 50 MB in release; a smaller multiple here keeps the debug suite quick,
    // and FLOWC_SLOW_TESTS=1 (or CI=true, as on CI) runs the full size.
    let target = if std::env::var_os("FLOWC_SLOW_TESTS").is_some() || std::env::var_os("CI").is_some() {
        50 << 20
    } else {
        5 << 20
    };
    let unit = "segment s = plan == pro and lifetime_value > 100 or tags has \"vip\"\n";
    let text = unit.repeat(target / unit.len());
    let (tree, diags) = parse(&text);
    assert!(diags.is_empty());
    assert_eq!(tree.items.len(), target / unit.len());
}

fn examples() -> Vec<String> {
    let dir = common::root().join("examples");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("examples")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "flow"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    out.sort();
    out
}

const TOKENS: &[&str] = &[
    "{", "}", "(", ")", "\"", "/*", "//", "if", "else", "send", "end", "ab_test", "variant", "50%", "2d", "==", "and",
    "not", "\n", ".", ":", "happened", "campaign", "\0", "é", "[", "]",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Splice(usize, usize),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(i, t)| Mutation::Splice(i, t)),
        (any::<usize>(), 0usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in muts {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    bytes[i % len] = b;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            Mutation::Splice(i, t) => {
                let at = i % len.min(bytes.len() + 1).max(1);
                let at = at.min(bytes.len());
                bytes.splice(at..at, TOKENS[t].bytes());
            }
            Mutation::Delete(i, n) => {
                let at = (i % len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Mutated examples never panic the parser or the checker, and every
    /// diagnostic span stays inside the text.
    #[test]
    fn mutations_never_panic(which in 0usize..16, muts in proptest::collection::vec(mutation(), 1..6)) {
        let all = examples();
        let text = apply(&all[which % all.len()], &muts);
        let (_, diags) = parse(&text);
        for d in &diags {
            prop_assert!(d.span.end as usize <= text.len() + 1, "span past the end: {:?}", d);
        }
        let (analysis, ws) = common::check_source(&text);
        let rendered = common::human(&analysis.diags, &ws.sources);
        prop_assert!(analysis.diags.is_empty() || !rendered.is_empty());
    }
}

/// Parsing on several threads gives exactly the sequential result, broken
/// declarations and all.
#[test]
fn parallel_parse_equals_sequential() {
    use flowc::syntax::{parse_with, ParseOptions};
    let mut text = String::new();
    for (i, ex) in examples().iter().cycle().take(60).enumerate() {
        text.push_str(ex);
        if i % 7 == 0 {
            text.push_str("campaign broken {\n  sned x\n}\nsegment s = (\n");
        }
    }
    let seq = parse_with(&text, FileId(0), ParseOptions { threads: 1 });
    for threads in [2, 3, 8] {
        let par = parse_with(&text, FileId(0), ParseOptions { threads });
        assert_eq!(par.0, seq.0, "{threads} threads");
        assert_eq!(par.1, seq.1, "{threads} threads");
    }
    assert!(!seq.1.is_empty());
}

/// Deep parentheses right under the limit parse and check on an ordinary
/// 2 MiB test thread: the parser brings its own stack.
#[test]
fn deep_parentheses_under_the_limit() {
    let depth = flowc::syntax::MAX_NESTING - 1;
    let text = format!(
        "contact {{ plan: enum(pro) }}\nsegment s = {}plan == pro{}\n",
        "(not ".repeat(depth),
        ")".repeat(depth)
    );
    let (analysis, _) = common::check_source(&text);
    assert!(analysis.diags.is_empty(), "{:?}", analysis.diags);
    let over = format!("segment s = {}plan == pro{}\n", "(".repeat(depth + 2), ")".repeat(depth + 2));
    let (_, diags) = parse(&over);
    assert!(diags.iter().any(|d| d.message.contains("nesting deeper")));
}

/// Text shallow enough to parse on the caller's thread must fit a 2 MiB
/// stack in this (debug) build, whatever mixes of blocks and parentheses
/// reach the inline limit.
#[test]
fn shallow_text_parses_inline_on_a_small_stack() {
    let levels = flowc::syntax::INLINE_DEPTH;
    let shapes = [
        // Blocks of ifs, the innermost condition parenthesised.
        |n: usize| {
            let mut t = String::from("campaign c {\n  trigger manual\n");
            for _ in 0..n.saturating_sub(2) {
                t.push_str("if not (plan == pro) or score > 1 {\n");
            }
            t.push_str("if (plan == pro) { end }\n");
            t.push_str(&"}".repeat(n.saturating_sub(2)));
            t.push_str("\n}\n");
            t
        },
        // A/B variants inside each other.
        |n: usize| {
            let mut t = String::from("campaign c {\n  trigger manual\n");
            let inner = (n - 1) / 2;
            for _ in 0..inner {
                t.push_str("ab_test t { variant a 50% {\n");
            }
            t.push_str("end\n");
            for _ in 0..inner {
                t.push_str("} variant b 50% { } }\n");
            }
            t.push_str("}\n");
            t
        },
        // Parentheses only.
        |n: usize| format!("segment s = {}plan == pro{}\n", "(not ".repeat(n), ")".repeat(n)),
        // Lists and calls inside parentheses.
        |n: usize| format!("segment s = {}plan in [a, b] and consent(email){}\n", "(".repeat(n - 1), ")".repeat(n - 1)),
    ];
    for shape in shapes {
        let text = shape(levels);
        let out =
            std::thread::Builder::new().stack_size(2 << 20).spawn(move || parse(&text).1.len()).expect("thread").join();
        assert!(out.is_ok(), "overflowed");
    }
}

/// Right under the nesting limit, every shape of block and parenthesis
/// checks, compiles and formats on an ordinary 2 MiB thread.
#[test]
fn deepest_allowed_nesting_checks_compiles_and_formats_on_a_small_stack() {
    // Each A/B level opens two braces; each `if` one, plus a parenthesis in its condition.
    let n = (flowc::syntax::MAX_NESTING - 2) / 2;
    let mut ab = String::from(
        "template t { channel email message marketing status published }\ncampaign c {\n  trigger manual\n",
    );
    for i in 0..n {
        ab.push_str(&format!("ab_test t{i} {{ variant a 50% {{\n"));
    }
    ab.push_str("send email.marketing t\n");
    for _ in 0..n {
        ab.push_str("} variant b 50% { send email.marketing t } }\n");
    }
    ab.push_str("}\n");
    let n = flowc::syntax::MAX_NESTING - 3;
    let mut ifs = String::from("template t { channel email message marketing status published }\ncampaign c {\n  trigger manual\n  x: send email.marketing t\n");
    for _ in 0..n {
        ifs.push_str("if opened(x) and not (tags has \"a\") {\nwait 1d\n");
    }
    ifs.push_str("send email.marketing t\n");
    for _ in 0..n {
        ifs.push_str("} else { tag add \"b\" }\n");
    }
    ifs.push_str("}\n");
    for text in [ab, ifs] {
        let ok = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let (analysis, ws) = common::check_source(&text);
                assert!(!analysis.has_errors(), "{:?}", analysis.diags.first());
                let (_, model) = &analysis.models[0];
                let c = &model.campaigns[0];
                let p = flowc::compile::compile(model, c, ws.sources.get(c.file));
                let (tree, _) = parse(&text);
                flowc::fmt::format(&tree, &text).len() + p.nodes.len()
            })
            .expect("thread")
            .join();
        assert!(ok.is_ok());
    }
}

/// A reader (or a symlink loop) that yields a new file for every path must
/// not recurse forever: the import chain is bounded.
#[test]
fn endless_import_chains_stop_with_a_diagnostic() {
    let text = "import \"sub/again.flow\"\nsegment s = tags has \"x\"\n".to_string();
    let out = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let (analysis, _) = common::check_source(&text);
            analysis.diags.iter().any(|d| d.message.contains("imports nest deeper"))
        })
        .expect("thread")
        .join();
    assert_eq!(out.ok(), Some(true));
}

/// A 30 MB identifier once gave 167 MB of report (the line, an underline as
/// long, the name in the message). The report is now a few KiB whatever the
/// size, in every output format.
#[test]
fn a_huge_identifier_gives_a_small_report() {
    let size = if std::env::var_os("FLOWC_SLOW_TESTS").is_some() || std::env::var_os("CI").is_some() {
        30 << 20
    } else {
        3 << 20
    };
    let text = format!("campaign c {{\n  trigger manual\n  audience {}\n  end\n}}\n", "a".repeat(size));
    let (analysis, ws) = common::check_source(&text);
    assert!(
        analysis.diags.iter().any(|d| d.code == flowc::diag::Code::UnknownSegment),
        "{:?}",
        analysis.diags.iter().map(|d| d.code).collect::<Vec<_>>()
    );
    let human = common::human(&analysis.diags, &ws.sources);
    assert!(human.len() < 8 * 1024, "{} bytes of human report", human.len());
    assert!(human.contains("unknown segment `aaaa") && human.contains('…'), "{human}");
    let json = flowc::diag::render::json(&analysis.diags, &ws.sources).to_string();
    assert!(json.len() < 8 * 1024, "{} bytes of JSON", json.len());
    let github = flowc::diag::render::github(&analysis.diags, &ws.sources);
    assert!(github.len() < 8 * 1024, "{} bytes of annotations", github.len());
}

// ---- Crafted programs: whatever `validate` accepts can be listed,
// ---- evaluated, stepped and estimated without a panic.

/// A campaign with a constant of every kind: dates, datetimes, durations,
/// numbers, offsets from now and from fields, `in` lists, a `happened`
/// window, waits, splits, sends with fallbacks, and an event filter.
const CRAFT_BASE: &str = r#"template e1 { channel email message marketing status published }
template r1 { channel rcs message promotional status published }
template s1 { channel sms message promotional status published }
contact {
  plan: enum(free, pro)
  score: number
  birthday: date?
  seen: datetime?
  gap: duration?
}
event order.completed { amount: number }
segment big = score + 2 > 100 - score and birthday > 1990-01-01
campaign c {
  trigger event order.completed where amount > 50.5 and amount < 1000000
  audience big and seen < 2026-06-01 12:00 and seen > now - 30d and gap < 2d
    and birthday + 1d < 2030-01-01 and plan in [free, pro] and (happened order.completed within 7d where amount >= 3)
  a: send email.marketing e1
  wait 2d
  if opened(a) and seen + 1h > now { send rcs.promotional r1 fallback sms.promotional s1 }
  ab_test t {
    variant x 50% { tag add "x" }
    variant y 50% { wait 1d }
  }
}
"#;

const CRAFT_SCHEDULED: &str = r#"template e1 { channel email message marketing status published }
contact { score: number }
campaign c {
  trigger scheduled at 2026-12-01 09:00 "Europe/Paris"
  audience score > -2.5
  send email.marketing e1
}
"#;

fn crafted_base(text: &str) -> flowc::compile::program::Program {
    let (analysis, ws) = common::check_source(text);
    assert!(!analysis.has_errors(), "{:?}", analysis.diags);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    flowc::compile::compile(model, c, ws.sources.get(c.file))
}

/// Re-signs a program edited by hand, as an attacker would: the version is
/// only a content hash, so it is no defence.
fn resign(mut p: flowc::compile::program::Program) -> flowc::compile::program::Program {
    p.version = flowc::compile::codec::content_hash(&p);
    p
}

/// Everything a loaded program goes through in the commands and the
/// runtime. (`flowc graph` draws from source, never from a loaded program.)
fn exercise(p: &flowc::compile::program::Program) {
    use flowc::runtime::sqlite::segment as sql;
    use flowc::runtime::{eval, facts, step};
    let _ = flowc::compile::dis::listing(p);
    let attrs = serde_json::json!({"email": "a@example.com", "phone": "+33600000000", "plan": "pro", "score": 1e300, "birthday": "2000-02-29", "seen": "2026-01-01T00:00:00Z", "gap": 9_000_000_000_000i64});
    let record = facts::ContactRecord {
        id: "c1".into(),
        attrs: attrs.as_object().cloned().unwrap_or_default(),
        tags: vec!["x".into()],
        consent: vec!["email".into(), "sms".into()],
        capabilities: vec!["rcs".into()],
    };
    let event = facts::ContactEvent {
        name: "order.completed".into(),
        at: 29_000_000,
        props: serde_json::from_str(r#"{"amount": 60}"#).expect("props"),
    };
    let account = step::Account { approved_channels: None };
    for now in [0, 29_000_000, i64::MAX / 2, i64::MIN / 2] {
        let mut f = facts::of_record(p, &record, vec![event.clone()]);
        let cx = eval::Ctx { program: p, facts: &f, now };
        let conds = p.audience.iter().chain(p.segments.iter().map(|s| &s.cond));
        for c in conds {
            let _ = eval::eval(&cx, c);
            let _ = sql::condition(p, c, now);
        }
        if let flowc::compile::program::Trigger::Event { filter: Some(filter), .. } = &p.trigger {
            let _ = sql::condition(p, filter, now);
        }
        let mut pc = flowc::compile::program::NodeIdx(0);
        for _ in 0..=p.nodes.len() {
            match step::advance(p, pc, step::Moments::default(), &mut f, now, &account, &mut Vec::new()) {
                step::Stop::Send { next, .. } | step::Stop::Wait { next, .. } => pc = next,
                _ => break,
            }
        }
    }
    let mut store = flowc::runtime::sqlite::SqliteStore::open_in_memory().expect("store");
    flowc::runtime::store::Store::upsert_contacts(
        &mut store,
        &[record],
        &[flowc::runtime::store::EventOf { contact: "c1".into(), event }],
    )
    .expect("contacts");
    let settings = flowc::runtime::estimate::Settings {
        rates: flowc::runtime::estimate::Rates { delivered: 0.9, opened: 0.5, clicked: 0.1 },
        account,
        event_window: flowc::runtime::estimate::DEFAULT_EVENT_WINDOW,
        consent_messages: Default::default(),
        walks: flowc::runtime::estimate::Walks::Shared,
    };
    let _ = flowc::runtime::estimate::estimate(&store, p, 29_000_000, &settings);
}

/// A date constant of 2^62 days passed validation and then panicked `flowc
/// dis` ("TimeDelta::days out of bounds"). Every constant kind out of range
/// is refused with a clear error, from JSON, from binary and by the CLI.
#[test]
fn constants_out_of_range_are_refused_when_loading() {
    use flowc::compile::codec;
    use flowc::compile::program::{Cond, Const, Operand, Trigger};
    let base = crafted_base(CRAFT_BASE);
    // Replaces the constant on the right of the audience's first comparison
    // with each given value, and the offsets of `now - 30d`.
    let with_const = |value: Const| {
        let mut p = base.clone();
        if let Some(Cond::And { all }) = &mut p.audience {
            all.push(Cond::Cmp {
                op: flowc::compile::program::CmpOpRepr::Eq,
                lhs: Operand::Field { slot: flowc::compile::program::FieldSlot(0) },
                rhs: Operand::Const { value },
            });
        }
        resign(p)
    };
    let bad = [
        Const::Date(1 << 62),
        Const::Date(-(1 << 62)),
        Const::Date(flowc::limits::MAX_DATE + 1),
        Const::Datetime(i64::MAX),
        Const::Datetime(flowc::limits::MIN_DATETIME - 1),
        Const::Duration(i64::MIN),
        Const::Duration(flowc::limits::MAX_DURATION + 1),
        Const::Number(f64::INFINITY),
        Const::Number(f64::NAN),
    ];
    for value in bad {
        let p = with_const(value.clone());
        let err = codec::from_binary(&codec::to_binary(&p)).expect_err(&format!("{value:?} must be refused"));
        assert!(err.to_string().contains("out of range"), "{value:?}: {err}");
        if !matches!(value, Const::Number(_)) {
            assert!(codec::from_json(&codec::to_json(&p)).is_err(), "{value:?} from JSON");
        }
    }
    for value in [
        Const::Date(flowc::limits::MAX_DATE),
        Const::Datetime(flowc::limits::MIN_DATETIME),
        Const::Duration(-flowc::limits::MAX_DURATION),
        Const::Number(f64::MAX),
    ] {
        let p = codec::from_binary(&codec::to_binary(&with_const(value.clone())))
            .unwrap_or_else(|e| panic!("{value:?} is in range: {e}"));
        exercise(&p);
    }
    // Offsets from now and from a field, a `happened` window, a price, a schedule.
    let mut p = base.clone();
    let mut text = codec::to_json(&p);
    for (from, to) in [
        ("\"offset_minutes\": -43200", "\"offset_minutes\": -9223372036854775808"),
        ("\"within_minutes\": 10080", "\"within_minutes\": 0"),
    ] {
        assert!(text.contains(from), "{from}");
        let crafted = resign(serde_json::from_str(&text.replacen(from, to, 1)).expect("program"));
        assert!(codec::from_json(&codec::to_json(&crafted)).unwrap_err().to_string().contains("out of range"), "{to}");
    }
    if let flowc::compile::program::Op::Send { target, .. } = &mut p.nodes[0].op {
        target.price_micros = -1;
    }
    assert!(codec::from_json(&codec::to_json(&resign(p))).unwrap_err().to_string().contains("out of range"));
    let scheduled = crafted_base(CRAFT_SCHEDULED);
    for (at, zone) in
        [("-262143-01-01T00:00", "UTC"), ("2026-13-01T00:00", "UTC"), ("2026-12-01T09:00", "Mars/Olympus"), ("", "UTC")]
    {
        let mut q = scheduled.clone();
        q.trigger = Trigger::Scheduled { at: at.into(), zone: zone.into() };
        assert!(codec::from_json(&codec::to_json(&resign(q))).is_err(), "{at} {zone}");
    }
    // The CLI says so and exits 2, where it used to panic.
    text = codec::to_json(&with_const(Const::Date(1 << 62)));
    let dir = std::env::temp_dir().join(format!("flowc-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("crafted.json");
    std::fs::write(&path, text).expect("write");
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_flowc")).arg("dis").arg(&path).output().expect("run flowc");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("out of range") && !stderr.contains("panicked"), "{stderr}");
}

/// Every leaf of a program's JSON, by path, for the mutation below.
fn leaves(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                leaves(x, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn leaf_mut<'v>(v: &'v mut serde_json::Value, path: &[String]) -> Option<&'v mut serde_json::Value> {
    path.iter().try_fold(v, |v, k| match v {
        serde_json::Value::Object(m) => m.get_mut(k),
        serde_json::Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// Values an attacker would try, by the kind of leaf they replace, so most
/// crafted programs still decode and reach `validate`.
fn hostile_value(old: &serde_json::Value, pick: usize) -> serde_json::Value {
    use serde_json::{json, Value};
    let numbers = [
        json!(i64::MIN),
        json!(i64::MAX),
        json!(1i64 << 62),
        json!(-(1i64 << 62)),
        json!(u64::MAX),
        json!(u32::MAX),
        json!(65_535),
        json!(-1),
        json!(0),
        json!(1),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
        json!(flowc::limits::MAX_DURATION),
        json!(-flowc::limits::MAX_DURATION),
        json!(flowc::limits::MAX_DATETIME),
        json!(flowc::limits::MIN_DATETIME),
        json!(flowc::limits::MAX_DATE),
        json!(flowc::limits::MIN_DATE),
        json!(flowc::limits::MAX_PRICE_MICROS),
    ];
    let strings = [
        "",
        "x",
        "-262143-01-01T00:00",
        "+262142-12-31T23:59",
        "0000-01-01T00:00",
        "9999-12-31T23:59",
        "2026-02-30T10:00",
        "Mars/Olympus",
        "UTC",
        "c/1",
        "\u{0}é\u{202e}",
    ];
    match old {
        Value::Number(_) => numbers[pick % numbers.len()].clone(),
        Value::String(_) => json!(strings[pick % strings.len()]),
        Value::Bool(b) => json!(!b),
        _ => numbers[pick % numbers.len()].clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Programs with hostile values put in their leaves, then re-signed:
    /// either `validate` refuses them, or nothing downstream panics.
    #[test]
    fn crafted_programs_that_load_never_panic(scheduled in any::<bool>(), edits in proptest::collection::vec((any::<bool>(), any::<usize>(), any::<usize>()), 1..4)) {
        let base = crafted_base(if scheduled { CRAFT_SCHEDULED } else { CRAFT_BASE });
        let mut v = serde_json::to_value(&base).expect("json");
        let mut all = Vec::new();
        leaves(&v, &mut Vec::new(), &mut all);
        // Half the edits aim at the constants, where ranges matter most.
        const CONSTANTS: &[&str] = &["value", "date", "datetime", "duration", "number", "offset_minutes", "within_minutes", "minutes", "price_micros", "weight_bp", "at", "zone"];
        let constants: Vec<&Vec<String>> = all.iter().filter(|p| p.iter().any(|k| CONSTANTS.contains(&k.as_str()))).collect();
        for (aimed, i, pick) in edits {
            let path = if aimed { constants[i % constants.len()] } else { &all[i % all.len()] };
            if let Some(leaf) = leaf_mut(&mut v, path) {
                *leaf = hostile_value(leaf, pick);
            }
        }
        let Ok(p) = serde_json::from_value::<flowc::compile::program::Program>(v) else { return Ok(()) };
        let text = flowc::compile::codec::to_json(&resign(p));
        if let Ok(p) = flowc::compile::codec::from_json(&text) {
            exercise(&p);
        }
    }
}
