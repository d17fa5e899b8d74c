//! Compiler tests: golden listings, generated-campaign properties, codecs,
//! corrupt programs, SVG well-formedness, version maps.

mod common;

use common::gen;
use flowc::compile::{self, codec, program::*};
use proptest::prelude::*;
use std::path::Path;

/// Compiles every campaign of a root file (checked clean).
fn compile_file(rel: &Path) -> Vec<Program> {
    let (analysis, ws) = common::check_file(rel, &Default::default());
    assert!(!analysis.has_errors(), "{}: {:?}", rel.display(), analysis.diags);
    let (root, model) = &analysis.models[0];
    model
        .campaigns
        .iter()
        .filter(|c| c.file == *root)
        .map(|c| compile::compile(model, c, ws.sources.get(c.file)))
        .collect()
}

fn compile_source(text: &str) -> (Program, flowc::check::model::Campaign, flowc::source::SourceText) {
    let (analysis, ws) = common::check_source(text);
    let errors: Vec<_> = analysis.diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "generated campaign must check clean: {errors:?}\n{text}");
    let (_, model) = &analysis.models[0];
    let c = model.campaigns[0].clone();
    let src = ws.sources.get(c.file).clone();
    (compile::compile(model, &c, &src), c, src)
}

#[test]
fn dis_goldens() {
    common::golden("compile", |rel| compile_file(rel).iter().map(compile::dis::listing).collect::<Vec<_>>().join("\n"));
}

/// Every path from the entry reaches END: successors are in range and point
/// forward (so no cycle), and only END has no successor.
fn assert_well_formed(p: &Program) {
    for (i, n) in p.nodes.iter().enumerate() {
        let succ = n.op.successors();
        if succ.is_empty() {
            assert!(matches!(n.op, Op::End), "node {i} has no successor but is {}", n.op.kind());
        }
        for s in succ {
            assert!(s.get() < p.nodes.len() && s.get() > i, "node {i} → {}", s.0);
        }
    }
    codec::validate(p).expect("valid program");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn generated_campaigns_compile_well_formed_and_round_trip((trigger, steps) in gen::campaign()) {
        let text = gen::render(trigger, &steps);
        let (p, _, _) = compile_source(&text);
        assert_well_formed(&p);
        let bin = codec::from_binary(&codec::to_binary(&p)).expect("binary round trip");
        prop_assert_eq!(&bin, &p);
        let json = codec::from_json(&codec::to_json(&p)).expect("json round trip");
        prop_assert_eq!(&json, &p);
    }

    /// Any damage to a binary program is refused with an error, never a panic.
    #[test]
    fn corrupt_binaries_are_rejected(flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4), cut in any::<usize>()) {
        let (p, _, _) = compile_source(&format!("{}campaign c {{\n  trigger manual\n  a: send e1\n  if opened(a) {{ wait 2d }}\n}}\n", gen::PRELUDE));
        let good = codec::to_binary(&p);
        let mut bad = good.clone();
        for (i, x) in &flips {
            let at = i % bad.len();
            bad[at] ^= x;
        }
        prop_assert!(codec::from_binary(&bad).is_err());
        let truncated = &good[..cut % good.len()];
        prop_assert!(codec::from_binary(truncated).is_err());
    }
}

/// Programs that flowc 0.1 wrote (format version 1, in `tests/data/compile/v1`)
/// still load after the upgrade and keep their version, so the campaigns
/// stored in a database do not change version when flowc does.
#[test]
fn format_version_1_programs_load_and_keep_their_version() {
    for (file, version) in [("abandoned_cart", "0f42fede8ba4c209"), ("black_friday", "4d7785a82999dc66")] {
        let bytes = std::fs::read(common::root().join(format!("tests/data/compile/v1/{file}.bin"))).expect("fixture");
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1, "{file} is a version-1 fixture");
        let p = codec::from_binary(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.version.0, version);
        assert_eq!(codec::content_hash(&p).0, version);
        assert_eq!((p.goal.as_ref(), p.exits.len(), p.on_ineligible), (None, 0, OnIneligible::Skip));
        // Written again, it is a version-2 program with the same meaning.
        let again = codec::to_binary(&p);
        assert_eq!(u16::from_le_bytes([again[8], again[9]]), codec::FORMAT_VERSION);
        assert_eq!(codec::from_binary(&again).expect("v2"), p);
    }
}

