//! The one interface every engine of the peer run is driven through, and
//! the delimiter listing a sorted key-value store gets from its user.

use std::fmt::Display;

pub use crate::engines::{Durability, Res};

/// Turns any engine error into the bench's error string.
pub fn err<E: Display>(e: E) -> String {
    e.to_string()
}

/// What the peer cells need from an engine. Each call is one commit where
/// it writes: durable as the store was opened (`Durability`).
pub trait Store: Send + Sync {
    fn get(&self, key: &[u8]) -> Res<Option<Vec<u8>>>;
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()>;
    /// Removes `key`. No "was it there" answer: engines without a cheap one
    /// (the LSMs) would pay a read for it; the cells check counts instead.
    fn delete(&self, key: &[u8]) -> Res<()>;
    /// Moves `src`'s value to the absent `dst` in one atomic commit; an
    /// error when `src` is missing or `dst` exists.
    fn rename(&self, src: &[u8], dst: &[u8]) -> Res<()>;
    /// Puts every pair in one atomic commit.
    fn put_batch(&self, pairs: &[(&[u8], &[u8])]) -> Res<()>;
    /// Listing of `prefix` with delimiter `/`: (entries, summed bytes of
    /// keys, values and common prefixes), so nothing is optimised away.
    fn list(&self, prefix: &[u8]) -> Res<(usize, usize)>;
    /// Every key and value in order: (keys, bytes).
    fn scan_all(&self) -> Res<(usize, usize)>;
    /// Brings the store to rest: memtable flush and pending compactions,
    /// checkpoint, or a durable commit, whatever the engine defers.
    fn settle(&self) -> Res<()>;
    /// The engine's own counters in one line (stderr only); empty where
    /// the engine has none worth showing.
    fn shape(&self) -> String {
        String::new()
    }
}

/// The delimiter byte of every listing.
pub const DELIMITER: u8 = b'/';

/// Where a listing of `prefix` resumes past the group `key` belongs to,
/// or `None` when `key` is an entry of its own (no delimiter past the
/// prefix). The group keeps its delimiter, so the next key out of the
/// group is `group` with its last byte ('/') incremented.
pub fn group_of<'k>(prefix: &[u8], key: &'k [u8]) -> Option<&'k [u8]> {
    let at = key[prefix.len()..].iter().position(|&b| b == DELIMITER)?;
    Some(&key[..prefix.len() + at + 1])
}

/// The first key past every key that starts with `group`, whose last byte
/// is the delimiter (never 0xFF, so the increment cannot carry).
pub fn past_group(group: &[u8]) -> Vec<u8> {
    let mut next = group.to_vec();
    let last = next.last_mut().expect("a group ends with the delimiter");
    *last += 1;
    next
}

/// A listing the way a user writes it on a sorted store without a
/// delimiter of its own: walk from `prefix`; at a key with a delimiter
/// past the prefix, emit its group and seek past the group's subtree with
/// a fresh iterator from `seek` (never stepping through its keys).
pub fn list_by_seeking<I, K, V>(prefix: &[u8], mut seek: impl FnMut(&[u8]) -> Res<I>) -> Res<(usize, usize)>
where
    I: Iterator<Item = Res<(K, V)>>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let (mut n, mut bytes) = (0, 0);
    let mut it = seek(prefix)?;
    while let Some(kv) = it.next() {
        let (k, v) = kv?;
        let key = k.as_ref();
        if !key.starts_with(prefix) {
            break;
        }
        n += 1;
        match group_of(prefix, key) {
            None => bytes += key.len() + v.as_ref().len(),
            Some(group) => {
                bytes += group.len();
                let next = past_group(group);
                it = seek(&next)?;
            }
        }
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(keys: &[&str]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<_> = keys.iter().map(|k| (k.as_bytes().to_vec(), b"v".to_vec())).collect();
        v.sort();
        v
    }

    fn list(data: &[(Vec<u8>, Vec<u8>)], prefix: &str) -> (usize, usize, usize) {
        let mut seeks = 0;
        let (n, bytes) = list_by_seeking(prefix.as_bytes(), |from| {
            seeks += 1;
            let from = from.to_vec();
            Ok(data.iter().filter(move |(k, _)| *k >= from).map(|(k, v)| Ok((k.clone(), v.clone()))))
        })
        .unwrap();
        (n, bytes, seeks)
    }

    #[test]
    fn listing_steps_over_each_group_with_one_seek() {
        let data = sorted(&["a/x/1", "a/x/2", "a/x/3", "a/y", "a/z/1", "a/z/2", "b/q"]);
        let (n, bytes, seeks) = list(&data, "a/");
        assert_eq!(n, 3, "groups a/x/ and a/z/ and the key a/y");
        assert_eq!(bytes, "a/x/".len() + "a/y".len() + 1 + "a/z/".len());
        assert_eq!(seeks, 3, "the first seek and one past each group");
    }

    #[test]
    fn listing_stops_at_the_end_of_the_prefix() {
        let data = sorted(&["a/1", "a/2", "a0", "b/1"]);
        assert_eq!(list(&data, "a/").0, 2);
        assert_eq!(list(&data, "c/").0, 0);
    }
}
