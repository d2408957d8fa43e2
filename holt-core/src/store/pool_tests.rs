//! The pool alone, over a source of formatted frame images: eviction stays
//! within the budget, never takes a dirty or pinned frame, costs O(1) hand
//! visits per miss however many frames are dirty, and a pool that nothing
//! can be evicted from grows instead of spinning, then shrinks back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Copied, Cut, FrameCell, Sunk, FrameSource, Loaded, Pool, CLEAN_FRAMES_MIN};
use crate::error::Result;
use crate::ids::{FrameId, Lsn};
use crate::layout::{FrameBuf, FRAME_BYTES};
use crate::store::image_buf::{ImageBuf, Via};
use crate::store::pins::Held;

/// What tests look at and drive in any pool, beside its API.
impl Pool {
    /// One step of the clock's hand past its floor checks: `Some(true)` if
    /// it trimmed a frame held in part, `Some(false)` if it evicted one.
    pub(crate) fn hand_step(&self) -> Option<bool> {
        let (buf, pages) = self.clock.evict(&self.cells)?;
        self.held_pages.fetch_sub(pages, Ordering::AcqRel);
        if !buf.is_null() {
            self.park_buf(buf);
        }
        Some(buf.is_null())
    }

    /// Whether the clock could evict frame `id` now, its latch aside.
    pub(crate) fn is_evictable(&self, id: FrameId) -> bool {
        self.cell(id).is_some_and(FrameCell::evictable)
    }

    /// The clock's entries and the hand's visits so far.
    pub(crate) fn clock_census(&self) -> (usize, u64) {
        self.clock.census()
    }

    /// The live-frame count `loads_pages` reads (tests hold it to `live_ids`).
    pub(crate) fn live_frame_count(&self) -> usize {
        self.live_frames.load(Ordering::Acquire)
    }
}

/// Stored frames have ids from here on; ids below are created in memory.
const STORED_BASE: u64 = 10_000;

/// Stored frame images, and how each load asked to read them.
struct Images(HashMap<FrameId, Vec<u8>>, parking_lot::Mutex<Vec<Via>>);

impl FrameSource for Images {
    fn read_frame(&self, id: FrameId, into: &mut ImageBuf, via: Via) -> Result<Loaded> {
        into.copy_from_slice(&self.0[&id]);
        self.1.lock().push(via);
        Ok(Loaded { bytes: FRAME_BYTES as u64, base: None })
    }
}

/// A pool of `capacity` frames over `stored` frames kept by its source.
fn pool_over(capacity: usize, stored: u64) -> (Pool, Vec<FrameId>) {
    let (pool, ids, _) = pool_with_source(capacity, stored);
    (pool, ids)
}

fn pool_with_source(capacity: usize, stored: u64) -> (Pool, Vec<FrameId>, Arc<Images>) {
    let ids: Vec<FrameId> = (0..stored).map(|i| FrameId(STORED_BASE + i)).collect();
    let images = ids
        .iter()
        .map(|&id| {
            let b = FrameBuf::zeroed();
            b.format(id);
            (id, b.to_image())
        })
        .collect();
    let source = Arc::new(Images(images, Default::default()));
    let pool = Pool::new(capacity, Some(source.clone()));
    for &id in &ids {
        pool.register_stored(id);
    }
    (pool, ids, source)
}

/// Loads read through the page cache while the pool has room (a restart
/// finds the last checkpoint's frames there); with direct reads asked for,
/// around it once the pool is full (a copy there would only double the
/// memory its frames take); without, through it always (it keeps what the
/// pool evicts).
#[test]
fn loads_go_around_the_page_cache_once_the_pool_is_full_if_asked() {
    for direct in [true, false] {
        let (pool, ids, source) = pool_with_source(8, 12);
        let pool = pool.with_direct_reads(direct);
        for &id in &ids {
            touch(&pool, id);
        }
        let vias = source.1.lock().clone();
        assert_eq!(vias[..8], [Via::PageCache; 8], "the first eight loads fill the pool");
        let later = if direct { Via::Direct } else { Via::PageCache };
        assert_eq!(vias[8..], [later; 4], "every later load replaces a frame");
        assert!(pool.resident_count() <= 8);
    }
}

/// Read frame `id` through the pool as a reader does (load unless resident).
fn touch(pool: &Pool, id: FrameId) {
    Held::new(pool, id).unwrap();
}

/// `n` frames created in memory: resident, dirty, never written anywhere.
fn dirty_frames(pool: &Pool, n: usize) -> Vec<FrameId> {
    (0..n)
        .map(|_| {
            let (id, cell) = pool.create();
            cell.latch.unlock();
            id
        })
        .collect()
}

/// The copier's pass over `cut`: the frames it cleaned, and every image
/// it handed out (the writers' copies included), by id.
type Captured<'p> = (Vec<(FrameId, &'p FrameCell)>, Vec<(FrameId, Vec<u8>)>);

