//! The ranges constant values live in: what a literal may say, what constant
//! arithmetic may produce, and what a loaded program may hold.
//!
//! The parser, the checker and the program validator read the same limits,
//! so a campaign that checks clean compiles to a program that loads, and a
//! program that loads can be listed, drawn and run without overflow.

/// Minutes since the Unix epoch of 0000-01-01 00:00 UTC: the earliest
/// datetime a four-digit literal can write.
pub const MIN_DATETIME: i64 = MIN_DATE * MINUTES_PER_DAY;
/// Minutes since the Unix epoch of 9999-12-31 23:59 UTC, the latest.
pub const MAX_DATETIME: i64 = MAX_DATE * MINUTES_PER_DAY + MINUTES_PER_DAY - 1;
/// Days since the Unix epoch of 0000-01-01.
pub const MIN_DATE: i64 = -719_528;
/// Days since the Unix epoch of 9999-12-31.
pub const MAX_DATE: i64 = 2_932_896;
/// The longest duration, either way: the whole calendar above. Any datetime
/// plus or minus any duration stays far inside 64 bits.
pub const MAX_DURATION: i64 = MAX_DATETIME - MIN_DATETIME;
/// A variant's weight in hundredths of a percent: at most 100%.
pub const MAX_WEIGHT_BP: u32 = 10_000;
/// The price of one message in micro-euros: at most 1,000 EUR, so a batch's
/// debits and any balance stay far inside 64 bits.
pub const MAX_PRICE_MICROS: i64 = 1_000 * 1_000_000;

const MINUTES_PER_DAY: i64 = 24 * 60;

pub fn number(n: f64) -> bool {
    n.is_finite()
}

/// Minutes since the epoch.
pub fn datetime(minutes: i64) -> bool {
    (MIN_DATETIME..=MAX_DATETIME).contains(&minutes)
}

/// Days since the epoch.
pub fn date(days: i64) -> bool {
    (MIN_DATE..=MAX_DATE).contains(&days)
}

/// Minutes, either sign.
pub fn duration(minutes: i64) -> bool {
    (-MAX_DURATION..=MAX_DURATION).contains(&minutes)
}

pub fn price(micros: i64) -> bool {
    (0..=MAX_PRICE_MICROS).contains(&micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calendar_bounds_are_the_four_digit_years() {
        let epoch = chrono::NaiveDate::default();
        let first = chrono::NaiveDate::from_ymd_opt(0, 1, 1).expect("year 0");
        let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).expect("year 9999");
        assert_eq!(first.signed_duration_since(epoch).num_days(), MIN_DATE);
        assert_eq!(last.signed_duration_since(epoch).num_days(), MAX_DATE);
        let last_minute = last.and_hms_opt(23, 59, 0).expect("time").and_utc().timestamp() / 60;
        assert_eq!(last_minute, MAX_DATETIME);
        assert_eq!(first.and_hms_opt(0, 0, 0).expect("time").and_utc().timestamp() / 60, MIN_DATETIME);
    }
}
