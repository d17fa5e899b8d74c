//! The simulated provider's delivery log (`DB.provider.log`): JSON Lines,
//! one object per message the provider received, in the order received.
//! Its fields are documented in docs/runtime.md ("The simulated provider's
//! log"); tests and users read timing from it, the provider reads back
//! which keys it accepted.

use super::Message;
use serde::{Deserialize, Serialize};

/// What the provider did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Delivered for the first time under its key.
    Accepted,
    /// Its key was accepted before: not delivered again.
    Duplicate,
    /// Refused (the configured failure rate): the engine may try again.
    Rejected,
    /// Refused during a configured outage: the engine may try again.
    Outage,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry<'a> {
    /// RFC 3339, UTC, with milliseconds.
    pub at: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub campaign: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub contact: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub step: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub channel: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub message_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub idempotency_key: std::borrow::Cow<'a, str>,
    pub outcome: Outcome,
}

/// An instant in milliseconds as the log writes it: `2026-03-01T08:00:00.250Z`.
pub fn rfc3339_ms(at_ms: i64) -> String {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::from_timestamp_millis(at_ms) else { return at_ms.to_string() };
    if !(0..=9999).contains(&t.year()) {
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    // The fields written directly: interpreting the format string was
    // 3 % of a run's CPU in a profile (one line per send); the whole run
    // measured within noise of before (0.75 → 0.76 of its ceiling).
    let mut s = String::with_capacity(24);
    let _ = std::fmt::Write::write_fmt(
        &mut s,
        format_args!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            at_ms.rem_euclid(1000)
        ),
    );
    s
}

/// Appends the line for `m` to `out`.
pub fn write(out: &mut Vec<u8>, m: &Message<'_>, outcome: Outcome) {
    use std::borrow::Cow::Borrowed;
    let entry = Entry {
        at: rfc3339_ms(m.at_ms).into(),
        campaign: Borrowed(m.campaign),
        contact: Borrowed(m.contact),
        step: Borrowed(m.step),
        channel: Borrowed(m.channel),
        message_type: Borrowed(m.message),
        idempotency_key: Borrowed(m.key),
        outcome,
    };
    // Serialising plain strings into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &entry).is_ok() {
        out.push(b'\n');
    }
}

/// What a line of the log tells the provider when it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// `key` was delivered at `minute` (minutes since the epoch).
    Accepted {
        key: String,
        minute: i64,
    },
    Duplicate,
    /// A failed attempt: nothing to remember.
    NotAccepted,
}

/// Reads one complete line: a JSON record, or a line of the log format of
/// flowc before JSON Lines (`D minute key`, `R minute key`), so a log an
/// older flowc wrote keeps its memory.
pub fn read(line: &str) -> Result<Seen, String> {
    if let Some(seen) = legacy(line) {
        return Ok(seen);
    }
    let e: Entry = serde_json::from_str(line).map_err(|e| format!("not a delivery record ({e})"))?;
    let at = chrono::DateTime::parse_from_rfc3339(&e.at).map_err(|err| format!("`at` {:?}: {err}", e.at))?;
    Ok(match e.outcome {
        Outcome::Accepted => {
            Seen::Accepted { key: e.idempotency_key.into_owned(), minute: at.timestamp().div_euclid(60) }
        }
        Outcome::Duplicate => Seen::Duplicate,
        Outcome::Rejected | Outcome::Outage => Seen::NotAccepted,
    })
}

fn legacy(line: &str) -> Option<Seen> {
    let mut parts = line.splitn(3, ' ');
    let (kind, minute, key) = (parts.next()?, parts.next()?.parse::<i64>().ok()?, parts.next()?);
    match kind {
        "D" => Some(Seen::Accepted { key: key.to_string(), minute }),
        "R" => Some(Seen::Duplicate),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fields written directly read as chrono's own format does,
        /// from year 1 to 9999 and on either side of it.
        #[test]
        fn instants_are_written_as_chrono_formats_them(at_ms in -70_000_000_000_000i64..260_000_000_000_000) {
            let chrono = chrono::DateTime::from_timestamp_millis(at_ms)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            proptest::prop_assert_eq!(Some(rfc3339_ms(at_ms)), chrono);
        }
    }

    #[test]
    fn an_instant_has_its_milliseconds() {
        assert_eq!(rfc3339_ms(1_772_352_000_250), "2026-03-01T08:00:00.250Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    fn message(at_ms: i64) -> Message<'static> {
        Message {
            key: "c/v/x \"1\"/s",
            campaign: "c",
            contact: "x \"1\"",
            step: "s",
            channel: "sms",
            message: "promotional",
            template: "promo",
            at_ms,
            attempt: 1,
        }
    }

    #[test]
    fn a_written_line_reads_back() {
        let mut out = Vec::new();
        write(&mut out, &message(29_538_720 * 60_000 + 1_250), Outcome::Accepted);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("{\"at\":\"2026-03-01T00:00:01.250Z\",\"campaign\":\"c\""), "{text}");
        assert!(text.ends_with("\"outcome\":\"accepted\"}\n"), "{text}");
        assert_eq!(read(text.trim_end()), Ok(Seen::Accepted { key: "c/v/x \"1\"/s".into(), minute: 29_538_720 }));
    }

    #[test]
    fn old_lines_still_read_and_damaged_ones_do_not() {
        assert_eq!(read("D 12 c/v/x/s"), Ok(Seen::Accepted { key: "c/v/x/s".into(), minute: 12 }));
        assert_eq!(read("R 12 c/v/x/s"), Ok(Seen::Duplicate));
        assert!(read("{\"at\":\"2026-03-01\"}").is_err());
        assert!(read("garbage").is_err());
    }
}
