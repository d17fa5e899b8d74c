//! Inputs that used to take super-linear time: long segment chains, segment
//! cycles, many campaigns, many campaigns with one id. Each is checked and
//! rendered at two sizes, the larger 16 times the smaller, and must stay
//! within 10 times what linear growth predicts (so a quadratic path, 256
//! times slower, fails). The larger run is abandoned as soon as it is over.

mod common;

use std::time::{Duration, Instant};

/// The text parsed into a workspace: not timed, as parsing is linear and
/// would hide a quadratic checker behind its larger constant.
fn load(text: String) -> flowc::workspace::Workspace {
    common::check_source(&text).1
}

/// What `flowc check` does after parsing: check, then render for people.
fn check_and_render(ws: &flowc::workspace::Workspace) -> usize {
    let analysis = flowc::check::check_all(ws, &[], &Default::default());
    common::human(&analysis.diags, &ws.sources).len() + analysis.diags.len()
}

/// One timing test at a time: they run on a shared machine as it is.
static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fails when checking `make(16 * small)` takes more than 10 × 16 times as
/// long as checking `make(small)` (the best of three), with a floor so that
/// a tiny baseline does not make the bound noise.
#[track_caller]
fn assert_linear(small: usize, make: fn(usize) -> String) {
    const FACTOR: u32 = 16;
    let _one = TIMING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ws = load(make(small));
    let baseline = (0..3)
        .map(|_| {
            let t = Instant::now();
            check_and_render(&ws);
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
        .max(Duration::from_millis(20));
    let bound = baseline * FACTOR * 10;
    let big = load(make(small * FACTOR as usize));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        check_and_render(&big);
        let _ = tx.send(t.elapsed());
    });
    match rx.recv_timeout(bound) {
        Ok(took) => {
            assert!(took <= bound, "{} items took {took:?}; {small} took {baseline:?}", small * FACTOR as usize)
        }
        Err(_) => {
            panic!("{} items took over {bound:?}; {small} took {baseline:?}: super-linear", small * FACTOR as usize)
        }
    }
}

const PRELUDE: &str = "contact { score: number }\ntemplate t { channel email message marketing status published }\n";

fn chain(n: usize) -> String {
    let mut s = format!("{PRELUDE}segment s0 = score > 1\n");
    for i in 1..n {
        s.push_str(&format!("segment s{i} = s{}\n", i - 1));
    }
    s.push_str(&format!("campaign c {{ trigger manual audience s{} send email.marketing t }}\n", n - 1));
    s
}

fn cycle(n: usize) -> String {
    let mut s = PRELUDE.to_string();
    for i in 0..n {
        s.push_str(&format!("segment s{i} = s{}\n", (i + 1) % n));
    }
    s
}

fn campaigns(n: usize) -> String {
    let mut s = PRELUDE.to_string();
    for i in 0..n {
        s.push_str(&format!("campaign c{i} {{ trigger manual send email.marketing t }}\n"));
    }
    s
}

fn same_id(n: usize) -> String {
    PRELUDE.to_string() + &"campaign c { trigger manual send email.marketing t }\n".repeat(n)
}

#[test]
fn a_chain_of_segments_is_linear() {
    assert_linear(250, chain);
}

#[test]
fn a_cycle_of_segments_is_linear() {
    assert_linear(100, cycle);
}

#[test]
fn many_campaigns_are_linear() {
    assert_linear(2000, campaigns);
}

#[test]
fn many_campaigns_with_one_id_are_linear() {
    assert_linear(500, same_id);
}

/// A cycle is one diagnostic, at its first member, naming every member in
/// order; segments that only use the cycle are not part of it.
#[test]
fn a_segment_cycle_is_reported_once() {
    let text = format!(
        "{PRELUDE}segment a = b\nsegment b = c and score > 1\nsegment c = a\nsegment user = a\nsegment me = me\n"
    );
    let (analysis, _) = common::check_source(&text);
    let messages: Vec<&str> = analysis.diags.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, ["segment `a` refers to itself: a → b → c → a", "segment `me` refers to itself: me → me"]);
    let (analysis, _) = common::check_source(&cycle(1000));
    assert_eq!(analysis.diags.len(), 1, "{:?}", analysis.diags.iter().map(|d| &d.message).collect::<Vec<_>>());
}
