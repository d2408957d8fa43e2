//! Point lookups into a full cache read frames a page at a time
//! (`store::pages`): through the whole engine on a simulated disk, they
//! agree with what was written, read a fraction of a frame per miss, stop
//! at a page that fails its checksum, and share frames with writers that
//! complete them.

use std::sync::Arc;

use crate::layout::{FrameBuf, FRAME_BYTES, HDR_RUNS_FROM, HEADER_BYTES};
use crate::tree::tidy::never_laid_out_for_pages;
use crate::store::frame_file::{SlotFormat, PAGES, PAGE_BYTES, PAGE_TABLE_BYTES};
use crate::store::splitmix::SplitMix64;
use crate::testing::SimDisk;
use crate::{Error, RangeEntry, Tree, TreeBuilder};

const POOL_FRAMES: usize = 8;
const KEYS: u64 = 24_000;

fn builder() -> TreeBuilder {
    TreeBuilder::new("/store").checkpoint_interval(None).buffer_pool_size(POOL_FRAMES)
}

fn key(i: u64) -> Vec<u8> {
    format!("k/{:03}/{i:07}", i % 97).into_bytes()
}

fn value(i: u64, round: u8) -> Vec<u8> {
    vec![(i as u8) ^ round; 600 + (i % 7) as usize * 50]
}

/// A checkpointed tree of `KEYS` keys, several times the cache, reopened
/// with an empty cache.
fn loaded_disk() -> SimDisk {
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder()).unwrap();
    for i in 0..KEYS {
        tree.put(&key(i), &value(i, 0)).unwrap();
    }
    assert!(tree.stats().unwrap().frames >= 6 * POOL_FRAMES as u64, "{:?}", tree.stats().unwrap());
    tree.checkpoint().unwrap();
    disk
}

/// Random gets until the cache is full, so that every later miss is a
/// partial load.
/// A loaded disk, its tree reopened with a full cache (`warm`), and the
/// generator that warmed it, seeded with `seed`.
fn warmed(seed: u64) -> (SimDisk, Tree, SplitMix64) {
    let disk = loaded_disk();
    let tree = disk.open_tree(builder()).unwrap();
    let mut rng = SplitMix64::new(seed);
    warm(&tree, &mut rng);
    (disk, tree, rng)
}

fn warm(tree: &Tree, rng: &mut SplitMix64) {
    while tree.counters().frames_cached < POOL_FRAMES as u64 {
        let i = rng.below(KEYS);
        assert!(tree.get(&key(i)).unwrap() == Some(value(i, 0)));
    }
}

#[test]
fn point_lookups_into_a_full_cache_read_pages_not_frames() {
    let (_disk, tree, mut rng) = warmed(0x9a6e);
    let before = tree.counters();
    let gets = 2_000u64;
    for _ in 0..gets {
        let i = rng.below(KEYS);
        assert!(tree.get(&key(i)).unwrap() == Some(value(i, 0)), "key {i}");
        assert_eq!(tree.get(format!("k/{:03}/x", i % 97).as_bytes()).unwrap(), None);
    }
    let after = tree.counters();
    let (misses, pages) = (after.cache_misses - before.cache_misses, after.pages_read - before.pages_read);
    let bytes = after.frame_bytes_read - before.frame_bytes_read;
    eprintln!("{gets} gets: {misses} misses, {pages} pages, {} bytes a get", bytes / gets);
    assert_eq!(after.frames_read, before.frames_read, "no lookup read a whole frame into the full cache");
    assert!(misses > 0 && pages > gets / 4, "the cache was too small to miss: {after:?}");
    // The budget counts pages: frames held in part outnumber whole ones.
    assert!(after.frames_cached <= POOL_FRAMES as u64, "{after:?}");
    assert!(bytes / gets < FRAME_BYTES as u64 / 16, "{} bytes a get", bytes / gets);
    // Frames held in part live in buffers huge pages never back.
    let pool = tree.engine().pool();
    let parts: Vec<bool> = pool.live_ids().iter().filter_map(|&id| pool.cell(id)?.part().map(|b| b.is_plain())).collect();
    assert!(!parts.is_empty() && parts.iter().all(|&plain| plain), "{} frames held in part", parts.len());
    // A writer completes the frames it meets; the tree stays whole.
    tree.put(&key(7), &value(7, 1)).unwrap();
    assert!(tree.get(&key(7)).unwrap() == Some(value(7, 1)));
    tree.check_invariants().unwrap();
}

