//! `holt-fs bench`: the same filesystem phases on any directory, each
//! operation timed, at 1 thread and at N threads.
//!
//! - `phases`: the phase table and one function per phase;
//! - `runner`: threads, barriers, fixtures set up for unselected phases;
//! - `record`: per-operation timing, percentiles;
//! - `cpu`: CPU time of the bench and of a daemon, per phase;
//! - `requests`: FUSE requests per operation, from a holt-fs daemon's
//!   counters over its control socket;
//! - `report`: the text table and the JSON.
//!
//! The bench only makes system calls on paths below its run directory; it
//! measures any filesystem alike, and asks a holt-fs daemon for its
//! request counters only when given its pid.

pub mod cpu;
pub mod phases;
pub mod record;
pub mod report;
pub mod requests;
pub mod runner;
