//! The expression printer: any tree prints as text that parses back to it.

mod common;

use common::gen::expr::{normalize, tree};
use flowc::source::FileId;
use flowc::syntax::ast::{Expr, Item};
use flowc::syntax::print;
use proptest::prelude::*;

/// Parses `text` as the expression of a segment; syntax errors fail the test.
fn parse(text: &str) -> Result<Expr, String> {
    let src = format!("segment s = {text}\n");
    let (file, diags) = flowc::syntax::parse(&src, FileId(0));
    if !diags.is_empty() {
        return Err(format!("`{text}` does not parse: {diags:?}"));
    }
    match file.items.as_slice() {
        [Item::Segment(s)] => Ok(s.expr.clone()),
        other => Err(format!("`{text}` parsed as {other:?}")),
    }
}

#[track_caller]
fn check(text: &str, want: &str) {
    let e = parse(text).expect("parses");
    assert_eq!(print::expr(&e), want);
}

#[test]
fn text_keeps_its_own_parentheses() {
    check("(a or b) and c", "(a or b) and c");
    check("((a))", "((a))");
    check("not (a and b)", "not (a and b)");
    check("x - (y + z)", "x - (y + z)");
    check(
        "(happened order.completed where amount > 5) and plan == pro",
        "(happened order.completed where amount > 5) and plan == pro",
    );
    check("a  ==   \"q\\\"\\n\"", "a == \"q\\\"\\n\"");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Print, then parse: the same tree, up to spans and parentheses; and
    /// printing what was parsed gives the same text again.
    #[test]
    fn printed_trees_parse_back(e in tree()) {
        let text = print::expr(&e);
        let back = parse(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(normalize(&back), normalize(&e), "printed as `{}`", text);
        prop_assert_eq!(print::expr(&back), text);
    }
}

/// The settings and steps of issue 18 that hold expressions, parsed back.
fn parse_campaign(text: &str) -> Result<flowc::syntax::ast::Campaign, String> {
    let (file, diags) = flowc::syntax::parse(text, FileId(0));
    if !diags.is_empty() {
        return Err(format!("`{text}` does not parse: {diags:?}"));
    }
    match file.items.as_slice() {
        [Item::Campaign(c)] => Ok(c.clone()),
        other => Err(format!("`{text}` parsed as {other:?}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// An `event … where` filter (a goal's, a short wait's) and a state
    /// condition (an exit's, a `when` arm's) print as text that parses back
    /// to the same trees, whatever follows them (`within`, `timeout`, `{`, the
    /// next setting).
    #[test]
    fn event_filters_and_arm_conditions_parse_back(a in tree(), b in tree(), c in tree()) {
        use flowc::source::Span;
        use flowc::syntax::ast::{ArmCond, EventMatch, Name, Setting, StepKind};
        let m = EventMatch { event: Name { text: "x.y".into(), span: Span::default() }, filter: vec![a, b], span: Span::default() };
        let filter = print::event_match(&m);
        let state = print::arm_cond(&ArmCond::State(c.clone()));
        let day = flowc::syntax::ast::DurationLit { parts: vec![(1, flowc::syntax::ast::DurationUnit::Day)], span: Span::default() };
        let goal = print::goal(&m, &day);
        let text = format!(
            "campaign k {{\n  trigger manual\n  {goal}\n  exit when {state}\n  exit when {filter}\n  w: wait until {filter} timeout 2d\n  wait until {{\n    when {state} {{ }}\n    when {filter} {{ }}\n    timeout 1d {{ }}\n  }}\n}}\n"
        );
        let k = parse_campaign(&text).map_err(TestCaseError::fail)?;
        let same = |got: &EventMatch| got.filter.iter().map(normalize).collect::<Vec<_>>() == m.filter.iter().map(normalize).collect::<Vec<_>>();
        let Setting::Goal(g) = &k.settings[1] else { return Err(TestCaseError::fail(format!("goal: {text}"))) };
        prop_assert!(same(&g.event), "{}", text);
        let Setting::Exit(ArmCond::State(e), _) = &k.settings[2] else { return Err(TestCaseError::fail(format!("exit: {text}"))) };
        prop_assert_eq!(normalize(e), normalize(&c));
        let Setting::Exit(ArmCond::Event(x), _) = &k.settings[3] else { return Err(TestCaseError::fail(format!("exit event: {text}"))) };
        prop_assert!(same(x), "{}", text);
        let (StepKind::WaitUntil(short), StepKind::WaitUntil(long)) = (&k.steps[0].kind, &k.steps[1].kind) else {
            return Err(TestCaseError::fail(format!("waits: {text}")));
        };
        let ArmCond::Event(s) = &short.arms[0].cond else { return Err(TestCaseError::fail(text)) };
        prop_assert!(same(s), "{}", text);
        prop_assert_eq!(short.timeout.as_ref().map(|t| t.duration.minutes()), Some(2 * 24 * 60));
        let ArmCond::State(e) = &long.arms[0].cond else { return Err(TestCaseError::fail(text)) };
        prop_assert_eq!(normalize(e), normalize(&c));
        let ArmCond::Event(s) = &long.arms[1].cond else { return Err(TestCaseError::fail(text)) };
        prop_assert!(same(s), "{}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Issue 19: a `set` value prints as text that parses back to the same
    /// tree, whatever step follows it (another `set`, a labelled step, the
    /// end of the block).
    #[test]
    fn set_values_parse_back(a in tree(), b in tree()) {
        use flowc::source::Span;
        use flowc::syntax::ast::{Name, StepKind};
        let field = |t: &str| Name { text: t.into(), span: Span::default() };
        let text = format!(
            "campaign k {{\n  trigger manual\n  {}\n  l: {}\n  if true {{ {} }}\n}}\n",
            print::set_step(&field("x"), &a),
            print::set_step(&field("y"), &b),
            print::set_step(&field("z"), &a),
        );
        let k = parse_campaign(&text).map_err(TestCaseError::fail)?;
        let value = |i: usize| match &k.steps.get(i).map(|s| &s.kind) {
            Some(StepKind::Set { value, .. }) => Ok(normalize(value)),
            _ => Err(TestCaseError::fail(format!("step {i} is no set: {text}"))),
        };
        prop_assert_eq!(value(0)?, normalize(&a));
        prop_assert_eq!(value(1)?, normalize(&b));
        prop_assert_eq!(k.steps.len(), 3, "{}", text);
    }
}
