//! The miss filter saved at a clean close (`FILTER` in the store
//! directory), so the next open of a tree larger than its cache answers
//! absent keys at once instead of reading every frame to build a filter.
//! doc/FORMAT.md ("Miss filter file") has the byte layout.
//!
//! The file is a cache, never a source of truth: any file that fails a
//! check (torn, rotted, from another store, from a checkpoint other than
//! the published one, from a build hashing keys another way) is ignored
//! and the filter built as before. It is synced once written, so a clean
//! close followed by a power loss keeps it.
//!
//! Invariant that makes a loaded filter exact about absences: a file names
//! the checkpoint (`store_id`, manifest `seq`) it was saved after, and is
//! saved only at a clean close, after the closing checkpoint, when no
//! writer can run: its bits hold every key that checkpoint holds. An open
//! takes it only when that checkpoint is the published one; the WAL records
//! past the checkpoint are replayed, and replay sets the bits of every key
//! they put. A later checkpoint moves `seq`, so the file stops matching.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::le::{put_u32, put_u64, u32_at, u64_at};
use super::vfs::FileIo;

/// The file's name in the store directory.
pub(crate) const FILTER_NAME: &str = "FILTER";
const MAGIC: &[u8; 8] = b"HOLTFLTR";
const VERSION: u32 = 1;

const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_FLAGS: usize = 12;
const H_STORE_ID: usize = 16;
const H_SEQ: usize = 24;
pub(crate) const H_CAPACITY: usize = 32;
const H_WORDS: usize = 40;
const H_STALE_KEYS: usize = 48;
const H_HASH_CHECK: usize = 56;
const H_WORDS_CRC: usize = 64;
pub(crate) const H_CRC: usize = 68;
/// Bytes before the first word.
pub(crate) const HEADER_BYTES: usize = 72;

/// Byte table (field, offset, size); doc/FORMAT.md mirrors it.
#[cfg(test)]
pub(crate) const HEADER_FIELDS: &[(&str, usize, usize)] = &[
    ("magic", H_MAGIC, 8),
    ("version", H_VERSION, 4),
    ("flags", H_FLAGS, 4),
    ("store_id", H_STORE_ID, 8),
    ("seq", H_SEQ, 8),
    ("capacity", H_CAPACITY, 8),
    ("words", H_WORDS, 8),
    ("stale_keys", H_STALE_KEYS, 8),
    ("hash_check", H_HASH_CHECK, 8),
    ("words_crc32c", H_WORDS_CRC, 4),
    ("crc32c", H_CRC, 4),
];

/// Words written or read at a time: bounds the buffer, not the file.
const CHUNK_WORDS: usize = 128 << 10;

/// The checkpoint a file was saved after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub store_id: u64,
    pub seq: u64,
}

/// What a file's header says about the filter it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub at: Checkpoint,
    /// Keys the filter was sized for.
    pub capacity: u64,
    /// Words of the filter.
    pub words: u64,
    /// Keys deleted since its build (their bits are still set).
    pub stale_keys: u64,
    /// `miss_filter::hash_check()` of the build that wrote it.
    pub hash_check: u64,
}

/// Write the file and sync it: the words first, then the header that
/// vouches for them, so a file cut short anywhere fails a check.
pub(crate) fn write(file: &dyn FileIo, header: &Header, words: &[AtomicU64]) -> io::Result<()> {
    file.set_len(0)?;
    let mut buf = Vec::with_capacity(CHUNK_WORDS.min(words.len()) * 8);
    let mut crc = 0;
    let mut at = HEADER_BYTES as u64;
    for chunk in words.chunks(CHUNK_WORDS) {
        buf.clear();
        chunk.iter().for_each(|w| buf.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes()));
        crc = crc32c::crc32c_append(crc, &buf);
        file.write_at(&buf, at)?;
        at += buf.len() as u64;
    }
    file.write_at(&encode(header, crc), 0)?;
    file.sync_data()
}

