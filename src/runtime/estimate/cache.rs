//! Estimates kept for next time: an estimate depends on the program, the
//! settings, the clock and the data it read, so while none of them changed
//! (`Key`: the store's `DataVersion` stands for the data, and for a clock
//! that stands after the newest contact) it is read back instead of made
//! again, without reading the contacts. Kept in a file beside the database, the most
//! recent few; a cache file that is missing, unreadable or not ours is an
//! empty cache, never an error (it only costs the next estimate its time).

use super::{Estimate, Settings};
use crate::compile::program::Program;
use crate::runtime::run::ClockSource;
use crate::runtime::store::DataVersion;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How many estimates a cache file keeps (the campaigns an editor shows).
const KEPT: usize = 32;

/// Cache files larger than this are not ours to read.
const MAX_FILE: u64 = 16 << 20;

/// What makes two estimates the same: the inputs' canonical JSON, hashed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

/// Everything an estimate is made of. `format` changes with the meaning of
/// an estimate (and the flowc version with the code making it).
#[derive(Serialize)]
struct Inputs<'a> {
    format: u32,
    flowc: &'static str,
    data: i64,
    /// The as-of minute, or none for "just after the newest contact", which
    /// the data (`data`) decides.
    now: Option<i64>,
    rates: [u64; 3],
    approved: &'a Option<Vec<String>>,
    window: i64,
    consent: &'a std::collections::BTreeSet<(String, String)>,
    program: &'a Program,
}

/// The key of estimating `p` on the `clock` with `settings` over data at `data`.
pub fn key(p: &Program, clock: ClockSource, settings: &Settings, data: DataVersion) -> Key {
    let r = settings.rates;
    let now = match clock {
        ClockSource::At(now) => Some(now),
        ClockSource::AfterNewestContact => None,
    };
    let inputs = Inputs {
        format: 1,
        flowc: env!("CARGO_PKG_VERSION"),
        data: data.0,
        now,
        rates: [r.delivered.to_bits(), r.opened.to_bits(), r.clicked.to_bits()],
        approved: &settings.account.approved_channels,
        window: settings.event_window,
        consent: &settings.consent_messages,
        program: p,
    };
    // A program always serialises; should it not, no two keys are equal.
    let text = serde_json::to_string(&inputs).unwrap_or_else(|e| format!("unserialisable: {e} at {now:?}"));
    Key(format!("{:032x}-{}", fnv1a_128(text.as_bytes()), text.len()))
}

/// 128-bit FNV-1a: equal inputs, equal keys; unequal ones collide with a
/// chance of about 2^-64 (not a defence against crafted inputs, which a
/// local cache file does not need).
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    bytes.iter().fold(OFFSET, |h, b| (h ^ *b as u128).wrapping_mul(PRIME))
}

#[derive(Serialize, Deserialize)]
struct Kept {
    key: String,
    estimate: Estimate,
}

/// Where the estimates over database `db` are kept: `<db>.estimates`.
pub fn path_for(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".estimates");
    PathBuf::from(p)
}

fn read(path: &Path) -> Vec<Kept> {
    let Ok(bytes) = crate::files::read_regular(path, MAX_FILE) else { return Vec::new() };
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// The estimate kept under `key` in the cache file `path`, if there is one.
pub fn load(path: &Path, key: &Key) -> Option<Estimate> {
    read(path).into_iter().find(|k| k.key == key.0).map(|k| k.estimate)
}

/// Keeps `estimate` under `key` in `path` with the most recent others. The
/// file is replaced whole (written beside, then renamed), so a reader sees
/// the old file or the new one.
pub fn save(path: &Path, key: &Key, estimate: &Estimate) -> std::io::Result<()> {
    let mut kept = read(path);
    kept.retain(|k| k.key != key.0);
    kept.insert(0, Kept { key: key.0.clone(), estimate: estimate.clone() });
    kept.truncate(KEPT);
    let text = serde_json::to_vec(&kept).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Whether an estimate may be kept for the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    No,
}

/// The estimate of `p` over `store` on `clock`: the one kept in the cache
/// file `cache` when nothing it depends on changed, else made now and kept
/// there. `cache` is `None` for a store with no file beside it (an
/// in-memory or PostgreSQL store), which is estimated every time. The one
/// path of `flowc estimate` and the editor's code lens.
pub fn estimate_kept(
    store: &dyn crate::runtime::store::Store,
    cache: Option<&Path>,
    p: &Program,
    clock: ClockSource,
    settings: &Settings,
) -> Result<Estimate, crate::runtime::store::StoreError> {
    // Read before the contacts: data written meanwhile makes the next
    // estimate miss this one, never find it stale.
    let kept = match (cache, store.data_version()?) {
        (Some(path), Some(data)) => Some((path, key(p, clock, settings, data))),
        _ => None,
    };
    if let Some(e) = kept.as_ref().and_then(|(path, key)| load(path, key)) {
        return Ok(e);
    }
    // The clock after the newest contact is a function of the data (kept
    // with the estimate); the wall clock, for a database whose contacts
    // have no creation, is not.
    let (now, keep) = match clock {
        ClockSource::At(now) => (now, Keep::Yes),
        ClockSource::AfterNewestContact => match store.newest_created_at()? {
            Some(newest) => (crate::runtime::run::after_newest(Some(newest)), Keep::Yes),
            None => (crate::runtime::run::after_newest(None), Keep::No),
        },
    };
    let e = super::estimate(store, p, now, settings)?;
    if let (Some((path, key)), Keep::Yes) = (&kept, keep) {
        // A cache that cannot be written (a read-only folder) only costs
        // the next estimate its time.
        let _ = save(path, key, &e);
    }
    Ok(e)
}