/// Programs written by flowc with format version 2 (`wait until`, goals,
/// exits; before the delivery rules) load, keep their goal and version,
/// and have the v0.1 delivery rules.
#[test]
fn format_version_2_programs_load_and_keep_their_version() {
    for (file, version) in [("abandoned_cart", "371b0fa56c9f89c6"), ("spring_sale_ab", "ca4969eac99a5570")] {
        let bytes = std::fs::read(common::root().join(format!("tests/data/compile/v2/{file}.bin"))).expect("fixture");
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2, "{file} is a version-2 fixture");
        let p = codec::from_binary(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.version.0, version);
        assert_eq!(codec::content_hash(&p).0, version);
        assert!(p.goal.is_some(), "{file} has a goal");
        assert_eq!(p.delivery, Delivery::default());
        let again = codec::to_binary(&p);
        assert_eq!(u16::from_le_bytes([again[8], again[9]]), codec::FORMAT_VERSION);
        assert_eq!(codec::from_binary(&again).expect("v3"), p);
    }
}

/// A delivery rule or a `set` step changes the version; the same program
/// without them keeps it.
#[test]
fn delivery_rules_change_the_version() {
    let (p, _, _) = compile_source(&format!("{}campaign c {{\n  trigger manual\n  send e1\n}}\n", gen::PRELUDE));
    let mut q = p.clone();
    q.delivery.reentry = Reentry::Always;
    assert_ne!(codec::content_hash(&q), p.version);
    let mut q = p.clone();
    q.delivery.rate_limit = Some(RateLimit { count: 10, per: RatePer::Minute });
    assert_ne!(codec::content_hash(&q), p.version);
    assert_eq!(codec::content_hash(&p), p.version);
    q.version = codec::content_hash(&q);
    assert_eq!(codec::from_binary(&codec::to_binary(&q)).expect("v3"), q);
}

#[test]
fn version_mismatch_and_garbage_are_clear_errors() {
    let (p, _, _) = compile_source(&format!("{}campaign c {{\n  trigger manual\n  send e1\n}}\n", gen::PRELUDE));
    let mut b = codec::to_binary(&p);
    b[8] = 9;
    assert_eq!(
        codec::from_binary(&b).unwrap_err().to_string(),
        "program format version 9; this flowc reads versions 1 to 3"
    );
    assert_eq!(codec::from_binary(b"hello").unwrap_err(), codec::LoadError::BadMagic);
    // A version-2 program whose header says version 1 is refused, not read
    // without its new fields (the checksum covers the payload, not the header).
    let mut b = codec::to_binary(&p);
    b[8] = 1;
    assert!(matches!(codec::from_binary(&b), Err(codec::LoadError::Decode(_))), "{:?}", codec::from_binary(&b));
    assert!(matches!(
        codec::from_binary(b"FLOWPROG\x01\x00\xff\xff\xff\x7f").unwrap_err(),
        codec::LoadError::Invalid(_) | codec::LoadError::Truncated(_)
    ));
    // A JSON program whose jump goes backwards is refused by validation.
    let mut q = p.clone();
    q.nodes.push(Node {
        id: flowc::check::model::StepId("loop".into()),
        line: 1,
        span: (0, 0),
        op: Op::Jump { target: NodeIdx(0) },
    });
    q.version = codec::content_hash(&q);
    let err = codec::from_json(&codec::to_json(&q)).unwrap_err().to_string();
    assert!(err.contains("jumps backwards"), "{err}");
    // A tampered program whose version no longer matches its content.
    let mut r = p.clone();
    r.campaign = "other".into();
    assert!(codec::from_json(&codec::to_json(&r)).unwrap_err().to_string().contains("does not match"));
}

#[test]
fn deeply_nested_conditions_in_a_crafted_program_are_refused() {
    let (mut p, _, _) = compile_source(&format!("{}campaign c {{\n  trigger manual\n  send e1\n}}\n", gen::PRELUDE));
    let mut c = Cond::Const { value: true };
    for _ in 0..10_000 {
        c = Cond::Not { cond: Box::new(c) };
    }
    p.audience = Some(c);
    // Serialising is fine (that is our own data); loading refuses it.
    let bytes = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let b = codec::to_binary(&p);
            // Free the deep tree on this big stack too.
            drop(p);
            b
        })
        .expect("thread")
        .join()
        .expect("serialise");
    // postcard reports the depth guard as a decoding error.
    assert!(matches!(codec::from_binary(&bytes), Err(codec::LoadError::Decode(_))));
}

