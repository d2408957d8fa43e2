//! `FrameBuf`: the in-memory image of one 512 KiB frame.
//!
//! The bytes live in `AtomicU64` words so that optimistic readers may load
//! them while a writer holds the frame's latch: a torn read is then a value
//! the reader discards after failing version validation, never undefined
//! behaviour. Bytes are little-endian within each word. Every accessor is
//! bounds-safe: a read past the end returns zeros (only a torn optimistic
//! read can ask for one, and validation rejects it), a write past the end is
//! an invariant violation.

use std::cmp::Ordering;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::arena::{alloc_frame, alloc_plain_frame, Chunk};

use super::FRAME_BYTES;

const WORDS: usize = FRAME_BYTES / 8;

pub(crate) struct FrameBuf {
    /// `WORDS` words inside `_chunk` (see `arena`), this frame's alone.
    base: NonNull<AtomicU64>,
    _chunk: Arc<Chunk>,
    /// The 4 KiB pages written since `take_marks` (bit `p`: page `p`),
    /// set by every store (`store_word`, `store_words`): only writers
    /// holding the frame exclusively store, so a plain load and store
    /// suffices.
    marks: [AtomicU64; 2],
}

/// Bytes of a page as `marks` counts them.
const MARK_PAGE_BYTES: usize = 4096;
/// Words of a page.
const MARK_PAGE_WORDS: usize = MARK_PAGE_BYTES / 8;

// SAFETY: the buffer is only ever accessed through `AtomicU64`s, and the
// chunk it lives in is `Send + Sync`.
unsafe impl Send for FrameBuf {}
// SAFETY: as above.
unsafe impl Sync for FrameBuf {}

