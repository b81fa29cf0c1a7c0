//! The daemon's runtime: the filter loop and the commands built on it.

mod commands;
pub mod demo;
pub mod filterloop;
mod inplace;
mod judge;
pub mod metrics;
pub mod run;
mod run_xdp;
pub mod runloop;
mod workers;

pub use commands::{check_config, describe_config, rules_test, RulesTestTotals};