#[test]
fn reformatting_keeps_the_version_and_meaning_changes_it() {
    let base = format!("{}campaign c {{\n  trigger manual\n  a: send e1\n  wait 2d\n}}\n", gen::PRELUDE);
    let spaced = base.replace("  wait 2d", "\n\n      wait   2d   // same");
    let changed = base.replace("wait 2d", "wait 3d");
    let (p1, _, _) = compile_source(&base);
    let (p2, _, _) = compile_source(&spaced);
    let (p3, _, _) = compile_source(&changed);
    assert_eq!(p1.version, p2.version);
    assert_eq!(codec::without_positions(&p1), codec::without_positions(&p2));
    assert_ne!(p1.version, p3.version);
}

#[test]
fn every_example_renders_well_formed_svg() {
    for entry in std::fs::read_dir(common::root().join("examples")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "flow") {
            continue;
        }
        let rel = path.strip_prefix(common::root()).expect("rel").to_path_buf();
        let (analysis, ws) = common::check_file(&rel, &Default::default());
        let (root, model) = &analysis.models[0];
        for c in model.campaigns.iter().filter(|c| c.file == *root) {
            let svg = compile::graph::svg(c, ws.sources.get(c.file));
            let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            let steps = doc.descendants().filter(|n| n.attribute("class") == Some("step")).count();
            assert!(steps >= 3, "{}: {steps} steps drawn", rel.display());
            let p = compile::compile(model, c, ws.sources.get(c.file));
            assert!(compile::graph::dot(&p, c).starts_with("digraph"));
            assert!(compile::graph::mermaid(&p, c).starts_with("flowchart TD"));
        }
    }
}

#[test]
fn version_map_follows_labels_and_reports_removed_steps() {
    let old =
        format!("{}campaign c {{\n  trigger manual\n  a: send e1\n  w: wait 2d\n  b: send e2\n}}\n", gen::PRELUDE);
    let new = format!(
        "{}campaign c {{\n  trigger manual\n  a: send e1\n  n: tag add \"x\"\n  w: wait 3d\n}}\n",
        gen::PRELUDE
    );
    let (p_old, _, _) = compile_source(&old);
    let (p_new, _, _) = compile_source(&new);
    let m = compile::diff::map_versions(&p_old, &p_new);
    let id = |s: &str| flowc::check::model::StepId(s.into());
    assert_eq!(m.map(NodeIdx(1)), Some(NodeIdx(2)), "`w` moved from 1 to 2");
    assert!(m.kept.iter().any(|(i, _, _, changed)| *i == id("w") && *changed));
    assert!(m.kept.iter().any(|(i, _, _, changed)| *i == id("a") && !*changed));
    assert_eq!(m.removed.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), vec![id("b")]);
    assert!(m.added.iter().any(|(i, _)| *i == id("n")));
}

