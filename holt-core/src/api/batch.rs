//! Batch builders for `Tree::txn` and `Tree::atomic`.
//!
//! Builders only record intent; nothing touches the tree until the closure
//! returns. Size checks happen at record time and the first failure is kept,
//! so a batch with one bad key applies nothing.

use crate::error::{Error, Result};
use crate::op::{Guard, Op};
use crate::{KEY_BYTES_MAX, VALUE_BYTES_MAX};

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > KEY_BYTES_MAX {
        return Err(Error::KeyTooLarge { len: key.len(), max: KEY_BYTES_MAX });
    }
    Ok(())
}

pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(Error::ValueTooLarge { len: value.len(), max: VALUE_BYTES_MAX });
    }
    Ok(())
}

/// Mutations collected by [`crate::Tree::txn`]: applied all together or not at all.
#[derive(Default)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
    pub(crate) error: Option<Error>,
}

impl Batch {
    fn keep_first(&mut self, r: Result<()>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }

    /// Set `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        if self.keep_first(check_key(key).and_then(|_| check_value(value))) {
            self.ops.push(Op::Put { key: key.to_vec(), value: value.to_vec() });
        }
        self
    }

    /// Remove `key` if present.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        if self.keep_first(check_key(key)) {
            self.ops.push(Op::Delete { key: key.to_vec() });
        }
        self
    }

    /// Move the value at `src` to `dst`; fails the whole batch with
    /// `NotFound` / `DstExists` like [`crate::Tree::rename`].
    pub fn rename(&mut self, src: &[u8], dst: &[u8], force: bool) -> &mut Self {
        if self.keep_first(check_key(src).and_then(|_| check_key(dst))) {
            self.ops.push(Op::Rename { src: src.to_vec(), dst: dst.to_vec(), force });
        }
        self
    }
}

/// A guarded batch for [`crate::Tree::atomic`]: every guard is checked against
/// the state before the batch, and only if all hold are the mutations applied.
#[derive(Default)]
pub struct AtomicBatch {
    pub(crate) inner: Batch,
    pub(crate) guards: Vec<Guard>,
}

impl AtomicBatch {
    fn guard(&mut self, key: &[u8], guard: Guard) -> &mut Self {
        if self.inner.keep_first(check_key(key)) {
            self.guards.push(guard);
        }
        self
    }

    /// Require that `key` is absent.
    pub fn assert_absent(&mut self, key: &[u8]) -> &mut Self {
        self.guard(key, Guard::Absent(key.to_vec()))
    }

    /// Require that `key` is present.
    pub fn assert_exists(&mut self, key: &[u8]) -> &mut Self {
        self.guard(key, Guard::Exists(key.to_vec()))
    }

    /// Require that no key starts with `prefix`.
    pub fn assert_prefix_empty(&mut self, prefix: &[u8]) -> &mut Self {
        self.guard(prefix, Guard::PrefixEmpty(prefix.to_vec()))
    }

    /// Require that `key` is present with exactly this version
    /// (see [`crate::Record::version`]).
    pub fn assert_version(&mut self, key: &[u8], version: u64) -> &mut Self {
        self.guard(key, Guard::Version(key.to_vec(), version))
    }

    /// Put `value` at `key`, guarded by `key` being absent.
    pub fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.assert_absent(key);
        self.put(key, value)
    }

    /// Put `value` at `key`, guarded by `key` having `version`.
    pub fn compare_and_put(&mut self, key: &[u8], version: u64, value: &[u8]) -> &mut Self {
        self.assert_version(key, version);
        self.put(key, value)
    }

    /// Set `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.inner.put(key, value);
        self
    }

    /// Remove `key` if present.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.inner.delete(key);
        self
    }

    /// Move `src` to `dst` (see [`crate::Tree::rename`]).
    pub fn rename(&mut self, src: &[u8], dst: &[u8], force: bool) -> &mut Self {
        self.inner.rename(src, dst, force);
        self
    }
}