/// `byte` in each of a word's eight bytes.
#[inline(always)]
pub(crate) const fn repeat_byte(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// The top bit of each zero byte of `x`, little-endian, and possibly of
/// bytes above a zero one; the lowest flag is always a true zero (a false
/// flag needs a borrow from a zero byte below it), so the first zero byte
/// is `trailing_zeros() / 8`, and bytes above a range never fake one in it.
#[inline(always)]
pub(crate) const fn zero_byte_flags(x: u64) -> u64 {
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080
}

/// The bits of `pages` (below 128).
fn mask_of(pages: std::ops::Range<usize>) -> u128 {
    let bits = |n: usize| if n >= 128 { u128::MAX } else { (1u128 << n) - 1 };
    bits(pages.end) & !bits(pages.start)
}

impl FrameBuf {
    /// A frame of zeros.
    pub(crate) fn zeroed() -> Self {
        let (base, chunk) = alloc_frame();
        FrameBuf { base, _chunk: chunk, marks: Default::default() }
    }

    /// A frame of zeros that huge pages never back (`arena`): for a
    /// frame held in part, whose memory comes a page at a time.
    pub(crate) fn plain() -> Self {
        let (base, chunk) = alloc_plain_frame();
        FrameBuf { base, _chunk: chunk, marks: Default::default() }
    }

    /// Whether this is a `plain` frame.
    pub(crate) fn is_plain(&self) -> bool {
        self._chunk.is_plain()
    }

    /// Give this buffer's memory back to the kernel: it reads as zeros
    /// from now on, and pages come back as it is written again. The
    /// mapping stays, so a reader still holding the pointer (an optimistic
    /// read about to fail validation) reads zeros, never unmapped memory.
    pub(crate) fn release_memory(&self) {
        // SAFETY: the frame's own FRAME_BYTES inside its live chunk mapping;
        // MADV_DONTNEED on private anonymous memory only drops its pages.
        unsafe { libc::madvise(self.base.as_ptr().cast(), super::FRAME_BYTES, libc::MADV_DONTNEED) };
    }

    /// `release_memory` for the 4 KiB page `page` alone.
    pub(crate) fn release_page(&self, page: usize) {
        const PAGE: usize = 4096;
        if (page + 1) * PAGE <= super::FRAME_BYTES {
            // SAFETY: one page inside the frame's own FRAME_BYTES of its live
            // chunk mapping (page-aligned: frames are); MADV_DONTNEED on
            // private anonymous memory only drops its pages.
            unsafe { libc::madvise(self.base.as_ptr().cast::<u8>().add(page * PAGE).cast(), PAGE, libc::MADV_DONTNEED) };
        }
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` points at `WORDS` initialised (zeroed) words that
        // no other frame uses and that live as long as `_chunk`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), WORDS) }
    }

    #[inline]
    fn word(&self, i: usize) -> u64 {
        match self.words().get(i) {
            Some(w) => w.load(Relaxed),
            None => 0,
        }
    }

    #[inline]
    pub(crate) fn u8(&self, off: usize) -> u8 {
        (self.word(off >> 3) >> ((off & 7) * 8)) as u8
    }

    /// Little-endian integer of `n <= 8` bytes at `off`.
    #[inline]
    fn le(&self, off: usize, n: usize) -> u64 {
        let shift = (off & 7) * 8;
        let lo = self.word(off >> 3) >> shift;
        let v = if shift + n * 8 <= 64 || shift == 0 {
            lo
        } else {
            lo | (self.word((off >> 3) + 1) << (64 - shift))
        };
        if n == 8 {
            v
        } else {
            v & ((1u64 << (n * 8)) - 1)
        }
    }

    #[inline]
    pub(crate) fn u16(&self, off: usize) -> u16 {
        self.le(off, 2) as u16
    }

    #[inline]
    pub(crate) fn u32(&self, off: usize) -> u32 {
        self.le(off, 4) as u32
    }

    #[inline]
    pub(crate) fn u64(&self, off: usize) -> u64 {
        self.le(off, 8)
    }

    /// Hint the CPU to bring the cache line holding byte `off` in.
    #[inline]
    pub(crate) fn prefetch(&self, off: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            // Clamped rather than checked: a hint costs no branch.
            let at = self.base.as_ptr().cast::<u8>().wrapping_add(off.min(FRAME_BYTES - 1));
            // SAFETY: prefetch is a hint that never faults, and `at` lies
            // inside this frame's live words anyway.
            unsafe { std::arch::x86_64::_mm_prefetch(at.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = off;
    }

    /// The `len` bytes at `off` as a new vector (one exact allocation).
    pub(crate) fn read_vec(&self, off: usize, len: usize) -> Vec<u8> {
        let len = len.min(FRAME_BYTES.saturating_sub(off));
        let mut v = Vec::with_capacity(len);
        let (skip, mut w) = (off & 7, off >> 3);
        if skip != 0 && len > 0 {
            let n = (8 - skip).min(len);
            v.extend_from_slice(&self.word(w).to_le_bytes()[skip..skip + n]);
            w += 1;
        }
        while len - v.len() >= 8 {
            v.extend_from_slice(&self.word(w).to_le_bytes());
            w += 1;
        }
        let n = len - v.len();
        if n > 0 {
            v.extend_from_slice(&self.word(w).to_le_bytes()[..n]);
        }
        v
    }

    /// Copy whole words into `dst`, starting with the word holding byte
    /// `off`: byte `off + i` lands at `dst[off % 8 + i]`, and the bytes of
    /// those words around the range come along. Words past the frame's end
    /// read as zeros. One aligned load and store per eight bytes, for the
    /// short keys and values a scan copies.
    #[inline(always)]
    pub(crate) fn copy_words(&self, off: usize, dst: &mut [u8]) {
        let mut words = self.words().get(off >> 3..).unwrap_or(&[]);
        let mut dst = dst;
        // Four words a step: relaxed atomic loads are never merged or
        // vectorised, so the loop's own overhead is what there is to cut.
        while dst.len() >= 32 && words.len() >= 4 {
            let (d, rest) = dst.split_at_mut(32);
            for (w, c) in words[..4].iter().zip(d.chunks_exact_mut(8)) {
                c.copy_from_slice(&w.load(Relaxed).to_le_bytes());
            }
            (dst, words) = (rest, &words[4..]);
        }
        let mut chunks = dst.chunks_exact_mut(8);
        for (word, chunk) in words.iter().zip(&mut chunks) {
            chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
        }
        chunks.for_each(|c| c.fill(0));
    }

    /// Compare the `len` bytes at `off` with `other`, lexicographically.
    pub(crate) fn cmp_bytes(&self, off: usize, len: usize, other: &[u8]) -> Ordering {
        let common = len.min(other.len());
        let mut i = 0;
        while i + 8 <= common {
            let mine = self.le(off + i, 8).swap_bytes();
            let theirs = u64::from_be_bytes(other[i..i + 8].try_into().expect("8-byte slice"));
            match mine.cmp(&theirs) {
                Ordering::Equal => i += 8,
                ord => return ord,
            }
        }
        while i < common {
            match self.u8(off + i).cmp(&other[i]) {
                Ordering::Equal => i += 1,
                ord => return ord,
            }
        }
        len.cmp(&other.len())
    }

    /// Index (from `off`) of the first byte equal to `byte` among the `len`
    /// bytes at `off`, eight bytes at a time.
    #[inline(always)]
    pub(crate) fn find_byte(&self, off: usize, len: usize, byte: u8) -> Option<usize> {
        let pattern = repeat_byte(byte);
        let mut i = 0;
        while i < len {
            let n = (len - i).min(8);
            // Zero bytes of the xor are matches; bytes past the range never
            // hide or fake one inside it (`zero_byte_flags`).
            let flags = zero_byte_flags(self.le(off + i, 8) ^ pattern);
            let at = (flags.trailing_zeros() / 8) as usize;
            if at < n {
                return Some(i + at);
            }
            i += n;
        }
        None
    }

    /// Length of the common prefix of the `len` bytes at `off` and `other`.
    /// Always inlined: descents call it at every node, and a call costs
    /// more than the compare of a short prefix.
    #[inline(always)]
    pub(crate) fn common_prefix(&self, off: usize, len: usize, other: &[u8]) -> usize {
        let common = len.min(other.len());
        let mut i = 0;
        while i + 8 <= common {
            let x = self.le(off + i, 8) ^ u64::from_le_bytes(other[i..i + 8].try_into().expect("8"));
            if x != 0 {
                return i + (x.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        if i == common {
            return i;
        }
        // The last 1..=7 bytes in one compare: `other`'s eight bytes from
        // `i` masked to them, or the eight ending at `common` (the bytes
        // before `i` are known equal); byte by byte only when `other` is
        // shorter than eight bytes.
        let rest = common - i;
        let (at, x) = if let Some(w) = other.get(i..i + 8) {
            let theirs = u64::from_le_bytes(w.try_into().expect("8")) & ((1u64 << (8 * rest)) - 1);
            (i, self.le(off + i, rest) ^ theirs)
        } else if common >= 8 {
            let at = common - 8;
            (at, self.le(off + at, 8) ^ u64::from_le_bytes(other[at..common].try_into().expect("8")))
        } else {
            while i < common && self.u8(off + i) == other[i] {
                i += 1;
            }
            return i;
        };
        if x == 0 {
            return common;
        }
        at + (x.trailing_zeros() / 8) as usize
    }

    fn store_word(&self, i: usize, v: u64) {
        self.words()[i].store(v, Relaxed);
        self.mark_page(i / MARK_PAGE_WORDS);
    }

    /// Mark page `page` written (see `marks`).
    #[inline(always)]
    fn mark_page(&self, page: usize) {
        let (m, bit) = (&self.marks[(page >> 6) & 1], 1u64 << (page & 63));
        let had = m.load(Relaxed);
        if had & bit == 0 {
            m.store(had | bit, Relaxed);
        }
    }

    /// Mark `pages` written (see `marks`).
    #[inline]
    fn mark_pages(&self, pages: std::ops::Range<usize>) {
        let want = mask_of(pages);
        for (half, m) in self.marks.iter().enumerate() {
            let bits = (want >> (64 * half)) as u64;
            let had = m.load(Relaxed);
            if had & bits != bits {
                m.store(had | bits, Relaxed);
            }
        }
    }

    /// The pages written since the last call (or since the buffer was
    /// made), and forget them. Caller holds the frame exclusively or
    /// holds it against writers.
    pub(crate) fn take_marks(&self) -> u128 {
        let lo = self.marks[0].swap(0, Relaxed);
        let hi = self.marks[1].swap(0, Relaxed);
        u128::from(lo) | u128::from(hi) << 64
    }

    /// The pages written since the last `take_marks`, kept.
    pub(crate) fn marks(&self) -> u128 {
        u128::from(self.marks[0].load(Relaxed)) | u128::from(self.marks[1].load(Relaxed)) << 64
    }

    /// Make `marks` the pages counted as written (a frame loaded from a
    /// delta counts the delta's pages as changed from its base).
    pub(crate) fn set_marks(&self, marks: u128) {
        self.marks[0].store(marks as u64, Relaxed);
        self.marks[1].store((marks >> 64) as u64, Relaxed);
    }

    /// Write `bytes` at `off`. Caller holds the frame exclusively.
    pub(crate) fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= FRAME_BYTES, "frame write past the end: {off}+{}", bytes.len());
        if (off & 7) + bytes.len() <= 8 {
            return self.write_partial(off, bytes);
        }
        let head = (8 - (off & 7)) & 7;
        self.write_partial(off, &bytes[..head]);
        let (middle, tail) = bytes[head..].split_at((bytes.len() - head) & !7);
        if !middle.is_empty() {
            self.store_words((off + head) >> 3, middle);
        }
        self.write_partial(off + head + middle.len(), tail);
    }

    /// Store whole words from `bytes` (a multiple of 8 long) from word
    /// `first` on: the bulk of a frame load's copy. Four words a step, as
    /// in `copy_words`: relaxed atomic stores are never merged or
    /// vectorised, so the loop's own overhead is what there is to cut.
    fn store_words(&self, first: usize, bytes: &[u8]) {
        let words = &self.words()[first..first + bytes.len() / 8];
        let (from, to) = (first / MARK_PAGE_WORDS, (first + words.len()).div_ceil(MARK_PAGE_WORDS));
        if to == from + 1 {
            self.mark_page(from);
        } else {
            self.mark_pages(from..to);
        }
        let mut quads = words.chunks_exact(4).zip(bytes.chunks_exact(32));
        for (w, b) in &mut quads {
            for (word, chunk) in w.iter().zip(b.chunks_exact(8)) {
                word.store(u64::from_le_bytes(chunk.try_into().expect("8-byte chunk")), Relaxed);
            }
        }
        let done = words.len() / 4 * 4;
        for (word, chunk) in words[done..].iter().zip(bytes[done * 8..].chunks_exact(8)) {
            word.store(u64::from_le_bytes(chunk.try_into().expect("8-byte chunk")), Relaxed);
        }
    }

    /// Write `bytes` at `off`, all inside one word (fewer than 8 of them
    /// unless the word is whole): one read-modify-write of it.
    #[inline(always)]
    fn write_partial(&self, off: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let (w, shift) = (off >> 3, (off & 7) * 8);
        debug_assert!((off & 7) + bytes.len() <= 8, "a partial write inside one word");
        let mut val = 0u64;
        for (k, &b) in bytes.iter().enumerate() {
            val |= (b as u64) << (8 * k);
        }
        let n = bytes.len();
        let mask = if n == 8 { u64::MAX } else { ((1u64 << (n * 8)) - 1) << shift };
        self.store_word(w, (self.word(w) & !mask) | (val << shift));
    }

    pub(crate) fn set_u8(&self, off: usize, v: u8) {
        self.write(off, &[v]);
    }

    pub(crate) fn set_u16(&self, off: usize, v: u16) {
        self.write(off, &v.to_le_bytes());
    }

    pub(crate) fn set_u32(&self, off: usize, v: u32) {
        self.write(off, &v.to_le_bytes());
    }

    pub(crate) fn set_u64(&self, off: usize, v: u64) {
        self.write(off, &v.to_le_bytes());
    }

    /// Copy `len` bytes from `src` to `dst` inside this frame (ranges may overlap).
    pub(crate) fn copy_within(&self, src: usize, dst: usize, len: usize) {
        let tmp = self.read_vec(src, len);
        self.write(dst, &tmp);
    }

    /// The image as written to disk: header and data area, zeros in the
    /// free gap (see `free_gap`), then the slot table. The caller excludes
    /// writers, so the header's bounds match the bytes copied.
    #[cfg(test)]
    pub(crate) fn to_image(&self) -> Vec<u8> {
        let mut img = vec![0u8; FRAME_BYTES];
        self.image_into(&mut img);
        img
    }

    /// Bring the frame's used bytes (the data area up to its free gap and
    /// the slot table) into the CPU's caches in address order, one load a
    /// cache line, so the hardware prefetcher streams them: a walk of the
    /// nodes that follows then hits the cache, where on a cold frame it
    /// waits on one miss a node. Only loads: any caller may run it.
    pub(crate) fn warm_used(&self) {
        const LINE: usize = 64;
        let head = (self.u32(super::HDR_DATA_END) as usize).clamp(super::HEADER_BYTES, FRAME_BYTES);
        let table = (self.u32(super::HDR_SLOT_COUNT) as usize).saturating_mul(super::SLOT_BYTES);
        let tail = FRAME_BYTES - table.min(FRAME_BYTES - head);
        let lines = (0..head).step_by(LINE).chain((tail & !(LINE - 1)..FRAME_BYTES).step_by(LINE));
        std::hint::black_box(lines.fold(0, |x, off| x ^ self.word(off >> 3)));
    }

    /// `to_image` into `img`, which must be `FRAME_BYTES` of zeros (the
    /// free gap is left as it is).
    pub(crate) fn image_into(&self, img: &mut [u8]) {
        assert_eq!(img.len(), FRAME_BYTES, "an image buffer holds one frame");
        let head = self.u32(super::HDR_DATA_END) as usize;
        let head = head.clamp(super::HEADER_BYTES, FRAME_BYTES);
        let table = (self.u32(super::HDR_SLOT_COUNT) as usize).saturating_mul(super::SLOT_BYTES);
        let tail = FRAME_BYTES - table.min(FRAME_BYTES - head);
        self.copy_out(0, &mut img[..head]);
        self.copy_out(tail, &mut img[tail..]);
    }

    /// The inverse of `image_into`: make this frame `img` (a frame image:
    /// header, data area, free gap, slot table), writing its header and
    /// data area and its slot table; the free gap keeps what it held
    /// (nothing reads a frame's gap: a node placed there is written whole,
    /// as into a reused buffer `format` leaves as it was), and its pages
    /// are not touched. The caller holds the frame exclusively, or owns
    /// the buffer alone.
    pub(crate) fn install_image(&self, img: &[u8]) {
        assert_eq!(img.len(), FRAME_BYTES, "an image holds one frame");
        let head = (super::image_u32(img, super::HDR_DATA_END) as usize).clamp(super::HEADER_BYTES, FRAME_BYTES);
        let table = (super::image_u32(img, super::HDR_SLOT_COUNT) as usize).saturating_mul(super::SLOT_BYTES);
        let tail = FRAME_BYTES - table.min(FRAME_BYTES - head);
        self.write(0, &img[..head]);
        self.write(tail, &img[tail..]);
    }

    /// Copy `dst.len()` bytes starting at byte `off` into `dst`: the
    /// partial first word, whole words, then the partial last word.
    #[inline]
    pub(crate) fn copy_out(&self, off: usize, dst: &mut [u8]) {
        let (skip, mut w) = (off & 7, off >> 3);
        let mut i = 0;
        if skip != 0 && !dst.is_empty() {
            let n = (8 - skip).min(dst.len());
            dst[..n].copy_from_slice(&self.word(w).to_le_bytes()[skip..skip + n]);
            (i, w) = (n, w + 1);
        }
        let mut words = dst[i..].chunks_exact_mut(8);
        for chunk in &mut words {
            chunk.copy_from_slice(&self.word(w).to_le_bytes());
            w += 1;
        }
        let rest = words.into_remainder();
        let n = rest.len();
        rest.copy_from_slice(&self.word(w).to_le_bytes()[..n]);
    }

    /// Copy `dst.len()` bytes at `off` with plain loads: one `memcpy`
    /// instead of a load per word (a frame's bytes are little-endian words,
    /// so on a little-endian machine memory order is byte order).
    ///
    /// # Safety
    /// No thread writes this frame meanwhile (the caller holds it
    /// exclusively, or holds its latch's hold): concurrent optimistic
    /// readers only load, so plain and atomic loads do not race.
    pub(crate) unsafe fn read_unshared(&self, off: usize, dst: &mut [u8]) {
        assert!(off + dst.len() <= FRAME_BYTES, "frame read past the end: {off}+{}", dst.len());
        #[cfg(target_endian = "little")]
        // SAFETY: in bounds (checked above) of this frame's words, which
        // live as long as `self`; no writer (the caller's promise).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().cast::<u8>().add(off), dst.as_mut_ptr(), dst.len())
        };
        #[cfg(not(target_endian = "little"))]
        self.copy_out(off, dst);
    }

    /// Make this frame a copy of `src`, word by word. Caller holds this
    /// frame exclusively (or owns it alone); `src` may be read
    /// optimistically, the copy then counting only once it validates.
    pub(crate) fn copy_from(&self, src: &FrameBuf) {
        for i in 0..WORDS {
            self.store_word(i, src.word(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_of_any_length_at_any_offset_match_a_byte_model_and_mark_their_pages() {
        let b = FrameBuf::zeroed();
        let mut model = vec![0u8; FRAME_BYTES];
        let mut rng = crate::store::splitmix::SplitMix64::new(7);
        for round in 0..2000 {
            let len = match round % 4 {
                0 => rng.below(9),
                1 => rng.below(80),
                2 => rng.below(5000),
                _ => 8 * rng.below(40),
            } as usize;
            let off = rng.below((FRAME_BYTES - len + 1) as u64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            b.take_marks();
            b.write(off, &bytes);
            model[off..off + len].copy_from_slice(&bytes);
            let pages = if len == 0 { 0..0 } else { off / 4096..(off + len).div_ceil(4096) };
            assert_eq!(b.take_marks(), mask_of(pages), "pages marked by a write of {len} bytes at {off}");
            // The words around the write keep their other bytes.
            let (lo, hi) = (off.saturating_sub(16), (off + len + 16).min(FRAME_BYTES));
            assert_eq!(b.read_vec(lo, hi - lo), model[lo..hi], "write of {len} bytes at {off}");
        }
        assert_eq!(b.read_vec(0, FRAME_BYTES), model);
    }

    #[test]
    fn unaligned_integers_round_trip() {
        let b = FrameBuf::zeroed();
        for off in 0..24 {
            b.set_u64(100 + off, 0x0102_0304_0506_0708 + off as u64);
            assert_eq!(b.u64(100 + off), 0x0102_0304_0506_0708 + off as u64);
            b.set_u32(300 + off, 0xA1B2_C3D4);
            assert_eq!(b.u32(300 + off), 0xA1B2_C3D4);
            b.set_u16(500 + off, 0xBEEF);
            assert_eq!(b.u16(500 + off), 0xBEEF);
        }
    }

    #[test]
    fn bytes_compare_like_slices() {
        let b = FrameBuf::zeroed();
        let data = b"hello/world\0abc-long-enough-to-span-words";
        b.write(13, data);
        assert_eq!(b.read_vec(13, data.len()), data.to_vec());
        for cut in 0..data.len() {
            let other = &data[..cut];
            assert_eq!(b.cmp_bytes(13, data.len(), other), data.as_slice().cmp(other));
            assert_eq!(b.common_prefix(13, data.len(), other), cut);
        }
        let mut other = data.to_vec();
        other[20] = b'z';
        assert_eq!(b.cmp_bytes(13, data.len(), &other), data.as_slice().cmp(&other));
        assert_eq!(b.common_prefix(13, data.len(), &other), 20);
    }

    /// Every length and every first difference, with `other` longer than,
    /// as long as and shorter than the compared bytes, short ones included:
    /// each way `common_prefix` compares its last partial word.
    #[test]
    fn common_prefix_finds_the_first_difference_at_every_length() {
        let b = FrameBuf::zeroed();
        let data: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) | 1).collect();
        for start in [8usize, 13] {
            b.write(start, &data);
            for len in 0..=data.len() {
                for other_len in [len.saturating_sub(3), len, len + 5] {
                    let mut other = data.clone();
                    other.resize(other_len, 0xEE);
                    let common = len.min(other_len);
                    assert_eq!(b.common_prefix(start, len, &other), common, "start {start} len {len} other {other_len}");
                    for diff in 0..common {
                        other[diff] ^= 0x40;
                        assert_eq!(b.common_prefix(start, len, &other), diff, "start {start} len {len} other {other_len}");
                        other[diff] ^= 0x40;
                    }
                }
            }
        }
    }

    #[test]
    fn find_byte_finds_the_first_match_only_inside_the_range() {
        let b = FrameBuf::zeroed();
        let data = b"ab/cd\0ef/\xffgh-long-enough/to-span\xffwords";
        b.write(13, data);
        for byte in [b'/', 0, 0xFF, b'a', b'z', b's'] {
            for start in 0..data.len() {
                for len in 0..=data.len() - start {
                    let want = data[start..start + len].iter().position(|&x| x == byte);
                    assert_eq!(b.find_byte(13 + start, len, byte), want, "byte {byte} start {start} len {len}");
                }
            }
        }
    }

    #[test]
    fn image_keeps_data_and_table_and_zeroes_the_gap() {
        let b = FrameBuf::zeroed();
        b.format(crate::ids::FrameId(9));
        let fill: Vec<u8> = (0..FRAME_BYTES).map(|i| (i % 251) as u8 | 1).collect();
        b.write(0, &fill);
        // Odd bounds on both sides exercise the unaligned copy edges.
        b.set_u32(super::super::HDR_DATA_END, 1003);
        b.set_u32(super::super::HDR_SLOT_COUNT, 7);
        let img = b.to_image();
        let gap = super::super::free_gap(&img);
        assert_eq!(gap, 1003..FRAME_BYTES - 28);
        assert!(img[gap.clone()].iter().all(|&x| x == 0));
        for (i, (&got, &want)) in img.iter().zip(&fill).enumerate() {
            if i >= 64 && !gap.contains(&i) {
                assert_eq!(got, want, "byte {i}");
            }
        }
        b.set_u32(super::super::HDR_DATA_END, FRAME_BYTES as u32);
        assert_eq!(super::super::free_gap(&b.to_image()), 0..0, "an inconsistent header names no gap");
    }

    /// A frame loaded from its image gets the image's used bytes and
    /// nothing else: the gap keeps what the buffer held (so a cold
    /// buffer's gap pages are never faulted in), and the image reads back.
    #[test]
    fn an_installed_image_writes_its_used_bytes_only() {
        let src = FrameBuf::zeroed();
        src.format(crate::ids::FrameId(3));
        src.write(64, &[7u8; 1000]);
        src.set_u32(super::super::HDR_DATA_END, 1064);
        src.write(FRAME_BYTES - 3 * super::super::SLOT_BYTES, &[9u8; 3 * super::super::SLOT_BYTES]);
        src.set_u32(super::super::HDR_SLOT_COUNT, 3);
        let img = src.to_image();
        let b = FrameBuf::zeroed();
        b.write(0, &vec![0xAA; FRAME_BYTES]);
        b.install_image(&img);
        let gap = super::super::free_gap(&img);
        assert_eq!(gap, 1064..FRAME_BYTES - 3 * super::super::SLOT_BYTES);
        assert!(b.read_vec(gap.start, gap.len()).iter().all(|&x| x == 0xAA), "the gap is not written");
        assert_eq!(b.to_image(), img, "the frame reads back as its image");
    }

    #[test]
    fn copy_words_copies_the_words_holding_a_range() {
        let b = FrameBuf::zeroed();
        let data: Vec<u8> = (1..=80).collect();
        b.write(203, &data);
        for (off, len) in [(203usize, 80usize), (205, 3), (208, 40), (203, 0)] {
            let words = ((off & 7) + len).div_ceil(8);
            let mut dst = vec![0xEE; words * 8];
            b.copy_words(off, &mut dst);
            assert_eq!(&dst[off & 7..(off & 7) + len], &data[off - 203..off - 203 + len], "off {off} len {len}");
            assert_eq!(dst, b.read_vec(off & !7, words * 8), "whole words, off {off}");
        }
        let mut tail = vec![0xEE; 24];
        b.copy_words(FRAME_BYTES - 8, &mut tail);
        assert!(tail.iter().all(|&x| x == 0), "words past the end read as zeros");
    }

    #[test]
    fn unshared_reads_match_word_reads() {
        let b = FrameBuf::zeroed();
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        b.write(1001, &data);
        for (off, len) in [(1001usize, 200usize), (1003, 17), (1000, 8), (FRAME_BYTES - 5, 5)] {
            let (mut plain, mut words) = (vec![0u8; len], vec![0u8; len]);
            // SAFETY: this test is the frame's only user.
            unsafe { b.read_unshared(off, &mut plain) };
            b.copy_out(off, &mut words);
            assert_eq!(plain, words, "off {off} len {len}");
        }
    }

    #[test]
    fn plain_frames_are_zeroed_frames_of_their_own() {
        let (a, b) = (FrameBuf::plain(), FrameBuf::plain());
        assert!(a.is_plain() && !FrameBuf::zeroed().is_plain());
        assert_eq!(a.read_vec(0, FRAME_BYTES), vec![0u8; FRAME_BYTES]);
        a.set_u64(FRAME_BYTES - 8, 7);
        assert_eq!((a.u64(FRAME_BYTES - 8), b.u64(FRAME_BYTES - 8)), (7, 0));
        a.release_memory();
        assert_eq!(a.u64(FRAME_BYTES - 8), 0, "given back, it reads as zeros");
    }

    #[test]
    fn reads_past_the_end_are_zero() {
        let b = FrameBuf::zeroed();
        assert_eq!(b.u64(FRAME_BYTES - 2), 0);
        assert_eq!(b.read_vec(FRAME_BYTES - 4, 100).len(), 4);
    }
}
