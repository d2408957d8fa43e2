//! `holt-fs bench`: the same filesystem phases on any directory, each
//! operation timed, at 1 thread and at N threads.
//!
//! - `phases`: the phase table and one function per phase;
//! - `runner`: threads, barriers, fixtures set up for unselected phases;
//! - `record`: per-operation timing, percentiles;
//! - `cpu`: CPU time of the bench and of a daemon, per phase;
//! - `report`: the text table and the JSON.
//!
//! The bench only makes system calls on paths below its run directory; it
//! knows nothing of holt-fs and measures any filesystem alike.

pub mod cpu;
pub mod phases;
pub mod record;
pub mod report;
pub mod runner;
