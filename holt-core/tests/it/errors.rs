//! Every error case of the API gives its named error and changes nothing.

use holt_core::{Error, TreeBuilder, KEY_BYTES_MAX, VALUE_BYTES_MAX};

use crate::model::memory_tree;

#[test]
fn oversized_keys_and_values_are_refused_everywhere() {
    let tree = memory_tree();
    let long_key = vec![b'k'; KEY_BYTES_MAX + 1];
    let long_val = vec![0u8; VALUE_BYTES_MAX + 1];
    let key_err = |r: Result<(), Error>| matches!(r, Err(Error::KeyTooLarge { len, max }) if len == KEY_BYTES_MAX + 1 && max == KEY_BYTES_MAX);
    assert!(key_err(tree.put(&long_key, b"v")));
    assert!(key_err(tree.get(&long_key).map(|_| ())));
    assert!(key_err(tree.delete(&long_key).map(|_| ())));
    assert!(key_err(tree.rename(b"a", &long_key, false)));
    assert!(matches!(tree.put(b"k", &long_val), Err(Error::ValueTooLarge { .. })));
    // A batch with one bad op applies none of its ops.
    let r = tree.txn(|b| {
        b.put(b"fine", b"1");
        b.put(b"k", &long_val);
    });
    assert!(matches!(r, Err(Error::ValueTooLarge { .. })));
    let r = tree.atomic(|b| {
        b.put(b"fine", b"1");
        b.assert_absent(&long_key);
    });
    assert!(matches!(r, Err(Error::KeyTooLarge { .. })));
    assert_eq!(tree.get(b"fine").unwrap(), None);
    // The maximums themselves are accepted.
    tree.put(&vec![b'k'; KEY_BYTES_MAX], &vec![7u8; VALUE_BYTES_MAX]).unwrap();
    assert_eq!(tree.get(&vec![b'k'; KEY_BYTES_MAX]).unwrap().map(|v| v.len()), Some(VALUE_BYTES_MAX));
    tree.check_invariants().unwrap();
}

#[test]
fn rename_errors_leave_both_keys_alone() {
    let tree = memory_tree();
    tree.put(b"a", b"1").unwrap();
    tree.put(b"b", b"2").unwrap();
    assert!(matches!(tree.rename(b"missing", b"x", false), Err(Error::NotFound)));
    assert!(matches!(tree.rename(b"a", b"b", false), Err(Error::DstExists)));
    assert_eq!(tree.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(tree.get(b"b").unwrap(), Some(b"2".to_vec()));
    tree.rename(b"a", b"a", false).unwrap();
    tree.rename(b"a", b"b", true).unwrap();
    assert_eq!(tree.get(b"a").unwrap(), None);
    assert_eq!(tree.get(b"b").unwrap(), Some(b"1".to_vec()));
    // A failing rename inside a txn undoes the ops before it.
    let r = tree.txn(|t| {
        t.put(b"c", b"3");
        t.rename(b"nope", b"d", false);
    });
    assert!(matches!(r, Err(Error::NotFound)));
    assert_eq!(tree.get(b"c").unwrap(), None);
}

#[test]
fn failed_guards_apply_nothing() {
    let tree = memory_tree();
    tree.put(b"dir/x", b"1").unwrap();
    let rec = tree.get_record(b"dir/x").unwrap().unwrap();
    let applied = tree
        .atomic(|b| {
            b.put(b"other", b"1");
            b.assert_prefix_empty(b"dir/");
        })
        .unwrap();
    assert!(!applied);
    assert!(!tree.atomic(|b| { b.compare_and_put(b"dir/x", rec.version + 1, b"2"); }).unwrap());
    assert!(!tree.atomic(|b| { b.put_if_absent(b"dir/x", b"2"); }).unwrap());
    assert!(!tree.atomic(|b| { b.assert_exists(b"nope").put(b"other", b"1"); }).unwrap());
    assert_eq!(tree.get(b"other").unwrap(), None);
    assert!(tree.atomic(|b| { b.compare_and_put(b"dir/x", rec.version, b"2"); }).unwrap());
    let newer = tree.get_record(b"dir/x").unwrap().unwrap();
    assert_eq!(newer.value, b"2");
    assert_ne!(newer.version, rec.version, "every write changes the version");
}

#[test]
fn builder_rejects_a_tiny_pool() {
    let r = TreeBuilder::new("unused").memory().buffer_pool_size(1).open();
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
}

#[test]
fn errors_explain_themselves() {
    let e = Error::KeyTooLarge { len: 9000, max: 8192 };
    assert_eq!(e.to_string(), "key of 9000 bytes exceeds the maximum of 8192 bytes");
    assert!(Error::DstExists.to_string().contains("destination"));
}