fn copy_all<'p>(pool: &'p Pool, cut: &Cut) -> Captured<'p> {
    let mut images = Vec::new();
    let (held, written) = pool.copy_pending(cut, 0, false, &mut |id, img, _| {
        images.push((id, img.to_vec()));
        Ok(Sunk::Written)
    });
    assert_eq!(written.unwrap(), Copied::All);
    images.sort_by_key(|&(id, _)| id);
    (held, images)
}

/// A checkpoint's capture with no writer running: the cut, then the
/// copier takes every image. The ids the cut retired count as dropped.
fn capture(pool: &Pool) -> Vec<(FrameId, &FrameCell)> {
    let cut = pool.cut();
    let (held, images) = copy_all(pool, &cut);
    assert_eq!(images.len(), held.len(), "the copier took every image");
    pool.settle_retired(cut.retired, true);
    held
}

#[test]
fn eviction_keeps_the_budget_and_spares_dirty_and_pinned_frames() {
    let (pool, ids) = pool_over(8, 64);
    let dirty = dirty_frames(&pool, 3);
    let pinned = Held::new(&pool, ids[0]).unwrap();
    for round in 0..5 {
        for &id in &ids[1..] {
            touch(&pool, id);
            assert!(pool.resident_count() <= 8, "round {round}: {} resident", pool.resident_count());
        }
    }
    assert_eq!(pool.dirty_count(), 3);
    for id in dirty {
        assert!(pool.cell(id).unwrap().buf().is_some(), "dirty frame {id:?} was evicted");
    }
    assert!(pool.cell(ids[0]).unwrap().buf().is_some(), "the pinned frame was evicted");
    drop(pinned);
    let misses = pool.counters.misses.get();
    assert!(misses >= 5 * 63, "every round reloads the frames: {misses}");
    assert_eq!(pool.counters.evictions.get(), misses - (8 - 3), "a miss past the budget evicts one frame");
    assert_eq!(pool.counters.frames_read.get(), misses);
    assert_eq!(pool.counters.bytes_read.get(), misses * FRAME_BYTES as u64);
    let (entries, _) = pool.clock_census();
    assert!(entries <= 8, "the ring holds each evictable frame once: {entries}");
}

/// The old pool counted every frame's state on each miss; the clock only
/// visits evictable frames, so the work per miss stays flat with 1000 dirty.
#[test]
fn eviction_work_per_miss_is_constant_however_many_frames_are_dirty() {
    let (pool, ids) = pool_over(8, 64);
    dirty_frames(&pool, 1000);
    for &id in ids.iter().cycle().take(20 * ids.len()) {
        touch(&pool, id);
    }
    let evictions = pool.counters.evictions.get();
    let (_, visits) = pool.clock_census();
    assert!(evictions > 1000, "{evictions}");
    assert!(visits <= 3 * evictions, "{visits} hand visits for {evictions} evictions");
}

#[test]
fn a_pool_full_of_dirty_frames_grows_then_shrinks_after_a_checkpoint() {
    let (pool, ids) = pool_over(8, 16);
    dirty_frames(&pool, 8);
    for &id in &ids {
        touch(&pool, id);
    }
    // Over budget, the pool keeps its clean floor (4 frames here) and
    // evicts among those.
    assert_eq!(pool.resident_count(), 8 + 4);
    let held: Vec<Held<'_>> = ids.iter().map(|&id| Held::new(&pool, id).unwrap()).collect();
    assert_eq!(pool.resident_count(), 8 + 16, "pinned frames stay: the pool grew past its budget");
    drop(held);
    assert_eq!(pool.resident_count(), 8 + 4, "released pins shrink it back to the floor");
    let captured = capture(&pool);
    assert_eq!((captured.len(), pool.dirty_count()), (8, 0));
    pool.release_captured(&captured, true);
    for &id in &ids {
        touch(&pool, id);
        assert!(pool.resident_count() <= 8, "a checkpoint's frames became evictable");
    }
}

#[test]
fn a_failed_checkpoint_leaves_its_frames_dirty_and_resident() {
    let (pool, _) = pool_over(4, 0);
    let dirty = dirty_frames(&pool, 6);
    let captured = capture(&pool);
    assert_eq!(pool.dirty_count(), 0);
    pool.release_captured(&captured, false);
    assert_eq!(pool.dirty_count(), 6);
    pool.shrink_to_budget();
    assert_eq!(pool.resident_count(), 6, "dirty frames are never evicted");
    let again = capture(&pool);
    assert_eq!(again.iter().map(|&(id, _)| id).collect::<Vec<_>>(), dirty, "each dirty frame once");
}

