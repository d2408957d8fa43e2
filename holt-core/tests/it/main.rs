//! holt-core integration tests, through the public API only.

mod concurrency;
mod corruption;
mod durability;
mod errors;
mod model;
mod persist;
mod rng;
