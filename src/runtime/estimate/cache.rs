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
#[derive(Debug, Clone, PartialEq, Eq)]
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