/// Issue 18: each arm and the timeout of a `wait until` open with a `Jump`
/// named `<wait>/when<k>` / `<wait>/timeout`; an arm's block ends by going
/// on after the wait unless it ends; the short form is one arm and a timeout,
/// both empty. Goal, exits and `on ineligible` reach the program.
#[test]
fn wait_until_lowers_to_named_paths_goal_and_exits() {
    let p = &compile_file(Path::new("tests/data/compile/wait_until.flow"))[0];
    assert_well_formed(p);
    let id = |i: NodeIdx| p.nodes[i.get()].id.0.clone();
    let at = |name: &str| p.nodes.iter().position(|n| n.id.0 == name).unwrap_or_else(|| panic!("no step {name}"));
    let Op::WaitUntil { arms, timeout_minutes, timeout } = &p.nodes[at("cart")].op else {
        panic!("cart is a wait until")
    };
    assert_eq!(arms.iter().map(|a| id(a.target)).collect::<Vec<_>>(), ["cart/when1", "cart/when2", "cart/when3"]);
    assert_eq!((id(*timeout), *timeout_minutes), ("cart/timeout".to_string(), 3 * 24 * 60));
    match &arms[0].on {
        WaitOn::Event { event } => {
            assert_eq!(event.event, "order.completed");
            assert_eq!(event.props, ["amount", "currency"]);
            assert_eq!(event.filter.len(), 1);
        }
        other => panic!("arm 1 waits for an event, not {other:?}"),
    }
    assert!(matches!(arms[1].on, WaitOn::State { cond: Cond::Engaged { .. } }));
    // Arm 1 runs its block and ends; arm 2 (empty) and the end of arm 3 and
    // of the timeout go on at the short wait after the block.
    let next = at("cart_wait/3");
    let target_of = |i: usize| p.nodes[i].op.successors();
    assert_eq!(target_of(at("cart/when1")), [NodeIdx(at("cart/when1/1") as u32)]);
    assert!(matches!(p.nodes[at("cart/when1/2")].op, Op::End));
    assert_eq!(target_of(at("cart/when2")), [NodeIdx(next as u32)]);
    assert_eq!(target_of(at("cart/when3/1")), [NodeIdx(next as u32)]);
    assert_eq!(target_of(at("cart/timeout/1")), [NodeIdx(next as u32)]);
    let Op::WaitUntil { arms, timeout, timeout_minutes } = &p.nodes[next].op else { panic!("short form") };
    assert_eq!(arms.len(), 1);
    assert_eq!(
        (id(arms[0].target), id(*timeout), *timeout_minutes),
        ("cart_wait/3/when1".into(), "cart_wait/3/timeout".into(), 2 * 24 * 60)
    );
    let after = NodeIdx(at("cart_wait/4") as u32);
    assert_eq!(target_of(arms[0].target.get()), [after]);
    assert_eq!(target_of(timeout.get()), [after]);

    let goal = p.goal.as_ref().expect("goal");
    assert_eq!(
        (goal.event.event.as_str(), goal.within_minutes, goal.event.filter.len()),
        ("order.completed", 7 * 24 * 60, 1)
    );
    assert_eq!(p.exits.len(), 2);
    assert!(
        matches!(&p.exits[0], Exit::Event { event } if event.event == "order.completed" && event.filter.len() == 1)
    );
    assert!(matches!(&p.exits[1], Exit::State { cond: Cond::Has { .. } }));
    assert_eq!(p.on_ineligible, OnIneligible::Continue);
    // The binary and JSON codecs keep all of it.
    assert_eq!(&codec::from_binary(&codec::to_binary(p)).expect("binary decodes"), p);
    assert_eq!(&codec::from_json(&codec::to_json(p)).expect("JSON decodes"), p);
}

/// Issue 18: the version map knows a `wait until`'s paths by their ids: an
/// execution waiting at the wait maps onto it, a path added or removed shows.
#[test]
fn version_map_knows_wait_until_paths() {
    let old = format!(
        "{}campaign c {{\n  trigger manual\n  a: send e1\n  w: wait until {{\n    when event order.completed {{ send e2 }}\n    when plan == pro {{ }}\n    timeout 2d {{ }}\n  }}\n}}\n",
        gen::PRELUDE
    );
    let new = format!(
        "{}campaign c {{\n  trigger manual\n  a: send e1\n  t: tag add \"x\"\n  w: wait until {{\n    when event order.completed {{ send e2 }}\n    timeout 3d {{ end }}\n  }}\n}}\n",
        gen::PRELUDE
    );
    let (p_old, _, _) = compile_source(&old);
    let (p_new, _, _) = compile_source(&new);
    let m = compile::diff::map_versions(&p_old, &p_new);
    let ids = |v: Vec<&flowc::check::model::StepId>| v.into_iter().map(|i| i.0.clone()).collect::<Vec<_>>();
    assert_eq!(m.map(NodeIdx(1)), Some(NodeIdx(2)), "executions waiting at `w` move with it");
    assert!(m.kept.iter().any(|(i, _, _, changed)| i.0 == "w" && *changed), "its arms and timeout changed");
    assert!(m.kept.iter().any(|(i, _, _, changed)| i.0 == "w/when1/1" && !*changed));
    assert_eq!(ids(m.removed.iter().map(|(i, _)| i).collect()), ["w/when2"]);
    assert_eq!(ids(m.added.iter().map(|(i, _)| i).collect()), ["t", "w/timeout/1"]);
    let text = compile::diff::render(&p_old, &p_new, &m);
    assert!(text.contains("- w/when2"), "{text}");
}