fn encode(h: &Header, words_crc: u32) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    b[H_MAGIC..H_MAGIC + 8].copy_from_slice(MAGIC);
    put_u32(&mut b, H_VERSION, VERSION);
    put_u32(&mut b, H_FLAGS, 0);
    put_u64(&mut b, H_STORE_ID, h.at.store_id);
    put_u64(&mut b, H_SEQ, h.at.seq);
    put_u64(&mut b, H_CAPACITY, h.capacity);
    put_u64(&mut b, H_WORDS, h.words);
    put_u64(&mut b, H_STALE_KEYS, h.stale_keys);
    put_u64(&mut b, H_HASH_CHECK, h.hash_check);
    put_u32(&mut b, H_WORDS_CRC, words_crc);
    let crc = crc32c::crc32c(&b[..H_CRC]);
    put_u32(&mut b, H_CRC, crc);
    b
}

/// The header of a file saved after checkpoint `at` by a build whose keys
/// hash to `hash_check`, and the checksum its words must have; `Err` says
/// why the file does not qualify.
pub(crate) fn read_header(file: &dyn FileIo, at: Checkpoint, hash_check: u64) -> Result<(Header, u32), String> {
    let mut b = [0u8; HEADER_BYTES];
    let n = file.read_at(&mut b, 0).map_err(|e| format!("unreadable: {e}"))?;
    if n < HEADER_BYTES {
        return Err(format!("{n} bytes, shorter than its header"));
    }
    if &b[H_MAGIC..H_MAGIC + 8] != MAGIC {
        return Err("not a filter file (magic)".into());
    }
    if crc32c::crc32c(&b[..H_CRC]) != u32_at(&b, H_CRC) {
        return Err("header checksum mismatch".into());
    }
    let version = u32_at(&b, H_VERSION);
    if version != VERSION || u32_at(&b, H_FLAGS) != 0 {
        return Err(format!("version {version} (this build reads {VERSION})"));
    }
    let header = Header {
        at: Checkpoint { store_id: u64_at(&b, H_STORE_ID), seq: u64_at(&b, H_SEQ) },
        capacity: u64_at(&b, H_CAPACITY),
        words: u64_at(&b, H_WORDS),
        stale_keys: u64_at(&b, H_STALE_KEYS),
        hash_check: u64_at(&b, H_HASH_CHECK),
    };
    if header.at != at {
        return Err(format!("saved after checkpoint {:?}, the published one is {at:?}", header.at));
    }
    if header.hash_check != hash_check {
        return Err("written by a build that hashes keys differently".into());
    }
    let len = file.len().map_err(|e| format!("unreadable: {e}"))?;
    if Some(len) != header.words.checked_mul(8).and_then(|b| b.checked_add(HEADER_BYTES as u64)) {
        return Err(format!("{len} bytes for {} words", header.words));
    }
    Ok((header, u32_at(&b, H_WORDS_CRC)))
}

