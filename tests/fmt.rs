//! Formatter tests: goldens, idempotence, comments kept, meaning kept.

mod common;

use common::gen;
use flowc::compile::codec;
use flowc::source::FileId;
use proptest::prelude::*;

fn fmt(text: &str) -> String {
    let (tree, diags) = flowc::syntax::parse(text, FileId(0));
    assert!(diags.is_empty(), "{diags:?}");
    flowc::fmt::format(&tree, text)
}

#[test]
fn fmt_goldens() {
    common::golden("fmt", |rel| {
        let text = std::fs::read_to_string(common::root().join(rel)).expect("read");
        let once = fmt(&text);
        assert_eq!(fmt(&once), once, "{}: not idempotent", rel.display());
        once
    });
}

#[test]
fn examples_are_formatted() {
    for entry in std::fs::read_dir(common::root().join("examples")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "flow") {
            let text = std::fs::read_to_string(&path).expect("read");
            assert_eq!(fmt(&text), text, "{} is not formatted (run `flowc fmt examples/`)", path.display());
        }
    }
}

#[test]
fn every_comment_survives() {
    let text = std::fs::read_to_string(common::root().join("tests/data/fmt/ugly_comments.flow")).expect("read");
    let out = fmt(&text);
    let (before, _) = flowc::syntax::parse(&text, FileId(0));
    let (after, _) = flowc::syntax::parse(&out, FileId(0));
    let words = |src: &str, f: &flowc::syntax::ast::SourceFile| f.comments.iter().map(|c| src[c.span.range()].to_string()).collect::<Vec<_>>();
    assert_eq!(words(&text, &before), words(&out, &after));
}

/// Compiles the first campaign of a source (checked clean).
fn program(text: &str) -> flowc::compile::program::Program {
    let (analysis, ws) = common::check_source(text);
    assert!(!analysis.has_errors(), "{:?}\n{text}", analysis.diags);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    codec::without_positions(&flowc::compile::compile(model, c, ws.sources.get(c.file)))
}

/// Whitespace noise outside strings (generated sources have no spaces in
/// strings), leaving the one space inside a datetime literal alone.
fn uglify(text: &str, noise: &[u8]) -> String {
    let mut out = String::new();
    let mut k = 0;
    let mut in_string = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == ' ' && chars.peek().is_some_and(|c| c.is_ascii_digit()) && out.ends_with(|c: char| c.is_ascii_digit()) {
            out.push(ch);
            continue;
        }
        if ch == '"' {
            in_string = !in_string;
        }
        if !in_string && (ch == ' ' || ch == '\n') {
            let n = noise.get(k % noise.len().max(1)).copied().unwrap_or(0);
            k += 1;
            match (ch, n % 4) {
                (' ', 0) => out.push_str("   "),
                ('\n', 1) => out.push_str("\n\n\n  "),
                ('\n', 2) => out.push_str("   // noise\n"),
                _ => out.push(ch),
            }
            continue;
        }
        out.push(ch);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn fmt_is_idempotent_and_keeps_the_program((trigger, steps) in gen::campaign(), noise in proptest::collection::vec(any::<u8>(), 1..64)) {
        let clean = gen::render(trigger, &steps);
        let ugly = uglify(&clean, &noise);
        let once = fmt(&ugly);
        prop_assert_eq!(&fmt(&once), &once);
        prop_assert_eq!(program(&once), program(&clean));
        // Spacing alone never changes the output.
        prop_assert_eq!(fmt(&clean), fmt(&uglify(&clean, &[0, 3])));
    }
}
