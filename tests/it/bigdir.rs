//! A 100k-entry directory, listed while another thread changes it.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::harness::Mount;

const ENTRIES: usize = 100_000;
const CREATORS: usize = 2;

#[test]
fn hundred_thousand_entries_list_exactly_once_while_changing() {
    let m = Mount::memory();
    let big = m.path("big");
    fs::create_dir(&big).unwrap();
    std::thread::scope(|s| {
        for t in 0..CREATORS {
            let big = &big;
            s.spawn(move || {
                for i in (t..ENTRIES).step_by(CREATORS) {
                    fs::File::create(big.join(format!("f{i:06}"))).unwrap();
                }
            });
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (big, stop) = (big.clone(), stop.clone());
        // Removes odd names and adds new ones on both sides of any cursor.
        std::thread::spawn(move || {
            let mut i = 1;
            while !stop.load(Ordering::Relaxed) && i < ENTRIES {
                fs::remove_file(big.join(format!("f{i:06}"))).unwrap();
                fs::File::create(big.join(format!("a{i:06}"))).unwrap();
                fs::File::create(big.join(format!("z{i:06}"))).unwrap();
                i += 2;
            }
            i
        })
    };
    let mut seen: HashMap<String, u32> = HashMap::with_capacity(ENTRIES * 2);
    for entry in fs::read_dir(&big).unwrap() {
        *seen.entry(entry.unwrap().file_name().into_string().unwrap()).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let churned = churn.join().unwrap();
    assert!(churned > 1, "the directory changed during the listing");
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(dups.is_empty(), "entries listed twice: {dups:?}");
    for i in (0..ENTRIES).step_by(2) {
        assert!(seen.contains_key(&format!("f{i:06}")), "f{i:06} was present throughout but not listed");
    }
    let listed_again = fs::read_dir(&big).unwrap().count();
    let expected = ENTRIES - (churned - 1) / 2 + (churned - 1);
    assert_eq!(listed_again, expected, "a quiet listing sees every entry");
    assert_eq!(std::process::Command::new("rm").arg("-rf").arg(&big).status().unwrap().code(), Some(0));
    assert!(!big.exists());
}
