//! The simulated provider's log shared by several processes (`flowc
//! worker`s naming one `--provider-log`): a key accepted by one provider
//! is known to every other, before it decides and when it is asked.

mod common;

use common::TempDir;
use flowc::runtime::provider::{Delivery, Message, Provider, SimConfig, Simulated};

fn message(key: &str) -> Message<'_> {
    Message {
        key,
        campaign: "c",
        contact: "x",
        step: "s",
        channel: "email",
        message: "marketing",
        template: "t",
        at_ms: 29_538_720 * 60_000,
        attempt: 1,
    }
}

fn outcomes(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .expect("log")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["outcome"].as_str().expect("outcome").into()
        })
        .collect()
}

#[test]
fn a_key_accepted_by_one_provider_is_a_duplicate_for_another_opened_before_it() {
    let dir = TempDir::new("shared-log");
    let log = dir.0.join("provider.log");
    let mut a = Simulated::open_log(&log, SimConfig::default()).expect("a");
    let mut b = Simulated::open_log(&log, SimConfig::default()).expect("b");
    assert!(matches!(a.send_batch(&[message("k1")])[0], Delivery::Accepted { .. }));
    assert_eq!(b.status(&["k1".into(), "k2".into()]).iter().map(Option::is_some).collect::<Vec<_>>(), [true, false]);
    let first = a.send_batch(&[message("k2")]);
    let again = b.send_batch(&[message("k2"), message("k3")]);
    assert_eq!(format!("{:?}", first[0]), format!("{:?}", again[0]), "the same answer as the first time");
    assert_eq!(outcomes(&log), ["accepted", "accepted", "duplicate", "accepted"]);
    assert_eq!(b.observed().duplicates, 1);
    assert_eq!(b.observed().deliveries, 3, "every process's deliveries are seen");
}

#[test]
fn a_line_torn_by_a_killed_writer_is_cut_before_the_next_append() {
    let dir = TempDir::new("torn-log");
    let log = dir.0.join("provider.log");
    let mut a = Simulated::open_log(&log, SimConfig::default()).expect("a");
    a.send_batch(&[message("k1")]);
    // Another process died in the middle of its append.
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&log).expect("open").write_all(b"{\"at\":\"2026-").expect("tear");
    a.send_batch(&[message("k2")]);
    assert_eq!(outcomes(&log), ["accepted", "accepted"]);
}
