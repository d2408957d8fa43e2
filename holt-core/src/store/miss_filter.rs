//! The miss filter: a Bloom filter over every key of the tree, so a
//! lookup of an absent key usually stops at the first frame link instead of
//! walking cold frames down to the miss.
//!
//! Layout. A filter is an array of 64-bit words; a key sets up to eight
//! bits in the one word its hash picks (a register-blocked Bloom filter),
//! so a probe is one load, prefetched when the lookup starts and read when
//! it crosses its first link, and a put one load and at most one locked
//! or. Sized at `BITS_PER_KEY` bits for each key of its capacity.
//!
//! Two regions hold filters: the current one, answered from, and the one
//! being built. Each is a `REGION_BYTES_MAX` reservation of address space
//! (no memory) whose used head is made readable and writable as needed and
//! never unmapped while the filter lives; a retired filter's memory goes
//! back to the kernel (`MADV_DONTNEED`, after which it reads as zeros).
//!
//! Invariants:
//! - no false negatives: while a filter is current, it holds the bits of
//!   every key in the tree. Its build scan sets the bits of every key
//!   present from the scan's start; every writer sets the bits of the keys
//!   it puts (puts, batch puts, rename targets) in the current filter and
//!   in the one being built, before it publishes them (it releases its
//!   frames after). Writers read which filters those are under the commit
//!   gate's shared side; the builder changes them under its exclusive side,
//!   so no put falls between the scan's start and the writers' bit sets.
//! - deletes leave their bits (a filter only gains false positives); a
//!   rebuild, once deletes or growth made it worth one, drops them.
//! - a reader validates like a seqlock: it reads `state` before and after
//!   the word, and trusts an "absent" only if the state did not move. The
//!   state's generation moves whenever a filter is published, so a reader
//!   of a retired region (being zeroed, or rebuilt) never trusts what it
//!   read. Bit sets are release operations and the reader fences before
//!   its second read, so a word written after a publish is seen only
//!   with the publish.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

use crate::counter::Counter;

/// Filter bits per key of capacity. Filters are built with twice the live
/// keys as capacity, so a fresh filter has about 16 bits a key (a false
/// positive rate near 0.4%) and one at capacity 8 (about 5%).
pub(crate) const BITS_PER_KEY: u64 = 8;
/// The smallest capacity a filter is built with, in keys (64 KiB).
pub(crate) const CAPACITY_MIN: u64 = 1 << 16;
/// Bytes of address space reserved for each region: filters for up to
/// about 10^9 keys; a larger tree keeps a filter of this size, with more
/// false positives.
const REGION_BYTES_MAX: usize = 1 << 30;
const WORD_BYTES: usize = 8;
/// Bits a key sets (fewer where two land together).
const BITS: usize = 8;
const PAGE: usize = 4096;

/// `state` bits: the current region's index, whether a filter is current,
/// and the generation above them.
const IDX: u64 = 1;
const READY: u64 = 2;
const GEN_ONE: u64 = 4;

/// Odd multipliers that spread a key's low hash bits over its word.
const SALTS: [u32; BITS] =
    [0x47b6_137b, 0x4497_4d91, 0x8824_ad5b, 0xa2b7_289d, 0x7054_95c7, 0x2df1_424b, 0x9efc_4947, 0x5c6b_fb31];

/// A probe costs a present key about 5-9% of a lookup (the hash, and a
/// random cache line that evicts some of the tree's) and saves an absent
/// one half of it: a thread probes while its recent lookups missed often
/// enough. Each miss adds `MISS_CREDIT`, each hit takes one away, so the
/// score stays above zero while more than about one lookup in
/// `MISS_CREDIT + 1` misses; a thread starts out probing.
const MISS_CREDIT: u32 = 3;
const MISS_SCORE_MAX: u32 = 64;

thread_local! {
    static MISS_SCORE: Cell<u32> = const { Cell::new(MISS_CREDIT) };
}

/// The 64-bit hash a key's filter bits come from.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(23) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    // The finaliser of MurmurHash3: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bits a hash sets in its word.
#[inline]
fn mask(h: u64) -> u64 {
    SALTS.iter().fold(0, |m, &salt| m | 1 << ((h as u32).wrapping_mul(salt) >> 26))
}

