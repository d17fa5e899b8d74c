//! Analyses kept per document, so a hover or completion on an unchanged
//! document answers from the last check instead of reloading and
//! rechecking its workspace. An entry is keyed by what it was computed
//! from: the version of every open document it read and the modification
//! stamp of every file it read from disk (and of its `flowc.toml`); it is
//! used only while all of them are unchanged, and dropped when an edit,
//! open, close or save touches one of them.

use super::Analysis;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

/// The state of one input of an analysis when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// An open document, at this version.
    Open(i32),
    /// A file on disk: its modification time and length, `None` when it
    /// could not be read.
    Disk(Option<(SystemTime, u64)>),
}

impl Stamp {
    /// The stamp of a file on disk as it is now.
    pub fn of_disk(path: &Path) -> Stamp {
        Stamp::Disk(std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
    }
}

/// The inputs of an analysis and the state each was in.
pub type Inputs = Vec<(PathBuf, Stamp)>;

struct Entry {
    inputs: Inputs,
    analysis: Rc<Analysis>,
}

/// Analyses by document path, and how many were computed (for tests).
#[derive(Default)]
pub struct Cache {
    entries: HashMap<PathBuf, Entry>,
    computed: u64,
}

impl Cache {
    /// The cached analysis of `doc`, if every input still has the stamp
    /// `stamp_now` gives it.
    pub fn get(&self, doc: &Path, stamp_now: &dyn Fn(&Path) -> Stamp) -> Option<Rc<Analysis>> {
        let e = self.entries.get(doc)?;
        e.inputs.iter().all(|(p, s)| stamp_now(p) == *s).then(|| e.analysis.clone())
    }

    pub fn insert(&mut self, doc: PathBuf, inputs: Inputs, analysis: Rc<Analysis>) {
        self.computed += 1;
        self.entries.insert(doc, Entry { inputs, analysis });
    }

    /// Drops every analysis that read `path`.
    pub fn invalidate(&mut self, path: &Path) {
        self.entries.retain(|doc, e| doc != path && e.inputs.iter().all(|(p, _)| p != path));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many analyses were computed (not answered from the cache).
    // Read by the tests that prove a request reuses the analysis.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn computed(&self) -> u64 {
        self.computed
    }
}