/// After a reopen the cache is empty, but the tree is larger than it: its
/// lookups read pages from the first one, not whole frames until full.
#[test]
fn a_tree_larger_than_the_cache_is_read_by_pages_from_the_start() {
    let disk = loaded_disk();
    let tree = disk.open_tree(builder()).unwrap();
    random_gets(&tree, &mut SplitMix64::new(0x5747), 200, |_| 0);
    let c = tree.counters();
    assert!(c.frames_read == 0 && c.pages_read > 0, "{c:?}");
}

/// The checkpoints of a tree larger than the cache write its frames laid
/// out for pages (`tidy::Shape::Pages`): read back, every frame larger
/// than a run was laid out so at least once (later inserts that placed
/// fewer than an eighth of its nodes leave the rest where it put them),
/// and every key is there.
#[test]
fn a_tree_larger_than_the_cache_is_written_laid_out_for_pages() {
    let disk = loaded_disk();
    let tree = disk.open_tree(builder().buffer_pool_size(4096)).unwrap();
    for i in 0..KEYS {
        assert!(tree.get(&key(i)).unwrap() == Some(value(i, 0)), "key {i}");
    }
    let pool = tree.engine().pool();
    let ids = pool.live_ids();
    let frames: Vec<&FrameBuf> = ids.iter().map(|&id| pool.cell(id).unwrap().buf().unwrap()).collect();
    let never = frames.iter().filter(|b| never_laid_out_for_pages(b.u32(HDR_RUNS_FROM) as usize, b.live_bytes())).count();
    let tidy = frames.iter().filter(|b| b.in_preorder() && b.runs_from() > HEADER_BYTES).count();
    assert!(never == 0 && tidy > 0, "{never} never laid out for pages, {tidy} so now, of {}", frames.len());
    tree.check_invariants().unwrap();
}

/// A frame held in part that the clock's hand finds unused first gives
/// back the pages outside its skeleton (page 0, its upper nodes' pages,
/// the slot table's last page: what every lookup through it reads), and
/// stays; only at a later unused visit is it evicted. Lookups find every
/// value throughout.
#[test]
fn an_unused_frame_held_in_part_is_trimmed_to_its_skeleton_before_it_is_evicted() {
    let (_disk, tree, mut rng) = warmed(0x7217);
    random_gets(&tree, &mut rng, 500, |_| 0);
    let pool = tree.engine().pool();
    let skeleton = |b: &FrameBuf, p: usize| p == 0 || p == PAGES - 1 || (b.in_preorder() && p * PAGE_BYTES < b.runs_from());
    let held = |id| {
        let cell = pool.cell(id).unwrap();
        let (b, state) = (cell.part()?, cell.page_state()?);
        Some((0..PAGES).filter(|&p| state.has(p)).partition::<Vec<usize>, _>(|&p| skeleton(b, p)))
    };
    let (mut trimmed, mut evicted_after_trim) = (0, 0);
    let mut was_trimmed = std::collections::HashSet::new();
    for _ in 0..4 * pool.live_ids().len() {
        let before: Vec<_> = pool.live_ids().into_iter().map(|id| (id, held(id))).collect();
        let Some(trim) = pool.hand_step() else { break };
        for (id, was) in before {
            match (was, held(id)) {
                (Some((kept, rest)), Some((kept_now, rest_now))) if rest_now.len() < rest.len() => {
                    assert!(trim && rest_now.is_empty() && kept_now == kept, "frame {id:?}: only the pages past its skeleton go");
                    trimmed += 1;
                    was_trimmed.insert(id);
                }
                (Some((_, rest)), None) => {
                    assert!(!trim && rest.is_empty(), "frame {id:?}: evicted with {} pages past its skeleton", rest.len());
                    evicted_after_trim += usize::from(was_trimmed.contains(&id));
                }
                _ => {}
            }
        }
        let i = rng.below(KEYS);
        assert!(tree.get(&key(i)).unwrap() == Some(value(i, 0)), "key {i}");
    }
    assert!(trimmed > 0 && evicted_after_trim > 0, "{trimmed} trims, {evicted_after_trim} evictions after one");
    tree.check_invariants().unwrap();
}