/// Words of a filter for `capacity` keys: whole pages, and whole huge
/// pages from half a huge page up (the memory a huge page holds anyway).
pub(crate) fn words_for(capacity: u64) -> usize {
    // Saturating: a capacity read from a saved filter may be anything.
    let bytes = (capacity.saturating_mul(BITS_PER_KEY) / 8).min(REGION_BYTES_MAX as u64) as usize;
    let unit = if bytes >= HUGE / 2 { HUGE } else { PAGE };
    bytes.next_multiple_of(unit).min(REGION_BYTES_MAX) / WORD_BYTES
}

/// Bytes of a filter for `capacity` keys (`words_for`).
pub(crate) fn bytes_for(capacity: u64) -> u64 {
    words_for(capacity) as u64 * WORD_BYTES as u64
}

/// A fingerprint of how keys map to bits (`key_hash`, `mask`): a saved
/// filter (`store::filter_file`) is taken only by a build whose
/// fingerprint is the same, since a filter read with another mapping
/// would call present keys absent.
pub(crate) fn hash_check() -> u64 {
    [&b"holt-core"[..], b"/miss/filter", b""].iter().fold(0, |acc, probe| {
        let h = key_hash(probe);
        (acc.rotate_left(17) ^ h ^ mask(h)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

/// Huge-page size: regions are aligned to it and advised to use huge
/// pages, so a probe's random word costs no TLB miss of its own (a 2 MiB
/// filter in 4 KiB pages is 512 of them).
const HUGE: usize = 2 << 20;

/// One reserved region of address space.
struct Region {
    /// The reservation as mapped (for the unmap), `HUGE` bytes larger.
    mapped: NonNull<libc::c_void>,
    /// The first `HUGE`-aligned byte of it.
    base: NonNull<AtomicU64>,
    /// Bytes at the head made readable and writable (grows only).
    open: AtomicU64,
    /// Words of the filter it holds (or is being built in it).
    words: AtomicU64,
}

impl Region {
    fn reserve() -> Option<Region> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: a fresh anonymous mapping with no access; nothing aliases it.
        let raw = unsafe { libc::mmap(std::ptr::null_mut(), REGION_BYTES_MAX + HUGE, libc::PROT_NONE, flags, -1, 0) };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let mapped = NonNull::new(raw)?;
        let base = NonNull::new(raw.cast::<u8>().wrapping_add(raw.align_offset(HUGE)).cast::<AtomicU64>())?;
        Some(Region { mapped, base, open: AtomicU64::new(0), words: AtomicU64::new(0) })
    }

    /// The word `h` picks, for a filter of `words` words.
    #[inline]
    fn word(&self, h: u64, words: u64) -> *const AtomicU64 {
        self.base.as_ptr().wrapping_add((((h >> 32) * words) >> 32) as usize)
    }

    /// Make room for a filter of `words` words, zeroed, and with `backed`
    /// faulted in (so writers setting bits never wait on a page fault).
    /// Only the builder calls this, on a region no writer sets bits in and
    /// no reader trusts.
    fn prepare(&self, words: usize, backed: bool) -> bool {
        let bytes = words * WORD_BYTES;
        let open = self.open.load(Ordering::Acquire) as usize;
        if bytes > open {
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            let at = self.base.as_ptr().cast::<libc::c_void>();
            // SAFETY: a range inside this region's reservation.
            if unsafe { libc::mprotect(at, bytes, prot) } != 0 {
                return false;
            }
            // SAFETY: as above; advice, whose failure (no huge pages) only
            // leaves small pages.
            unsafe { libc::madvise(at, bytes, libc::MADV_HUGEPAGE) };
            self.open.store(bytes as u64, Ordering::Release);
        }
        for page in (0..bytes / 8).step_by(PAGE / 8).filter(|_| backed) {
            // SAFETY: inside the open head. A store of the zero the word
            // holds (the region is empty until registered) that makes the
            // kernel back the page: an `or` of nothing compiles to a load
            // the optimiser may drop, and faults nothing in.
            unsafe { &*self.base.as_ptr().add(page) }.store(0, Ordering::Relaxed);
        }
        self.words.store(words as u64, Ordering::Release);
        true
    }

    /// Give the region's memory back; it reads as zeros from now on.
    fn release(&self) {
        let open = self.open.load(Ordering::Acquire) as usize;
        if open > 0 {
            // SAFETY: the open head of this region; advice never unmaps it.
            unsafe { libc::madvise(self.base.as_ptr().cast(), open, libc::MADV_DONTNEED) };
        }
        self.words.store(0, Ordering::Release);
    }

    /// The words of the filter it holds (none after `release`).
    fn words(&self) -> &[AtomicU64] {
        let words = self.words.load(Ordering::Acquire) as usize;
        // SAFETY: `prepare` opened these words before storing the count,
        // the open head is never closed while the region lives, and its
        // memory is only ever accessed as atomics.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), words) }
    }

    fn set(&self, h: u64) {
        let words = self.words.load(Ordering::Acquire);
        if words == 0 {
            return;
        }
        // SAFETY: inside the open head (`prepare` opened `words` words
        // before storing the count), where memory is only ever accessed as
        // atomics.
        let word = unsafe { &*self.word(h, words) };
        let m = mask(h);
        // A key written again finds its bits set: no locked write.
        if word.load(Ordering::Relaxed) & m != m {
            word.fetch_or(m, Ordering::Release);
        }
    }

    /// Bring the word `h` picks into the cache.
    fn prefetch(&self, h: u64) {
        let words = self.words.load(Ordering::Acquire);
        if words > 0 {
            prefetch(self.word(h, words));
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the whole reservation, unmapped once, with the filter.
        unsafe { libc::munmap(self.mapped.as_ptr(), REGION_BYTES_MAX + HUGE) };
    }
}

/// The filter, with its two regions.
pub(crate) struct MissFilter {
    regions: [Region; 2],
    /// Generation, whether a filter is current, and which region holds it.
    state: AtomicU64,
    /// 1 + the region being built, or 0. Changed under the commit gate's
    /// exclusive side and read under its shared side.
    building: AtomicU8,
    /// Keys the current filter was sized for.
    capacity: AtomicU64,
    /// Lookups the filter answered (absent) without finishing their walk.
    pub answered: Counter,
}

// SAFETY: the regions are memory this value owns, touched only as atomics.
unsafe impl Send for MissFilter {}
// SAFETY: as above; every shared access is atomic.
unsafe impl Sync for MissFilter {}

/// A lookup's probe: the word its key picks in the filter current when
/// the lookup started, prefetched, and the key's bits.
pub(crate) struct Probe<'f> {
    filter: &'f MissFilter,
    state: u64,
    word: *const AtomicU64,
    mask: u64,
}

impl Probe<'_> {
    /// True if the key is certainly absent from the tree (as of now, or of
    /// a moment during the lookup).
    #[inline]
    pub(crate) fn absent(&self) -> bool {
        // SAFETY: inside the region's open head (never closed while the
        // filter lives); atomics only. A retired region's words are
        // distrusted below.
        let w = unsafe { &*self.word }.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let absent = w & self.mask != self.mask && self.filter.state.load(Ordering::Relaxed) == self.state;
        if absent {
            self.filter.answered.add(1);
        }
        absent
    }
}

impl MissFilter {
    /// An empty filter (nothing current), or `None` if no address space
    /// could be reserved for it.
    pub(crate) fn new() -> Option<MissFilter> {
        Some(MissFilter {
            regions: [Region::reserve()?, Region::reserve()?],
            state: AtomicU64::new(0),
            building: AtomicU8::new(0),
            capacity: AtomicU64::new(0),
            answered: Counter::default(),
        })
    }

    /// The probe for `key`, with its word prefetched; `None` while no
    /// filter is current, or while this thread's lookups have been finding
    /// their keys (`MISS_SCORE`).
    #[inline]
    pub(crate) fn probe(&self, key: &[u8]) -> Option<Probe<'_>> {
        if MISS_SCORE.with(Cell::get) == 0 {
            return None;
        }
        let state = self.state.load(Ordering::Acquire);
        if state & READY == 0 {
            return None;
        }
        let region = &self.regions[(state & IDX) as usize];
        let hash = key_hash(key);
        let word = region.word(hash, region.words.load(Ordering::Acquire));
        prefetch(word);
        Some(Probe { filter: self, state, word, mask: mask(hash) })
    }

    /// Bring the words `key` will set into the cache, ahead of the put
    /// (`note_put`) that sets them: a write prefetches while it walks.
    #[inline]
    pub(crate) fn prefetch_put(&self, key: &[u8]) {
        let state = self.state.load(Ordering::Acquire);
        if state & READY != 0 {
            self.regions[(state & IDX) as usize].prefetch(key_hash(key));
        }
    }

    /// Count a lookup's outcome towards this thread's `MISS_SCORE`.
    #[inline]
    pub(crate) fn note_lookup(found: bool) {
        MISS_SCORE.with(|s| {
            let score = s.get();
            s.set(if found { score.saturating_sub(1) } else { (score + MISS_CREDIT).min(MISS_SCORE_MAX) });
        });
    }

    /// Set `key`'s bits in the current filter and in the one being built.
    /// The caller holds the commit gate's shared side and publishes the
    /// key only after this returns.
    pub(crate) fn note_put(&self, key: &[u8]) {
        let state = self.state.load(Ordering::Acquire);
        let building = self.building.load(Ordering::Acquire);
        if state & READY == 0 && building == 0 {
            return;
        }
        let h = key_hash(key);
        if state & READY != 0 {
            self.regions[(state & IDX) as usize].set(h);
        }
        if building != 0 {
            self.regions[building as usize - 1].set(h);
        }
    }

    /// Keys the current filter was sized for; 0 while none is current.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Acquire)
    }

    /// The current filter's capacity and words, while one is current.
    /// The words stay readable for the filter's life; a retire or a
    /// rebuild in the meantime changes them (to zeros or another filter),
    /// so only a caller that excludes both (a clean close, its keeper
    /// stopped) reads a filter whole.
    pub(crate) fn current_words(&self) -> Option<(u64, &[AtomicU64])> {
        let state = self.state.load(Ordering::Acquire);
        (state & READY != 0).then(|| (self.capacity(), self.regions[(state & IDX) as usize].words()))
    }

    /// Bytes of memory the filters hold now.
    pub(crate) fn bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.words.load(Ordering::Acquire) * WORD_BYTES as u64).sum()
    }

    /// Stop answering and give the current filter's memory back. Call
    /// under the commit gate's exclusive side (writers read `state` under
    /// its shared side), with no build registered.
    pub(crate) fn retire(&self) {
        if self.state.load(Ordering::Acquire) & READY != 0 {
            self.switch(None, 0);
        }
    }

    /// Make region `to` current (none: no filter), sized for `capacity`
    /// keys, and give the memory of the region current until now back.
    /// The generation moves before that memory goes: a reader that took
    /// its probe before distrusts whatever it reads there from now on.
    /// Under the commit gate's exclusive side.
    fn switch(&self, to: Option<usize>, capacity: u64) {
        let old = self.state.load(Ordering::Acquire);
        let now = to.map_or(old & IDX, |idx| READY | idx as u64);
        self.capacity.store(capacity, Ordering::Release);
        self.state.store(((old & !(IDX | READY)) + GEN_ONE) | now, Ordering::Release);
        let was = (old & IDX) as usize;
        if old & READY != 0 && to != Some(was) {
            self.regions[was].release();
        }
    }

    /// Start a build: the region not current, emptied and sized for
    /// `capacity` keys. The caller then registers it (`register`) under
    /// the commit gate's exclusive side. `None` if its memory could not be
    /// opened.
    pub(crate) fn begin(&self, capacity: u64) -> Option<Build<'_>> {
        self.begin_in(capacity, true)
    }

    /// `begin` without backing the region's pages first: for a saved
    /// filter or-ed in right after (`engine::filter_saved`), which backs
    /// them itself, off the open's path.
    pub(crate) fn begin_unbacked(&self, capacity: u64) -> Option<Build<'_>> {
        self.begin_in(capacity, false)
    }

    fn begin_in(&self, capacity: u64, backed: bool) -> Option<Build<'_>> {
        let state = self.state.load(Ordering::Acquire);
        let idx = if state & READY == 0 { 0 } else { 1 - (state & IDX) as usize };
        let region = &self.regions[idx];
        if !region.prepare(words_for(capacity), backed) {
            return None;
        }
        Some(Build { filter: self, idx, capacity })
    }

    /// Take back a build `Build::detach` set aside.
    pub(crate) fn resume(&self, detached: Detached) -> Build<'_> {
        Build { filter: self, idx: detached.idx, capacity: detached.capacity }
    }
}

