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