/// `gets` gets of random keys, each holding the value of `round(key)`.
/// A guarded batch notes the frames its guard's scan read, some held in
/// part, and latches them: each is made whole under the latch, so the
/// batch's own reads through it find a whole frame (they failed with "an
/// owned frame is resident").
#[test]
fn a_batch_makes_the_frames_its_guard_read_in_part_whole() {
    // Three directories of many frames each: a directory's prefix lands
    // in the frame above them, and its guard's scan crosses into one of
    // them for the first key.
    let dir_key = |i: u64| format!("d/{}/{i:07}", i % 3).into_bytes();
    let disk = SimDisk::new();
    let tree = disk.open_tree(builder()).unwrap();
    (0..KEYS).for_each(|i| tree.put(&dir_key(i), &value(i, 0)).unwrap());
    tree.checkpoint().unwrap();
    drop(tree);
    let tree = disk.open_tree(builder()).unwrap();
    let mut rng = SplitMix64::new(0x51de);
    while tree.counters().frames_cached < POOL_FRAMES as u64 {
        assert!(tree.get(&dir_key(rng.below(KEYS))).unwrap().is_some());
    }
    let pages_before = tree.counters().pages_read;
    for round in 0..200u64 {
        let dir = round % 3;
        // Frames held in part again: gets into a full cache.
        (0..20).for_each(|_| assert!(tree.get(&dir_key(rng.below(KEYS))).unwrap().is_some()));
        let new = format!("e/{round:05}").into_bytes();
        let full = format!("d/{dir}/").into_bytes();
        assert!(!tree.atomic(|b| { b.assert_prefix_empty(&full).put(&new, b"v"); }).unwrap(), "d/{dir}/ is not empty");
        let empty = format!("d/{dir}/x").into_bytes();
        assert!(tree.atomic(|b| { b.assert_prefix_empty(&empty).put(&new, b"v"); }).unwrap(), "d/{dir}/x is");
        assert_eq!(tree.get(&new).unwrap().as_deref(), Some(&b"v"[..]));
    }
    assert!(tree.counters().pages_read > pages_before, "frames were read in part");
    tree.check_invariants().unwrap();
}

/// A writer reads the frames above the one it changes by pages, as a
/// lookup does, and only the frame it changes whole, into a buffer other
/// than the one that held its pages (that one's pages were given back:
/// filling it would fault in the frame). The keys share one prefix, so
/// the root frame links to a frame of upper nodes above the leaves'
/// frames; with every frame held in part after the gets, a put that
/// read the frames it passed through whole read two.
#[test]
fn a_writer_reads_whole_only_the_frame_it_changes() {
    let (_disk, tree, mut rng) = warmed(0x3717);
    let pool = tree.engine().pool();
    let (mut completed, mut put) = (0, std::collections::HashSet::new());
    for _ in 0..50 {
        random_gets(&tree, &mut rng, 20, |i| u8::from(put.contains(&i)));
        let i = rng.below(KEYS);
        let (id, cell) = landing(pool, &key(i));
        let part = cell.part().map(|b| b as *const FrameBuf);
        let before = tree.counters().frames_read;
        tree.put(&key(i), &value(i, 1)).unwrap();
        put.insert(i);
        let read = tree.counters().frames_read - before;
        assert!(read <= 1, "a put read {read} frames whole");
        let buf = pool.cell(id).unwrap().buf().map(|b| b as *const FrameBuf);
        if let (Some(part), Some(buf)) = (part, buf) {
            assert_ne!(part, buf, "frame {} completed in its part buffer", id.0);
            completed += 1;
        }
        assert!(tree.get(&key(i)).unwrap() == Some(value(i, 1)), "key {i}");
    }
    assert!(completed > 0, "no put landed in a frame held in part");
    tree.check_invariants().unwrap();
}