/// A build kept across threads without its borrow of the filter (a saved
/// filter registered at open and read in by the keeper). Not `Clone`: it
/// stands for the one build of its region. Dropped without `resume`, its
/// region is neither released nor unregistered: only the filter's own
/// drop may end it that way.
#[must_use]
pub(crate) struct Detached {
    idx: usize,
    capacity: u64,
}

/// A filter being built in one region.
pub(crate) struct Build<'f> {
    filter: &'f MissFilter,
    idx: usize,
    capacity: u64,
}

impl Build<'_> {
    /// From now on writers set their keys' bits here too. Call under the
    /// commit gate's exclusive side, before the scan starts.
    pub(crate) fn register(&self) {
        self.filter.building.store(self.idx as u8 + 1, Ordering::Release);
    }

    /// Or `bytes` (words as a saved filter stores them, little-endian)
    /// into the words from `first` on; bits writers set meanwhile stay.
    pub(crate) fn or_words_le(&self, first: usize, bytes: &[u8]) {
        let words = self.filter.regions[self.idx].words().get(first..).unwrap_or_default();
        for (w, b) in words.iter().zip(bytes.chunks_exact(WORD_BYTES)) {
            let v = u64::from_le_bytes(b.try_into().expect("eight bytes"));
            if v != 0 {
                w.fetch_or(v, Ordering::Relaxed);
            }
        }
    }

    /// Set the build aside, registered or not, to `resume` it later.
    pub(crate) fn detach(self) -> Detached {
        let detached = Detached { idx: self.idx, capacity: self.capacity };
        std::mem::forget(self);
        detached
    }

    /// Set the bits of a key the scan found.
    pub(crate) fn add(&self, key: &[u8]) {
        self.filter.regions[self.idx].set(key_hash(key));
    }

    /// Make this filter current and give the old one's memory back. Call
    /// under the commit gate's exclusive side, after the scan: every key
    /// of the tree has its bits here.
    pub(crate) fn publish(self) {
        self.filter.switch(Some(self.idx), self.capacity);
        self.filter.building.store(0, Ordering::Release);
        std::mem::forget(self);
    }
}