#[test]
fn a_retired_frame_is_not_dirty_and_its_reused_id_is_counted_once() {
    let (pool, _) = pool_over(4, 0);
    let (id, cell) = pool.create();
    pool.retire(id, cell);
    pool.mark_dirty(id, cell);
    cell.latch.unlock();
    assert_eq!(pool.dirty_count(), 0, "a retired frame is never dirty");
    let (other, cell) = pool.create();
    cell.latch.unlock();
    assert_ne!(other, id, "a retired id waits for a checkpoint to drop it");
    assert_eq!(capture(&pool).len(), 1);
    let (again, cell) = pool.create();
    cell.latch.unlock();
    assert_eq!((again, pool.dirty_count()), (id, 1));
    assert_eq!(capture(&pool).len(), 1);
}

/// A writer latching a frame pending for a running capture copies it
/// first (the frame as it was at the cut) and dirties it in the new epoch;
/// the copier then skips it, and copies the others, each once.
#[test]
fn a_writer_copies_a_pending_frame_once_and_the_copier_skips_it() {
    let (pool, _) = pool_over(16, 0);
    let ids = dirty_frames(&pool, 3);
    let cut = pool.cut();
    assert_eq!((pool.images_taken(), pool.dirty_count()), (0, 3), "the cut copies nothing");
    let cell = pool.cell(ids[1]).unwrap();
    cell.latch.lock();
    pool.before_write(ids[1], cell);
    let buf = cell.buf().unwrap();
    let at_cut = buf.to_image();
    buf.set_lsn(Lsn(77));
    assert!(buf.to_image() != at_cut);
    pool.mark_dirty(ids[1], cell);
    pool.before_write(ids[1], cell);
    cell.latch.unlock();
    assert_eq!((pool.images_taken(), pool.counters.copies_on_write.get()), (1, 1), "copied once, before the change");
    let (held, images) = copy_all(&pool, &cut);
    assert_eq!(held.iter().map(|&(id, _)| id).collect::<Vec<_>>(), [ids[0], ids[2]]);
    assert_eq!(images.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "every frame of the cut, once");
    assert!(images[1].1 == at_cut, "the writer's copy is the frame at the cut");
    assert_eq!(pool.dirty_count(), 1, "only the written frame is dirty after the copy");
    pool.release_captured(&held, true);
    assert_eq!(capture(&pool).iter().map(|&(id, _)| id).collect::<Vec<_>>(), [ids[1]]);
}

/// A pool that grew past its budget with dirty frames gives the memory of
/// the buffers it sheds back to the kernel once they are clean, beyond a
/// few kept warm; a released buffer reads as zeros and is reused.
#[test]
fn buffers_shed_past_the_budget_give_their_memory_back() {
    assert_eq!(pool_over(4, 0).0.warm_bufs_max(), 1, "a small cache keeps one warm");
    assert_eq!(pool_over(64, 0).0.warm_bufs_max(), 4, "a sixteenth of the budget");
    assert_eq!(pool_over(1024, 0).0.warm_bufs_max(), 16);
    let (pool, _) = pool_over(4, 0);
    let warm_max = pool.warm_bufs_max();
    let dirty = dirty_frames(&pool, 4 + warm_max + 8);
    assert_eq!(pool.resident_count(), dirty.len(), "dirty frames stay past the budget");
    let captured = capture(&pool);
    pool.release_captured(&captured, true);
    pool.shrink_to_budget();
    assert!(pool.resident_count() <= 4 + CLEAN_FRAMES_MIN, "clean frames are shed down to the budget");
    let shed = dirty.len() - pool.resident_count();
    assert_eq!(pool.counters.buffers_released.get() as usize, shed.saturating_sub(warm_max));
    let released = pool.free_bufs.lock().last_cold().expect("a shed buffer is kept for reuse");
    // SAFETY: buffers stay allocated while the pool lives.
    assert!(unsafe { &*released }.to_image().iter().all(|&b| b == 0), "a released buffer reads as zeros");
    let allocated = pool.all.lock().len();
    dirty_frames(&pool, shed);
    assert_eq!(pool.all.lock().len(), allocated, "new frames reuse the shed buffers, released ones included");
}

/// The room a pressed checkpoint may fill with images is the budget
/// nothing holds: memory set aside for others (the miss filter) is not
/// room.
#[test]
fn room_is_the_budget_neither_frames_nor_memory_set_aside_hold() {
    let (pool, _) = pool_over(64, 0);
    dirty_frames(&pool, 10);
    assert_eq!(pool.room(), 54);
    pool.set_aside(8 * FRAME_BYTES);
    assert_eq!(pool.room(), 46);
    dirty_frames(&pool, 50);
    assert_eq!(pool.room(), 0, "past the budget: none");
}