/// A writer's miss reads by pages only a frame a walk was seen to leave
/// by a link (`FrameCell::links_out`): right after a reopen no walk has
/// left any frame yet, so a put reads each frame it misses whole at once,
/// not its head and pages first and then the whole frame; the frames it
/// crossed by a link are then read by pages by later writers.
#[test]
fn a_writer_reads_a_frame_it_misses_whole_unless_seen_to_link_onward() {
    let disk = loaded_disk();
    let tree = disk.open_tree(builder()).unwrap();
    let pool = tree.engine().pool();
    let target = KEYS / 2;
    tree.put(&key(target), &value(target, 1)).unwrap();
    let c = tree.counters();
    assert!(c.cache_misses > 0 && c.cache_misses == c.frames_read && c.pages_read == 0, "{c:?}");
    let (_, cell) = landing(pool, &key(target));
    assert!(cell.page_state().is_none() && !cell.links_out(), "the landing frame was read in part");
    let linked = pool.live_ids().into_iter().filter(|&id| pool.cell(id).is_some_and(|c| c.links_out())).count();
    assert!(linked >= 1, "the root frame links onward");
    assert!(tree.get(&key(target)).unwrap() == Some(value(target, 1)));
    tree.check_invariants().unwrap();
}

/// The frame `key` lands in, found as a writer's walk finds it.
fn landing<'p>(pool: &'p crate::store::pool::Pool, key: &[u8]) -> (crate::ids::FrameId, &'p crate::store::pool::FrameCell) {
    let reader = crate::tree::Owned::new(pool);
    let land = crate::tree::descend::retry(&reader, || crate::tree::descend::try_locate_paged(pool, &reader, key)).unwrap();
    (land.view.id, land.view.cell)
}

fn random_gets(tree: &Tree, rng: &mut SplitMix64, gets: usize, round: impl Fn(u64) -> u8) {
    for _ in 0..gets {
        let i = rng.below(KEYS);
        assert!(tree.get(&key(i)).unwrap() == Some(value(i, round(i))), "key {i}");
    }
}

/// Bytes read per page read over `random_gets`: `PAGE_BYTES` or less
/// when no head (page checksums and page 0, two pages of bytes for one
/// page read) was read.
fn bytes_per_page(tree: &Tree, rng: &mut SplitMix64, gets: usize, round: impl Fn(u64) -> u8) -> u64 {
    let before = tree.counters();
    random_gets(tree, rng, gets, round);
    let after = tree.counters();
    let pages = after.pages_read - before.pages_read;
    assert!(pages > 0 && after.frames_read == before.frames_read, "{after:?}");
    (after.frame_bytes_read - before.frame_bytes_read) / pages
}

/// A frame read back in part after its eviction reads no head: its page
/// checksums and header are kept from its last load in part, for as long
/// as the store holds that image. A frame changed and written again reads
/// its new head.
#[test]
fn a_frame_read_back_in_part_reads_its_head_once_per_stored_image() {
    let disk = loaded_disk();
    let tree = disk.open_tree(builder()).unwrap();
    let mut rng = SplitMix64::new(0x4ead);
    random_gets(&tree, &mut rng, 4_000, |_| 0);
    let evictions = tree.counters().evictions;
    let per_page = bytes_per_page(&tree, &mut rng, 2_000, |_| 0);
    assert!(tree.counters().evictions > evictions, "frames came and went");
    assert!(per_page <= PAGE_BYTES as u64, "{per_page} bytes a page: heads were read again");
    let changed: Vec<u64> = (0..KEYS).step_by(40).collect();
    for &i in &changed {
        tree.put(&key(i), &value(i, 1)).unwrap();
    }
    tree.checkpoint().unwrap();
    let round = |i: u64| u8::from(i.is_multiple_of(40));
    let per_page = bytes_per_page(&tree, &mut rng, 2_000, round);
    assert!(per_page > PAGE_BYTES as u64, "{per_page} bytes a page: the rewritten frames' heads were not read");
    // Once every rewritten frame was evicted whole and read back in part
    // (how soon depends on the clock), heads are read no more.
    let settled = (0..6).any(|_| bytes_per_page(&tree, &mut rng, 2_000, round) <= PAGE_BYTES as u64);
    assert!(settled, "heads of the same stored images read again and again");
    tree.check_invariants().unwrap();
}

