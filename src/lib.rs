//! flowc: the toolchain of the `.flow` campaign language.
//!
//! Data flows one way: `source` text → `syntax` tree → `check`ed model →
//! `compile`d program → runtime. See ARCHITECTURE.md for the map.

pub mod diag;
pub mod limits;
pub mod source;
pub mod suggest;
pub mod syntax;
pub mod check;
pub mod config;
pub mod files;
pub mod workspace;
pub mod compile;
pub mod runtime;
pub mod fmt;
pub mod builder;
pub mod service;
pub mod lsp;