/// Shed buffers that kept their memory are handed out before those that
/// gave it back (a load into one of those faults in every page), and a
/// plain buffer gives its memory back when parked: a frame held in part
/// gives it back before use anyway, so warm it would only hold memory.
#[test]
fn warm_buffers_are_reused_first_and_plain_ones_park_cold() {
    let (pool, _) = pool_over(4, 0);
    let warm_max = pool.warm_bufs_max();
    let dirty = dirty_frames(&pool, 4 + warm_max + 8);
    let captured = capture(&pool);
    pool.release_captured(&captured, true);
    pool.shrink_to_budget();
    let count = || {
        let free = pool.free_bufs.lock();
        (free.warm.clone(), free.cold.len())
    };
    let (warm, cold) = count();
    assert_eq!(warm.len(), warm_max);
    assert!(cold > 0 && warm.len() + cold == dirty.len() - pool.resident_count(), "{} warm, {cold} cold", warm.len());
    // Room for new frames without evicting (the shed buffers go cold).
    while pool.resident_count() + warm.len() > pool.capacity() {
        pool.hand_step().expect("a clean frame to shed");
    }
    let (warm, cold) = count();
    dirty_frames(&pool, warm.len());
    let free = pool.free_bufs.lock();
    assert!(warm.iter().all(|b| !free.warm.contains(b)) && free.cold.len() == cold, "new frames took the warm buffers, no cold one");
    drop(free);
    let released = pool.counters.buffers_released.get();
    let plain = pool.alloc_buf(1);
    pool.park_buf(plain);
    assert_eq!(pool.counters.buffers_released.get(), released + 1, "a plain buffer parks with its memory given back");
    assert_eq!(pool.free_plain_bufs.lock().last_cold(), Some(plain));
}

/// Stored images a test may replace (a checkpoint writing a frame), whose
/// next read of one frame, once armed, stops after reading until the test
/// lets it return.
struct Gated {
    images: parking_lot::Mutex<HashMap<FrameId, Vec<u8>>>,
    armed: parking_lot::Mutex<Option<FrameId>>,
    read_done: std::sync::Barrier,
    go: std::sync::Barrier,
}

impl FrameSource for Gated {
    fn read_frame(&self, id: FrameId, into: &mut ImageBuf, _via: Via) -> Result<Loaded> {
        into.copy_from_slice(&self.images.lock()[&id]);
        if self.armed.lock().take_if(|armed| *armed == id).is_some() {
            self.read_done.wait();
            self.go.wait();
        }
        Ok(Loaded { bytes: FRAME_BYTES as u64, base: None })
    }
}

/// A load reads without the latch. Here, while one stops between its read
/// and its install, another thread loads the frame, changes it, has a
/// checkpoint write it and sees it evicted: the first load's image is then
/// older than the store's, and must not be installed (it would bring the
/// frame back without the change, which the WAL may no longer hold).
#[test]
fn a_load_that_read_before_the_frame_changed_installs_nothing() {
    use crate::layout::HDR_LSN;
    let ids: Vec<FrameId> = (0..16).map(|i| FrameId(STORED_BASE + i)).collect();
    let image = |id| {
        let b = FrameBuf::zeroed();
        b.format(id);
        b.to_image()
    };
    let source = Arc::new(Gated {
        images: parking_lot::Mutex::new(ids.iter().map(|&id| (id, image(id))).collect()),
        armed: parking_lot::Mutex::new(Some(ids[0])),
        read_done: std::sync::Barrier::new(2),
        go: std::sync::Barrier::new(2),
    });
    let pool = Pool::new(8, Some(source.clone()));
    ids.iter().for_each(|&id| pool.register_stored(id));
    let (f, cell) = (ids[0], pool.cell(ids[0]).unwrap());
    /// Lets the stopped read return when dropped, so a failing check
    /// below fails the test instead of hanging it.
    struct Go<'a>(&'a std::sync::Barrier);
    impl Drop for Go<'_> {
        fn drop(&mut self) {
            self.0.wait();
        }
    }
    std::thread::scope(|s| {
        let slow = s.spawn(|| pool.load(f, cell));
        source.read_done.wait();
        let go = Go(&source.go);
        pool.load(f, cell).unwrap();
        cell.latch.lock();
        cell.buf().unwrap().set_u64(HDR_LSN, 77);
        pool.mark_dirty(f, cell);
        cell.latch.unlock();
        let cut = pool.cut();
        let (held, images) = copy_all(&pool, &cut);
        source.images.lock().extend(images);
        pool.settle_retired(cut.retired, true);
        pool.release_captured(&held, true);
        for &id in ids[1..].iter().cycle().take(64) {
            touch(&pool, id);
        }
        assert!(cell.buf().is_none(), "the changed frame was evicted");
        drop(go);
        slow.join().unwrap().unwrap();
    });
    let held = Held::new(&pool, f).unwrap();
    assert_eq!(held.buf().u64(HDR_LSN), 77, "the frame came back without its change");
}
