//! Constants at the edges of their ranges. A literal or a constant
//! computation that flowc cannot represent is one `out-of-range` diagnostic
//! at its text, with no follow-on; whatever checks clean compiles to a
//! program that loads back and lists without panicking.

mod common;

use flowc::compile::{self, codec};

const PRELUDE: &str = "template t { channel email message marketing status published }
contact {
  score: number
  since: duration
  birthday: date?
}
event order.completed { amount: number }
";

fn campaign(settings: &str, steps: &str) -> String {
    format!("{PRELUDE}campaign c {{\n  trigger manual\n  {settings}\n  send email.marketing t\n  {steps}\n}}\n")
}

/// Every diagnostic as (code, the text it points at).
fn findings(text: &str) -> Vec<(String, String)> {
    let (analysis, ws) = common::check_source(text);
    analysis
        .diags
        .iter()
        .map(|d| {
            let src = &ws.sources.get(d.file).text;
            (
                d.code.as_str().to_string(),
                src.get(d.span.start as usize..d.span.end as usize).unwrap_or("<bad span>").to_string(),
            )
        })
        .collect()
}

#[track_caller]
fn one_out_of_range(text: &str, at: &str) {
    let found = findings(text);
    assert_eq!(found, vec![("out-of-range".to_string(), at.to_string())], "\n{text}");
}

fn nines(n: usize) -> String {
    "9".repeat(n)
}

/// 1.7e308 written out: finite, but two of them add up past `f64::MAX`.
fn near_max() -> String {
    format!("17{}", "0".repeat(307))
}

#[test]
fn a_number_beyond_f64_is_one_diagnostic_at_the_literal() {
    let big = nines(400);
    one_out_of_range(&campaign(&format!("audience score > {big}"), ""), &big);
    let neg = format!("-{big}");
    one_out_of_range(&campaign(&format!("audience score < {neg}"), ""), &neg);
    // In a segment and a trigger filter as well.
    one_out_of_range(&format!("{PRELUDE}segment s = score == {big}\n"), &big);
}

#[test]
fn constant_arithmetic_that_overflows_is_one_diagnostic_at_the_expression() {
    let sum = format!("{} + {}", near_max(), near_max());
    one_out_of_range(&campaign(&format!("audience score > {sum}"), ""), &sum);
    let diff = format!("-{} - {}", near_max(), near_max());
    one_out_of_range(&campaign(&format!("audience score > {diff}"), ""), &diff);
    // Durations folded into one offset, and dates pushed off the calendar.
    let offset = "now - 520000w - 520000w";
    one_out_of_range(&campaign(&format!("audience created_at > {offset}"), ""), offset);
    let late = "9999-12-31 00:00 + 2d";
    one_out_of_range(&campaign(&format!("audience created_at > {late}"), ""), late);
    let early = "0000-01-01 - 1d";
    one_out_of_range(&campaign(&format!("audience birthday > {early}"), ""), early);
}

#[test]
fn an_overflowing_duration_is_one_diagnostic_without_follow_ons() {
    let huge = format!("{}w", nines(25));
    // Today: "duration too large" and then "a wait must last longer than zero".
    one_out_of_range(&campaign("", &format!("wait {huge}")), &huge);
    one_out_of_range(&campaign(&format!("audience created_at > now - {huge}"), ""), &huge);
    one_out_of_range(&campaign(&format!("audience happened order.completed within {huge}"), ""), &huge);
    // Past the longest duration there is, though it fits in 64 bits.
    one_out_of_range(&campaign("", "wait 9999999999w"), "9999999999w");
    // A duration field compared with a constant.
    one_out_of_range(&campaign(&format!("audience since > {huge}"), ""), &huge);
}

#[test]
fn an_overflowing_weight_is_one_diagnostic_without_follow_ons() {
    // Today: "weight too large", then "weight 0" and "sum to 50%".
    let ab = "ab_test x {\n    variant a 99999999999% { }\n    variant b 50% { }\n  }";
    one_out_of_range(&campaign("", ab), "99999999999");
    let over = "ab_test x {\n    variant a 150% { }\n    variant b 50% { }\n  }";
    one_out_of_range(&campaign("", over), "150");
}

#[test]
fn an_absurd_price_is_out_of_range() {
    one_out_of_range(
        &format!("{PRELUDE}pricing {{\n  email.marketing = {} EUR\n}}\n", nines(30)),
        &format!("{} EUR", nines(30)),
    );
    one_out_of_range(&format!("{PRELUDE}pricing {{\n  email.marketing = 5000 EUR\n}}\n"), "5000 EUR");
}

/// The largest values each kind of constant may take compile, load back from
/// JSON and binary, and list.
#[test]
fn constants_at_the_edge_compile_and_load() {
    let max = format!("179769313486231570{}", "0".repeat(291));
    let text = campaign(
        &format!(
            "audience score < {max} and score > -{max} and created_at > now - 520000w and created_at < 9999-12-31 23:59 \
             and birthday > 0000-01-01 and birthday < 9999-12-31 and since < 520000w and created_at > 0000-01-01 00:00 + 1d"
        ),
        "wait 365d",
    );
    let (analysis, ws) = common::check_source(&text);
    assert!(analysis.diags.is_empty(), "{:?}", analysis.diags);
    let (_, model) = &analysis.models[0];
    let c = &model.campaigns[0];
    let p = compile::compile(model, c, ws.sources.get(c.file));
    let json = codec::to_json(&p);
    assert!(!json.contains("\"number\": null"), "{json}");
    assert_eq!(codec::from_json(&json).expect("loads from JSON"), p);
    assert_eq!(codec::from_binary(&codec::to_binary(&p)).expect("loads from binary"), p);
    let listing = compile::dis::listing(&p);
    assert!(listing.contains("9999-12-31 23:59") && listing.contains("0000-01-01"), "{listing}");
}

/// `compile --emit json` used to write `"number": null` for a 400-digit
/// literal, a program that could not be loaded back. Now it refuses to compile.
#[test]
fn compile_refuses_a_number_out_of_range() {
    let dir = common::TempDir::new("limits-compile");
    let flow = dir.path("c.flow");
    std::fs::write(&flow, campaign(&format!("audience score > {}", nines(400)), "")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["compile", "--emit", "json", &flow])
        .env("NO_COLOR", "1")
        .output()
        .expect("run flowc");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("out-of-range"), "{}", String::from_utf8_lossy(&out.stderr));
}