/// Issue 19: the delivery settings and the workspace's caps reach every
/// campaign's program; `set` lowers to SET with the field's slot, a bool
/// field's value as a condition, `none` as the absent constant.
#[test]
fn delivery_rules_and_set_lower_to_the_program() {
    let programs = compile_file(Path::new("tests/data/compile/delivery.flow"));
    let caps = vec![
        FrequencyCap { channel: None, count: 3, window_minutes: 7 * 24 * 60 },
        FrequencyCap { channel: Some("sms".into()), count: 1, window_minutes: 24 * 60 },
    ];
    let p = &programs[0];
    assert_well_formed(p);
    assert_eq!(
        p.delivery,
        Delivery {
            quiet_hours: Some(QuietHours { start_minute: 21 * 60, end_minute: 8 * 60, then: QuietThen::Skip }),
            reentry: Reentry::After { minutes: 30 * 24 * 60 },
            rate_limit: Some(RateLimit { count: 600, per: RatePer::Minute }),
            frequency_caps: caps.clone(),
        }
    );
    let plain = &programs[1];
    assert_eq!(
        plain.delivery,
        Delivery {
            quiet_hours: Some(QuietHours { start_minute: 22 * 60 + 30, end_minute: 7 * 60, then: QuietThen::Hold }),
            reentry: Reentry::Always,
            rate_limit: None,
            frequency_caps: caps,
        }
    );
    let set = |id: &str| {
        let n = p.nodes.iter().find(|n| n.id.0 == id).unwrap_or_else(|| panic!("no step {id}"));
        match &n.op {
            Op::Set { field, slot, value, .. } => {
                assert_eq!(p.fields[slot.0 as usize].name, *field, "the slot is the field's");
                (field.clone(), value.clone())
            }
            other => panic!("{id} is a set, not {other:?}"),
        }
    };
    assert!(
        matches!(set("black_friday/2"), (f, SetValue::Operand { operand: Operand::Sum { .. } }) if f == "lifetime_value")
    );
    assert_eq!(
        set("bump"),
        ("plan".into(), SetValue::Operand { operand: Operand::Const { value: Const::Enum("pro".into()) } })
    );
    assert!(matches!(set("black_friday/4"), (f, SetValue::Cond { cond: Cond::And { .. } }) if f == "vip"));
    assert_eq!(
        set("black_friday/5"),
        ("last_promo_at".into(), SetValue::Operand { operand: Operand::Now { offset_minutes: 24 * 60 } })
    );
    assert_eq!(
        set("black_friday/6/then/1"),
        ("last_promo_at".into(), SetValue::Operand { operand: Operand::Const { value: Const::None } })
    );
    assert_eq!(&codec::from_binary(&codec::to_binary(p)).expect("binary decodes"), p);
    assert_eq!(&codec::from_json(&codec::to_json(p)).expect("JSON decodes"), p);
    codec::validate(p).expect("valid");
}

/// Issue 19: `set` steps keep their ids across versions (label, else their
/// structural path, like tag steps), so the version map follows them.
#[test]
fn version_map_knows_set_steps() {
    let old = format!(
        "{}campaign c {{\n  trigger manual\n  a: send e1\n  bump: set score = score + 1\n  set plan = pro\n}}\n",
        gen::PRELUDE
    );
    let new = format!(
        "{}campaign c {{\n  trigger manual\n  a: send e1\n  wait 1d\n  bump: set score = score + 2\n  set plan = pro\n}}\n",
        gen::PRELUDE
    );
    let (p_old, _, _) = compile_source(&old);
    let (p_new, _, _) = compile_source(&new);
    let m = compile::diff::map_versions(&p_old, &p_new);
    assert_eq!(m.map(NodeIdx(1)), Some(NodeIdx(2)), "executions at `bump` move with it");
    assert!(m.kept.iter().any(|(i, _, _, changed)| i.0 == "bump" && *changed), "its value changed");
    let ids = |v: Vec<&flowc::check::model::StepId>| v.into_iter().map(|i| i.0.clone()).collect::<Vec<_>>();
    // The unlabelled set is step 3 before and step 4 after: a structural id.
    assert_eq!(ids(m.removed.iter().map(|(i, _)| i).collect()), ["c/3"]);
    assert_eq!(ids(m.added.iter().map(|(i, _)| i).collect()), ["c/2", "c/4"]);
    let text = compile::diff::render(&p_old, &p_new, &m);
    assert!(text.contains("SET score = score + 2"), "{text}");
}
