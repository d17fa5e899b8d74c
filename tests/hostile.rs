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
    let mut text = String::from("template t { channel email message marketing status published }\ncampaign c {\n  trigger manual\n");
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
    let (tree, diags) = parse(&format!("contact {{ plan: enum(pro) }}\nsegment s = {chain}\nsegment n = {not_chain}\n"));
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
    let target = if std::env::var_os("FLOWC_SLOW_TESTS").is_some() || std::env::var_os("CI").is_some() { 50 << 20 } else { 5 << 20 };
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

const TOKENS: &[&str] = &["{", "}", "(", ")", "\"", "/*", "//", "if", "else", "send", "end", "ab_test", "variant", "50%", "2d", "==", "and", "not", "\n", ".", ":", "happened", "campaign", "\0", "é", "[", "]"];

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
    let text = format!("contact {{ plan: enum(pro) }}\nsegment s = {}plan == pro{}\n", "(not ".repeat(depth), ")".repeat(depth));
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
        let out = std::thread::Builder::new().stack_size(2 << 20).spawn(move || parse(&text).1.len()).expect("thread").join();
        assert!(out.is_ok(), "overflowed");
    }
}

/// Right under the nesting limit, every shape of block and parenthesis
/// checks, compiles and formats on an ordinary 2 MiB thread.
#[test]
fn deepest_allowed_nesting_checks_compiles_and_formats_on_a_small_stack() {
    // Each A/B level opens two braces; each `if` one, plus a parenthesis in its condition.
    let n = (flowc::syntax::MAX_NESTING - 2) / 2;
    let mut ab = String::from("template t { channel email message marketing status published }\ncampaign c {\n  trigger manual\n");
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
    let size = if std::env::var_os("FLOWC_SLOW_TESTS").is_some() || std::env::var_os("CI").is_some() { 30 << 20 } else { 3 << 20 };
    let text = format!("campaign c {{\n  trigger manual\n  audience {}\n  end\n}}\n", "a".repeat(size));
    let (analysis, ws) = common::check_source(&text);
    assert!(analysis.diags.iter().any(|d| d.code == flowc::diag::Code::UnknownSegment), "{:?}", analysis.diags.iter().map(|d| d.code).collect::<Vec<_>>());
    let human = common::human(&analysis.diags, &ws.sources);
    assert!(human.len() < 8 * 1024, "{} bytes of human report", human.len());
    assert!(human.contains("unknown segment `aaaa") && human.contains('…'), "{human}");
    let json = flowc::diag::render::json(&analysis.diags, &ws.sources).to_string();
    assert!(json.len() < 8 * 1024, "{} bytes of JSON", json.len());
    let github = flowc::diag::render::github(&analysis.diags, &ws.sources);
    assert!(github.len() < 8 * 1024, "{} bytes of annotations", github.len());
}