#[test]
fn listings_into_a_full_cache_read_pages_not_frames() {
    let disk = loaded_disk();
    let tree = disk.open_tree(builder()).unwrap();
    let mut rng = SplitMix64::new(0x115e);
    warm(&tree, &mut rng);
    let before = tree.counters();
    for _ in 0..60 {
        let dir = rng.below(97);
        let prefix = format!("k/{dir:03}/").into_bytes();
        let listed: Vec<RangeEntry> = tree.scan_prefix(&prefix).into_iter().collect::<Result<_, _>>().unwrap();
        let want: Vec<RangeEntry> =
            (0..KEYS).filter(|i| i % 97 == dir).map(|i| RangeEntry::Key { key: key(i), value: value(i, 0) }).collect();
        assert!(listed == want, "directory {dir}: {} entries listed, {} written", listed.len(), want.len());
        let groups: Vec<Vec<u8>> = tree.scan_prefix(b"k/").delimiter(b'/').into_iter().map(|e| e.unwrap().key().to_vec()).collect();
        assert_eq!(groups.len(), 97);
    }
    let after = tree.counters();
    assert_eq!(after.frames_read, before.frames_read, "no listing read a whole frame into the full cache");
    assert!(after.pages_read > before.pages_read && after.frames_cached <= POOL_FRAMES as u64, "{after:?}");
    tree.check_invariants().unwrap();
}

#[test]
fn a_page_that_fails_its_checksum_fails_the_lookups_that_read_it() {
    let disk = loaded_disk();
    let file = disk.open(std::path::Path::new("/store/frames.dat"), false).unwrap();
    let slots = (file.len().unwrap() - 4096) / SlotFormat::Paged.offset(1).saturating_sub(SlotFormat::Paged.offset(0));
    let mut corrupted = 0;
    for slot in 0..slots as u32 {
        for page in [1, PAGES / 2, PAGES - 2] {
            let at = SlotFormat::Paged.offset(slot) + (PAGE_TABLE_BYTES + page * PAGE_BYTES + 99) as u64;
            let mut byte = [0u8];
            file.read_at(&mut byte, at).unwrap();
            file.write_at(&[byte[0] ^ 0x20], at).unwrap();
            let tree = disk.open_tree(builder()).unwrap();
            let mut rng = SplitMix64::new(slot as u64);
            warm_tolerating_corruption(&tree, &mut rng);
            for i in (0..KEYS).step_by(7) {
                match tree.get(&key(i)) {
                    Ok(v) => assert!(v == Some(value(i, 0)), "key {i} read wrong with slot {slot} page {page} flipped"),
                    Err(Error::Corrupted { .. }) => corrupted += 1,
                    Err(e) => panic!("key {i}: {e}"),
                }
            }
            drop(tree);
            file.write_at(&byte, at).unwrap();
        }
    }
    assert!(corrupted > 0, "no flip was ever read");
    let tree = disk.open_tree(builder()).unwrap();
    (0..KEYS).step_by(7).for_each(|i| assert!(tree.get(&key(i)).unwrap() == Some(value(i, 0))));
}

/// `warm`, where some keys may be unreadable.
fn warm_tolerating_corruption(tree: &Tree, rng: &mut SplitMix64) {
    for _ in 0..10_000 {
        if tree.counters().frames_cached >= POOL_FRAMES as u64 {
            return;
        }
        let _ = tree.get(&key(rng.below(KEYS)));
    }
}

