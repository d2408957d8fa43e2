//! holt-core integration tests, through the public API only.

mod concurrency;
mod errors;
mod model;
mod persist;
mod rng;
