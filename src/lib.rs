//! synaptogen: discover local plasticity and pruning rules that let spiking networks keep learning over
//! long sequences of permuted tasks.
//!
//! See `ARCHITECTURE.md` for the codemap and the data flow; `README.md` for the user's guide.

#![warn(missing_docs)]

pub mod cli;
pub mod data;
pub mod files;
#[cfg(test)]
mod fuzz;
pub mod learner;
pub mod metrics;
pub mod names;
pub mod report;
pub mod rng;
pub mod rule;
pub mod run;
pub mod search;
pub mod snn;
pub mod spec;