impl Drop for Build<'_> {
    /// An abandoned build (the tree closing): writers stop setting bits
    /// here, and its memory goes back. Under the commit gate's exclusive
    /// side if registered; before registering, nothing else touches it.
    fn drop(&mut self) {
        self.filter.building.store(0, Ordering::Release);
        self.filter.regions[self.idx].release();
    }
}

#[inline]
fn prefetch(at: *const AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a hint that never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch(at.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        format!("/home/user{}/src/file-{i:08}.rs", i % 97).into_bytes()
    }

    fn built(keys: impl Iterator<Item = u64>, capacity: u64) -> MissFilter {
        let f = MissFilter::new().expect("address space");
        let b = f.begin(capacity).expect("memory");
        b.register();
        keys.for_each(|i| b.add(&key(i)));
        b.publish();
        f
    }

    fn absent(f: &MissFilter, k: &[u8]) -> bool {
        f.probe(k).expect("a filter is current").absent()
    }

    #[test]
    fn every_key_added_is_present_and_few_others_are_at_twice_the_keys() {
        let f = built(0..50_000, 100_000);
        assert!((0..50_000).all(|i| !absent(&f, &key(i))), "a key added is never absent");
        let false_positives = (50_000..150_000).filter(|&i| !absent(&f, &key(i))).count();
        assert!(false_positives < 1000, "16 bits a key: about 0.4% false positives, got {false_positives} of 100000");
        assert_eq!(f.answered.get(), 100_000 - false_positives as u64);
        assert_eq!(f.capacity(), 100_000);
        assert_eq!(f.bytes(), bytes_for(100_000));
    }

    #[test]
    fn nothing_is_answered_before_the_first_publish() {
        let f = MissFilter::new().expect("address space");
        assert!(f.probe(b"k").is_none());
        let b = f.begin(CAPACITY_MIN).expect("memory");
        b.register();
        assert!(f.probe(b"k").is_none(), "a filter being built answers nothing");
        drop(b);
        assert_eq!(f.bytes(), 0, "an abandoned build gives its memory back");
    }

    #[test]
    fn writers_set_bits_in_the_current_filter_and_in_the_one_being_built() {
        let f = built(0..1000, CAPACITY_MIN);
        let b = f.begin(CAPACITY_MIN).expect("memory");
        f.note_put(&key(5000));
        assert!(!absent(&f, &key(5000)), "the current filter has the put");
        b.register();
        f.note_put(&key(6000));
        (0..1000).for_each(|i| b.add(&key(i)));
        b.publish();
        assert!(!absent(&f, &key(6000)), "a put after the build registered is in the new filter");
        assert!(absent(&f, &key(5000)), "one before it is in the new filter only if the scan found it");
        assert!((0..1000).all(|i| !absent(&f, &key(i))));
        assert_eq!(f.bytes(), bytes_for(CAPACITY_MIN), "the old filter's memory went back");
    }

    #[test]
    fn a_thread_whose_lookups_find_their_keys_stops_probing_until_one_misses() {
        let f = built(0..10, CAPACITY_MIN);
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(f.probe(&key(1)).is_some(), "a thread starts out probing");
                (0..MISS_CREDIT).for_each(|_| MissFilter::note_lookup(true));
                assert!(f.probe(&key(1)).is_none(), "hits only: no probe");
                MissFilter::note_lookup(false);
                assert!(f.probe(&key(1)).is_some(), "a miss turns probing back on");
                for _ in 0..1000 {
                    MissFilter::note_lookup(false);
                    (0..MISS_CREDIT - 1).for_each(|_| MissFilter::note_lookup(true));
                }
                assert!(f.probe(&key(1)).is_some(), "one miss in {MISS_CREDIT}: still probing");
                (0..MISS_SCORE_MAX).for_each(|_| MissFilter::note_lookup(true));
                assert!(f.probe(&key(1)).is_none(), "the score is capped: a run of hits ends probing");
            });
        });
    }

    #[test]
    fn a_retired_filter_answers_nothing_and_holds_no_memory() {
        let f = built(0..10, CAPACITY_MIN);
        let stale = f.probe(&key(99)).expect("current");
        f.retire();
        assert!(!stale.absent(), "a probe from before the retirement proves nothing");
        assert!(f.probe(&key(99)).is_none());
        assert_eq!((f.bytes(), f.capacity()), (0, 0));
        f.note_put(&key(99));
        let b = f.begin(CAPACITY_MIN).expect("memory");
        b.register();
        b.publish();
        assert!(absent(&f, &key(99)), "a filter built after it starts afresh");
    }

    #[test]
    fn a_probe_of_a_filter_replaced_since_never_answers() {
        let f = built(0..10, CAPACITY_MIN);
        let stale = f.probe(&key(99)).expect("current");
        let b = f.begin(CAPACITY_MIN).expect("memory");
        b.register();
        b.publish();
        assert!(!stale.absent(), "the generation moved: the probe's region is retired, and zeros prove nothing");
        assert!(absent(&f, &key(99)), "a fresh probe answers");
    }

    #[test]
    fn filters_grow_in_place_of_the_old_ones() {
        let f = built(0..10, CAPACITY_MIN);
        for capacity in [CAPACITY_MIN * 4, CAPACITY_MIN * 16, CAPACITY_MIN * 2] {
            let b = f.begin(capacity).expect("memory");
            b.register();
            (0..capacity / 2).for_each(|i| b.add(&key(i)));
            b.publish();
            assert!((0..capacity / 2).step_by(7).all(|i| !absent(&f, &key(i))));
            assert_eq!(f.capacity(), capacity);
        }
    }

    /// Writers set bits in a build's region from its registration on: its
    /// pages are backed before (a writer never waits on a page fault there).
    #[test]
    fn a_build_region_is_backed_before_writers_set_bits() {
        let f = MissFilter::new().expect("address space");
        let b = f.begin(CAPACITY_MIN * 64).expect("memory");
        let words = f.regions[b.idx].words();
        let bytes = std::mem::size_of_val(words);
        let mut resident = vec![0u8; bytes.div_ceil(PAGE)];
        // SAFETY: the region's open head, page-aligned, and a vector of one
        // byte per page of it.
        let r = unsafe { libc::mincore(words.as_ptr() as *mut libc::c_void, bytes, resident.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        let missing = resident.iter().filter(|&&p| p & 1 == 0).count();
        assert_eq!(missing, 0, "{missing} of {} pages not backed", resident.len());
    }

    #[test]
    fn hashes_differ_in_keys_that_share_all_but_one_byte_or_their_length() {
        let base = b"/a/b/c/d/e/f/g/h/i/j".to_vec();
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(key_hash(&base)));
        for i in 0..base.len() {
            let mut k = base.clone();
            k[i] ^= 1;
            assert!(seen.insert(key_hash(&k)), "byte {i}");
            assert!(seen.insert(key_hash(&base[..i])), "length {i}");
        }
        let mut zeros = Vec::new();
        for _ in 0..20 {
            zeros.push(0);
            assert!(seen.insert(key_hash(&zeros)), "zero bytes differ by length");
        }
    }
}
