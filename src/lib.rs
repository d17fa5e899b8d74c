//! flowc: the toolchain of the `.flow` campaign language.
//!
//! Data flows one way: `source` text → `syntax` tree → `check`ed model →
//! `compile`d program → runtime. See ARCHITECTURE.md for the map.

pub mod builder;
pub mod check;
pub mod compile;
pub mod config;
pub mod diag;
pub mod files;
pub mod fmt;
pub mod limits;
pub mod lsp;
pub mod runtime;
pub mod service;
pub mod source;
pub mod suggest;
pub mod syntax;
pub mod workspace;
