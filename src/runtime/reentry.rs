//! Re-entry: whether a trigger that fires for a contact starts a new
//! execution of a campaign (`reentry once | always | after D`).
//!
//! Each execution is numbered per (campaign, contact) by its `Entry`; the
//! store applies the rule when it inserts (`Store::reenter`), under its
//! write lock, so two triggers cannot both slip in. `admits` is the same
//! rule for callers that decide before writing what else goes with an
//! entry (the API's `campaign.triggered` event, `flowc run --triggers`).

use super::store::{Enrollment, Store, StoreError};
use crate::compile::program::{Program, Reentry};

/// Whether a contact may enter again at `at`, given when its latest
/// execution of the campaign started: `None` when it has none, `Some(None)`
/// when it has one enrolled before flowc recorded starts (long ago).
pub fn admits(rule: Reentry, latest: Option<Option<i64>>, at: i64) -> bool {
    match (rule, latest) {
        (_, None) | (Reentry::Always, _) => true,
        (Reentry::Once, Some(_)) => false,
        (Reentry::After { .. }, Some(None)) => true,
        (Reentry::After { minutes }, Some(Some(started))) => at.saturating_sub(started) >= minutes,
    }
}

/// Enrolls `entries` in `p`'s campaign under its re-entry rule (`once`:
/// the first entry only). Returns how many executions started.
pub fn enroll(store: &mut dyn Store, p: &Program, entries: &[Enrollment], now: i64) -> Result<u64, StoreError> {
    match p.delivery.reentry {
        Reentry::Once => store.enroll(&p.campaign, &p.version.0, entries, now),
        rule => store.reenter(&p.campaign, &p.version.0, entries, rule, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let day = Reentry::After { minutes: 1440 };
        assert!(admits(Reentry::Once, None, 0));
        assert!(!admits(Reentry::Once, Some(Some(0)), 10_000));
        assert!(admits(Reentry::Always, Some(Some(100)), 100));
        assert!(!admits(day, Some(Some(100)), 100 + 1439));
        assert!(admits(day, Some(Some(100)), 100 + 1440));
        assert!(admits(day, Some(None), 0));
    }
}