/// Readers fault pages into frames that a writer completes and changes
/// under them: every get and every listing finds the old or the new value
/// of each key, never anything else, a listing finds every key, and
/// nothing starves.
#[test]
fn readers_and_a_writer_share_frames_resident_in_part() {
    let disk = loaded_disk();
    let tree = disk.open_tree(builder()).unwrap();
    warm(&tree, &mut SplitMix64::new(1));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3u64)
        .map(|t| {
            let (tree, done) = (tree.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(100 + t);
                let mut n = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || n < 200 {
                    match t {
                        0 | 1 => (0..10).for_each(|_| get_old_or_new(&tree, rng.below(KEYS), t)),
                        _ => list_old_or_new(&tree, rng.below(97)),
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let mut rng = SplitMix64::new(7);
    for _ in 0..1_500 {
        let i = rng.below(KEYS);
        tree.put(&key(i), &value(i, 1)).unwrap();
    }
    tree.checkpoint().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    readers.into_iter().for_each(|r| r.join().unwrap());
    assert!(tree.counters().pages_read > 0);
    tree.check_invariants().unwrap();
}

fn get_old_or_new(tree: &Tree, i: u64, t: u64) {
    let v = tree.get(&key(i)).unwrap();
    assert!(v == Some(value(i, 0)) || v == Some(value(i, 1)), "thread {t}: key {i}");
}

/// Every key of directory `dir`, each with its old or its new value.
fn list_old_or_new(tree: &Tree, dir: u64) {
    let listed: Vec<RangeEntry> = tree.scan_prefix(format!("k/{dir:03}/").as_bytes()).into_iter().collect::<Result<_, _>>().unwrap();
    let keys: Vec<u64> = (0..KEYS).filter(|i| i % 97 == dir).collect();
    assert_eq!(listed.len(), keys.len(), "directory {dir}");
    for (e, &i) in listed.iter().zip(&keys) {
        let RangeEntry::Key { key: k, value: v } = e else { panic!("no delimiter, no group") };
        assert!(*k == key(i) && (*v == value(i, 0) || *v == value(i, 1)), "directory {dir}: key {i}");
    }
}

/// A store whose frame file an older build made (version 1: slots without
/// page checksums) is read whole and keeps being written in version 1.
#[test]
fn a_version_1_store_stays_version_1_and_is_read_whole() {
    use crate::store::frame_file::{FrameFile, FRAME_FILE_NAME};
    use crate::store::frame_store::FrameStore;
    use crate::store::vfs::Vfs;
    let disk = SimDisk::new();
    let (dir, vfs) = (std::path::Path::new("/store"), Arc::new(disk.vfs().clone()));
    vfs.create_dir_all(dir).unwrap();
    drop(FrameStore::open(vfs.clone(), dir).unwrap());
    let path = dir.join(FRAME_FILE_NAME);
    let (_, store_id) = FrameFile::open(&*vfs, &path).unwrap();
    FrameFile::create_in(&*vfs, &path, store_id, SlotFormat::Whole).unwrap();
    let tree = disk.open_tree(builder()).unwrap();
    for i in 0..KEYS / 2 {
        tree.put(&key(i), &value(i, 0)).unwrap();
    }
    tree.checkpoint().unwrap();
    drop(tree);
    let (file, _) = FrameFile::open(&*vfs, &path).unwrap();
    assert_eq!(file.format(), SlotFormat::Whole);
    let slots = u64::from(file.slots_in_file().unwrap());
    assert_eq!(vfs.open(&path, false).unwrap().len().unwrap(), SlotFormat::Whole.offset(slots as u32), "version 1 slots");
    let tree = disk.open_tree(builder()).unwrap();
    let mut rng = SplitMix64::new(3);
    for _ in 0..3_000 {
        let i = rng.below(KEYS / 2);
        assert!(tree.get(&key(i)).unwrap() == Some(value(i, 0)), "key {i}");
    }
    let c = tree.counters();
    assert!(c.frames_read > POOL_FRAMES as u64 && c.pages_read == 0, "{c:?}");
    tree.check_invariants().unwrap();
}
