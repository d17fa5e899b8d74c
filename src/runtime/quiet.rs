//! Quiet hours (LANGUAGE.md §9.3): whether a send falls in a campaign's
//! daily quiet window in the contact's own time zone, and when that window
//! ends there. Pure: the engine decides what to do with the answer (hold the
//! execution until then, or skip the send).

use crate::compile::program::QuietHours;
use chrono::{LocalResult, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;

/// The zone a contact's `timezone` names; an absent or unknown name is UTC
/// (docs/runtime.md, "Quiet hours").
pub fn zone(name: Option<&str>) -> Tz {
    name.and_then(|n| n.parse::<Tz>().ok()).unwrap_or(Tz::UTC)
}

/// When the quiet window `now` falls in ends, in minutes since the epoch;
/// `None` when `now` (minutes) is outside the window in `zone`.
///
/// The end is the window's end time on the local day it closes: the same
/// day, or the next one for a window across midnight entered before
/// midnight. An end that does not exist that day (the clocks jump over it)
/// is the first instant after the jump; one that occurs twice is the
/// earlier. An end that is not after `now` (the clocks went back past it)
/// holds nothing.
pub fn ends_at(q: &QuietHours, zone: Tz, now: i64) -> Option<i64> {
    let local = chrono::DateTime::from_timestamp(now.checked_mul(60)?, 0)?.with_timezone(&zone);
    let minute = (local.hour() * 60 + local.minute()) as u16;
    let (start, end) = (q.start_minute, q.end_minute);
    let inside = match start.cmp(&end) {
        std::cmp::Ordering::Less => start <= minute && minute < end,
        std::cmp::Ordering::Greater => minute >= start || minute < end,
        std::cmp::Ordering::Equal => false,
    };
    if !inside {
        return None;
    }
    let mut day = local.date_naive();
    if start > end && minute >= start {
        day = day.succ_opt()?;
    }
    let wall = day.and_hms_opt(u32::from(end / 60), u32::from(end % 60), 0)?;
    let until = first_instant_at_or_after(zone, wall)?;
    (until > now).then_some(until)
}

/// The instant (minutes) of local wall time `wall` in `zone`: the earlier of
/// two, or, inside a gap, the first wall minute after it that exists.
fn first_instant_at_or_after(zone: Tz, wall: NaiveDateTime) -> Option<i64> {
    // Gaps are at most a day (a zone that skipped a date); look a little further.
    for step in 0..=2 * 24 * 60 {
        let t = wall.checked_add_signed(chrono::TimeDelta::minutes(step))?;
        match zone.from_local_datetime(&t) {
            LocalResult::Single(x) | LocalResult::Ambiguous(x, _) => return Some(x.timestamp().div_euclid(60)),
            LocalResult::None => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::program::QuietThen;

    fn window(start: &str, end: &str) -> QuietHours {
        let m = |s: &str| {
            let (h, mi) = s.split_once(':').expect("HH:MM");
            h.parse::<u16>().expect("h") * 60 + mi.parse::<u16>().expect("m")
        };
        QuietHours { start_minute: m(start), end_minute: m(end), then: QuietThen::Hold }
    }

    fn minutes(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339).expect("time").timestamp() / 60
    }

    #[test]
    fn a_window_across_midnight_holds_until_its_end_the_next_morning() {
        let q = window("21:00", "08:00");
        let paris = zone(Some("Europe/Paris"));
        // 22:30 in Paris (UTC+1 in winter) → 08:00 the next day.
        assert_eq!(ends_at(&q, paris, minutes("2026-01-10T21:30:00Z")), Some(minutes("2026-01-11T07:00:00Z")));
        // 03:00 → 08:00 the same day.
        assert_eq!(ends_at(&q, paris, minutes("2026-01-11T02:00:00Z")), Some(minutes("2026-01-11T07:00:00Z")));
        // 08:00 and 20:59 are outside.
        assert_eq!(ends_at(&q, paris, minutes("2026-01-11T07:00:00Z")), None);
        assert_eq!(ends_at(&q, paris, minutes("2026-01-11T19:59:00Z")), None);
    }

    #[test]
    fn an_end_in_a_dst_gap_is_the_first_instant_after_it_and_an_ambiguous_one_the_earlier() {
        let q = window("22:00", "02:30");
        // New York, 2026-03-08: 02:00 EST → 03:00 EDT (07:00Z). 02:30 does not exist.
        let ny = zone(Some("America/New_York"));
        assert_eq!(ends_at(&q, ny, minutes("2026-03-08T04:00:00Z")), Some(minutes("2026-03-08T07:00:00Z")));
        // Sydney, 2026-04-05: 03:00 AEDT → 02:00 AEST (16:00Z on the 4th). 02:30 occurs twice.
        let sydney = zone(Some("Australia/Sydney"));
        assert_eq!(ends_at(&q, sydney, minutes("2026-04-04T12:00:00Z")), Some(minutes("2026-04-04T15:30:00Z")));
    }

    #[test]
    fn an_absent_or_unknown_zone_is_utc() {
        assert_eq!(zone(None), Tz::UTC);
        assert_eq!(zone(Some("Mars/Olympus")), Tz::UTC);
        let q = window("21:00", "08:00");
        assert_eq!(ends_at(&q, zone(None), minutes("2026-01-10T23:00:00Z")), Some(minutes("2026-01-11T08:00:00Z")));
    }
}
