//! The compiler: checked model → `Program`, and everything that reads a
//! program without running it (codecs, listing, graphs, version maps).

pub mod codec;
pub mod diff;
pub mod dis;
pub mod graph;
mod lower;
pub mod program;

pub use lower::compile;
