//! The estimate a campaign was launched with, kept in the store's `meta`
//! table (`launch-estimate:<campaign>`), so whoever watches the run (the
//! console of `flowc serve`) can show the cost so far against it without
//! estimating again, which reads every contact.

use super::Estimate;
use crate::runtime::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// What is kept of a launch's estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchEstimate {
    /// The program version launched with it: a later version's launch keeps its own.
    pub version: String,
    /// The clock the estimate was made on (RFC 3339).
    pub as_of: String,
    pub audience: u64,
    pub min: f64,
    pub expected: f64,
    pub max: f64,
    pub currency: String,
}

fn key(campaign: &str) -> String {
    format!("launch-estimate:{campaign}")
}

/// Keeps `e`, the estimate version `version` of its campaign was launched with.
pub fn keep(store: &mut dyn Store, version: &str, e: &Estimate) -> Result<(), StoreError> {
    let kept = LaunchEstimate {
        version: version.to_string(),
        as_of: e.as_of.clone(),
        audience: e.audience,
        min: e.cost.min,
        expected: e.cost.expected,
        max: e.cost.max,
        currency: e.cost.currency.clone(),
    };
    let text = serde_json::to_string(&kept).map_err(|e| StoreError::Other(e.to_string()))?;
    store.set_meta(&key(&e.campaign), &text)
}

/// The estimate `campaign` was last launched with; `None` when it was
/// launched before estimates were kept (or the row is not ours to read).
pub fn read(store: &dyn Store, campaign: &str) -> Result<Option<LaunchEstimate>, StoreError> {
    Ok(store.meta(&key(campaign))?.and_then(|t| serde_json::from_str(&t).ok()))
}
