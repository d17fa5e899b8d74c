//! `flowc graph`: the flow drawn like the builder's timeline.
//!
//! SVG is laid out here (no graphviz): [`layout::layout`] turns a checked
//! campaign into plain geometry (boxes, their wrapped text, wires) and
//! [`render::svg`] writes it out, so another front end can draw the same
//! layout. DOT and Mermaid are emitted from the compiled program and laid out
//! by their own tools. Every format shows the trigger (with its `where`), the
//! audience, step labels and fallbacks.

mod captions;
mod dot;
mod font_table;
pub mod from_program;
pub mod layout;
mod mermaid;
pub mod metrics;
pub mod render;
pub mod wrap;

pub use dot::dot;
pub use mermaid::mermaid;

use crate::check::model::Campaign;
use crate::source::SourceText;

/// The same picture drawn from a compiled program, each box with the count
/// line `counts` gives (the console of `flowc serve`, which keeps programs).
pub fn svg_of_program(p: &crate::compile::program::Program, counts: from_program::Counts) -> String {
    render::svg(&from_program::layout(p, counts))
}

/// An SVG picture of the campaign as the builder draws it.
pub fn svg(c: &Campaign, src: &SourceText) -> String {
    render::svg(&layout::layout(c, src))
}