/// Read the file's `words` words in chunks, handing each to `each` with
/// the index of its first word, as stored (little-endian), and check them
/// against `crc`; `Err` says why they do not qualify, after whatever
/// chunks were handed over (the caller drops what it made of them).
pub(crate) fn read_words(file: &dyn FileIo, crc: u32, words: u64, mut each: impl FnMut(usize, &[u8])) -> Result<(), String> {
    let words = usize::try_from(words).map_err(|_| format!("{words} words"))?;
    let mut buf = vec![0u8; CHUNK_WORDS.min(words) * 8];
    let mut sum = 0;
    for first in (0..words).step_by(CHUNK_WORDS) {
        let bytes = &mut buf[..(words - first).min(CHUNK_WORDS) * 8];
        let at = (HEADER_BYTES + first * 8) as u64;
        let n = file.read_at(bytes, at).map_err(|e| format!("unreadable: {e}"))?;
        if n < bytes.len() {
            return Err(format!("cut short at byte {}", at + n as u64));
        }
        sum = crc32c::crc32c_append(sum, bytes);
        each(first, bytes);
    }
    if sum != crc {
        return Err("words checksum mismatch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem_vfs::MemVfs;
    use crate::store::vfs::Vfs;
    use std::path::Path;

    const AT: Checkpoint = Checkpoint { store_id: 0x5eed, seq: 7 };

    fn header(words: u64) -> Header {
        Header { at: AT, capacity: 1 << 16, words, stale_keys: 3, hash_check: 0xabc }
    }

    fn words(n: u64) -> Vec<AtomicU64> {
        (0..n).map(|i| AtomicU64::new(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect()
    }

    fn saved(n: u64) -> std::sync::Arc<dyn FileIo> {
        let vfs = MemVfs::new();
        vfs.create_dir_all(Path::new("/s")).unwrap();
        let file = vfs.open(Path::new("/s/FILTER"), true).unwrap();
        write(&*file, &header(n), &words(n)).unwrap();
        file
    }

    fn load(file: &dyn FileIo, n: usize) -> Result<Vec<u64>, String> {
        let (h, crc) = read_header(file, AT, 0xabc)?;
        assert_eq!(h, header(n as u64));
        let mut out = vec![0u64; n];
        read_words(file, crc, h.words, |first, bytes| {
            for (i, b) in bytes.chunks_exact(8).enumerate() {
                out[first + i] = u64::from_le_bytes(b.try_into().unwrap());
            }
        })?;
        Ok(out)
    }

    #[test]
    fn words_round_trip_across_chunks() {
        let n = CHUNK_WORDS as u64 * 2 + 5;
        let file = saved(n);
        assert_eq!(file.len().unwrap(), HEADER_BYTES as u64 + n * 8);
        let expect: Vec<u64> = words(n).iter().map(|w| w.load(Ordering::Relaxed)).collect();
        assert_eq!(load(&*file, n as usize).unwrap(), expect);
    }

    #[test]
    fn another_checkpoint_or_hash_is_refused() {
        let file = saved(64);
        let later = Checkpoint { seq: 8, ..AT };
        assert!(read_header(&*file, later, 0xabc).unwrap_err().contains("published one"));
        let other_store = Checkpoint { store_id: 1, ..AT };
        assert!(read_header(&*file, other_store, 0xabc).is_err());
        assert!(read_header(&*file, AT, 0xabd).unwrap_err().contains("hashes keys"));
    }

    /// Headers of random fields with a valid checksum: each is refused or
    /// taken, never a panic, whatever the sizes say.
    #[test]
    fn checksummed_garbage_never_panics() {
        let mut rng = crate::store::splitmix::SplitMix64::new(11);
        let vfs = MemVfs::new();
        vfs.create_dir_all(Path::new("/s")).unwrap();
        for i in 0..2000 {
            let mut h = [0u8; HEADER_BYTES];
            h.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            h[H_MAGIC..H_MAGIC + 8].copy_from_slice(MAGIC);
            if i % 2 == 0 {
                put_u32(&mut h, H_VERSION, VERSION);
                put_u32(&mut h, H_FLAGS, 0);
                put_u64(&mut h, H_STORE_ID, AT.store_id);
                put_u64(&mut h, H_SEQ, AT.seq);
                put_u64(&mut h, H_HASH_CHECK, 0xabc);
                put_u64(&mut h, H_WORDS, [0, 1, 3, u64::MAX, u64::MAX / 8][i % 5]);
            }
            let crc = crc32c::crc32c(&h[..H_CRC]);
            put_u32(&mut h, H_CRC, crc);
            let file = vfs.open(Path::new("/s/FILTER"), true).unwrap();
            file.set_len(0).unwrap();
            file.write_at(&h, 0).unwrap();
            file.write_at(&[7u8; 24], HEADER_BYTES as u64).unwrap();
            if let Ok((header, crc)) = read_header(&*file, AT, 0xabc) {
                assert_eq!(header.words, 3, "only a header whose words fill the file is taken");
                let _ = read_words(&*file, crc, header.words, |_, _| {});
            }
        }
    }

    /// Every byte of the file is covered: a flipped bit anywhere, or a
    /// file cut anywhere, is refused.
    #[test]
    fn a_damaged_or_short_file_is_refused() {
        let n = 300u64;
        let len = HEADER_BYTES + n as usize * 8;
        for at in (0..len).step_by(7) {
            let file = saved(n);
            let mut byte = [0u8];
            file.read_at(&mut byte, at as u64).unwrap();
            file.write_at(&[byte[0] ^ 0x10], at as u64).unwrap();
            assert!(load(&*file, n as usize).is_err(), "bit flipped at byte {at}");
        }
        for cut in [0, 10, HEADER_BYTES, HEADER_BYTES + 8, len - 1, len + 1] {
            let file = saved(n);
            file.set_len(cut as u64).unwrap();
            assert!(load(&*file, n as usize).is_err(), "length {cut}");
        }
    }
}
