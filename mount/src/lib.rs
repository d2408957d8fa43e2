//! holt-fs: filesystem semantics over holt-core.
