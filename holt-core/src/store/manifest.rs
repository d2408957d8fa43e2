//! The manifest: which slot of `frames.dat` holds each frame, plus the
//! engine's checkpoint metadata.
//!
//! Publication protocol (atomic replace): encode, write `MANIFEST.tmp`,
//! fdatasync it, rename it over `MANIFEST`, fsync the directory. A crash at
//! any step leaves either the old or the new `MANIFEST`, each complete and
//! synced; a torn `MANIFEST.tmp` is never read and is removed on open.
//! There is exactly one published manifest, so a corrupted one cannot be
//! replaced by an older one (its slots may have been reused): it is reported
//! as `Error::Corrupted` with the file and offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::frame_file::PageMask;
use super::le::{put_u32, put_u64, u32_at, u64_at};
use super::vfs::Vfs;
use crate::error::{Error, Result};
use crate::ids::{FrameId, Lsn};

pub(crate) const MANIFEST_NAME: &str = "MANIFEST";
pub(crate) const MANIFEST_TMP_NAME: &str = "MANIFEST.tmp";
/// The version this build writes; it also reads `MANIFEST_VERSION_IN_PLACE`
/// and `MANIFEST_VERSION_WHOLE`.
pub(crate) const MANIFEST_VERSION: u32 = 3;
/// Version 2: entries as version 3's, every delta's pages at their own
/// offsets (the `layout` word zero).
pub(crate) const MANIFEST_VERSION_IN_PLACE: u32 = 2;
/// Version 1: 16-byte entries without a base slot (every image whole).
pub(crate) const MANIFEST_VERSION_WHOLE: u32 = 1;
const MANIFEST_MAGIC: [u8; 8] = *b"HOLTMANF";
/// Flag bit: the checkpoint metadata fields are meaningful. Clear only in the
/// manifest written when the store is created.
const FLAG_META: u32 = 1;

const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_FLAGS: usize = 12;
pub(super) const H_STORE_ID: usize = 16;
const H_SEQ: usize = 24;
const H_CHECKPOINT_LSN: usize = 32;
const H_NEXT_FRAME_ID: usize = 40;
const H_ROOT: usize = 48;
const H_ENTRY_COUNT: usize = 56;
const H_USER_BYTES: usize = 64;
const H_FILE_BYTES: usize = 72;
pub(crate) const MANIFEST_HEADER_BYTES: usize = 80;
const E_FRAME_ID: usize = 0;
const E_SLOT: usize = 8;
const E_CRC: usize = 12;
const E_BASE: usize = 16;
const E_LAYOUT: usize = 20;
const E_PAGES: usize = 24;
pub(crate) const ENTRY_BYTES: usize = 40;
/// Entry size in a version 1 manifest (no base, layout or pages).
pub(crate) const ENTRY_BYTES_WHOLE: usize = 16;
/// `base` of an entry whose slot holds the whole image.
const NO_BASE: u32 = u32::MAX;
/// `layout` of a delta whose pages lie each at its own offset.
const LAYOUT_IN_PLACE: u32 = 0;
/// `layout` of a delta whose pages are packed (version 3 only).
const LAYOUT_PACKED: u32 = 1;
/// The last 4 bytes of the file, in every format version: CRC32C of the rest.
pub(crate) const TRAILER_BYTES: usize = 4;

/// Byte tables (field, offset, size); doc/FORMAT.md mirrors them.
#[cfg(test)]
pub(crate) const HEADER_FIELDS: &[(&str, usize, usize)] = &[
    ("magic", H_MAGIC, 8),
    ("version", H_VERSION, 4),
    ("flags", H_FLAGS, 4),
    ("store_id", H_STORE_ID, 8),
    ("seq", H_SEQ, 8),
    ("checkpoint_lsn", H_CHECKPOINT_LSN, 8),
    ("next_frame_id", H_NEXT_FRAME_ID, 8),
    ("root", H_ROOT, 8),
    ("entry_count", H_ENTRY_COUNT, 8),
    ("user_bytes", H_USER_BYTES, 8),
    ("file_bytes", H_FILE_BYTES, 8),
];
#[cfg(test)]
pub(crate) const ENTRY_FIELDS: &[(&str, usize, usize)] = &[
    ("frame_id", E_FRAME_ID, 8),
    ("slot", E_SLOT, 4),
    ("frame_crc32c", E_CRC, 4),
    ("base", E_BASE, 4),
    ("layout", E_LAYOUT, 4),
    ("pages", E_PAGES, 16),
];
#[cfg(test)]
pub(crate) const TRAILER_FIELDS: &[(&str, usize, usize)] = &[("crc32c", 0, TRAILER_BYTES)];

/// Checkpoint metadata, opaque to the store: the engine gives it to
/// `commit` and gets it back from `open`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ManifestMeta {
    pub checkpoint_lsn: Lsn,
    pub next_frame_id: u64,
    pub root: FrameId,
    pub user: Vec<u8>,
}

/// Where a frame lives and the checksum its slot must match; with a
/// `base`, the slot holds only some pages of the image, the base slot
/// the others, and the frame keeps both from reuse.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    pub slot: u32,
    pub crc: u32,
    pub base: Option<Base>,
}

/// The base of a delta: the slot holding a whole image of the frame, and
/// the pages the delta's own slot holds instead (page 0 always), packed
/// in ascending order or each at its own offset (`frame_file::delta`).
/// This build writes packed deltas (`FrameStore::allowed`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    pub slot: u32,
    pub pages: PageMask,
    pub packed: bool,
}

impl SlotRef {
    /// The slots this reference keeps from reuse: its own and its base.
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> {
        std::iter::once(self.slot).chain(self.base.map(|b| b.slot))
    }
}

/// A decoded manifest. Invariants (checked by `decode` and
/// `check_invariants`): no `FrameId(0)`; no two frames share a slot; no
/// entries without metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub store_id: u64,
    /// Publication number: 0 at creation, +1 per committed checkpoint.
    pub seq: u64,
    pub meta: Option<ManifestMeta>,
    pub frames: BTreeMap<FrameId, SlotRef>,
}

impl Manifest {
    pub(crate) fn check_invariants(&self) {
        assert!(!self.frames.contains_key(&FrameId(0)), "FrameId(0) is never stored");
        let mut slots: Vec<u32> = self.frames.values().flat_map(SlotRef::slots).collect();
        slots.sort_unstable();
        assert!(slots.windows(2).all(|w| w[0] != w[1]), "two frames (or a frame and its base) share a slot");
        assert!(self.meta.is_some() || self.frames.is_empty(), "frames without checkpoint metadata");
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let user: &[u8] = self.meta.as_ref().map_or(&[], |m| &m.user);
        let file_bytes = MANIFEST_HEADER_BYTES + self.frames.len() * ENTRY_BYTES + user.len() + TRAILER_BYTES;
        let mut b = vec![0u8; MANIFEST_HEADER_BYTES];
        b[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MANIFEST_MAGIC);
        put_u32(&mut b, H_VERSION, MANIFEST_VERSION);
        put_u32(&mut b, H_FLAGS, if self.meta.is_some() { FLAG_META } else { 0 });
        put_u64(&mut b, H_STORE_ID, self.store_id);
        put_u64(&mut b, H_SEQ, self.seq);
        if let Some(m) = &self.meta {
            put_u64(&mut b, H_CHECKPOINT_LSN, m.checkpoint_lsn.0);
            put_u64(&mut b, H_NEXT_FRAME_ID, m.next_frame_id);
            put_u64(&mut b, H_ROOT, m.root.0);
        }
        put_u64(&mut b, H_ENTRY_COUNT, self.frames.len() as u64);
        put_u64(&mut b, H_USER_BYTES, user.len() as u64);
        put_u64(&mut b, H_FILE_BYTES, file_bytes as u64);
        for (id, r) in &self.frames {
            let mut e = [0u8; ENTRY_BYTES];
            put_u64(&mut e, E_FRAME_ID, id.0);
            put_u32(&mut e, E_SLOT, r.slot);
            put_u32(&mut e, E_CRC, r.crc);
            put_u32(&mut e, E_BASE, r.base.map_or(NO_BASE, |b| b.slot));
            put_u32(&mut e, E_LAYOUT, if r.base.is_some_and(|b| b.packed) { LAYOUT_PACKED } else { LAYOUT_IN_PLACE });
            e[E_PAGES..E_PAGES + 16].copy_from_slice(&r.base.map_or(0, |b| b.pages).to_le_bytes());
            b.extend_from_slice(&e);
        }
        b.extend_from_slice(user);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(b.len(), file_bytes);
        b
    }

    /// Decode and validate; any bytes give a manifest or an error, never a
    /// panic. Check order: length, magic, checksum, version, fields.
    pub(crate) fn decode(b: &[u8], path: &Path) -> Result<Manifest> {
        let bad = |offset: usize, what: &str| Error::corrupted(path, offset as u64, what);
        if b.len() < MANIFEST_HEADER_BYTES + TRAILER_BYTES {
            return Err(bad(b.len(), "manifest truncated"));
        }
        if b[H_MAGIC..H_MAGIC + 8] != MANIFEST_MAGIC {
            return Err(bad(H_MAGIC, "not a holt manifest (bad magic)"));
        }
        let body = b.len() - TRAILER_BYTES;
        if crc32c::crc32c(&b[..body]) != u32_at(b, body) {
            return Err(bad(body, "manifest checksum mismatch"));
        }
        let version = u32_at(b, H_VERSION);
        let entry_bytes = entry_bytes(version).ok_or_else(|| Error::UnsupportedFormat { path: path.into(), found: version, supported: MANIFEST_VERSION })?;
        let (entries, user_len) = decode_lengths(b, entry_bytes, &bad)?;
        let meta = decode_meta(b, entries * entry_bytes, user_len, &bad)?;
        let frames = decode_entries(b, entries, version, &bad)?;
        Ok(Manifest { store_id: u64_at(b, H_STORE_ID), seq: u64_at(b, H_SEQ), meta, frames })
    }
}

/// The size of an entry in a manifest of `version`, if this build reads it.
fn entry_bytes(version: u32) -> Option<usize> {
    match version {
        MANIFEST_VERSION | MANIFEST_VERSION_IN_PLACE => Some(ENTRY_BYTES),
        MANIFEST_VERSION_WHOLE => Some(ENTRY_BYTES_WHOLE),
        _ => None,
    }
}

/// Entry count and user-bytes length, checked against the file length.
fn decode_lengths(b: &[u8], entry_bytes: usize, bad: &dyn Fn(usize, &str) -> Error) -> Result<(usize, usize)> {
    if u64_at(b, H_FILE_BYTES) != b.len() as u64 {
        return Err(bad(H_FILE_BYTES, "recorded manifest length differs from the file length"));
    }
    let room = (b.len() - MANIFEST_HEADER_BYTES - TRAILER_BYTES) as u64;
    let entries = u64_at(b, H_ENTRY_COUNT);
    let user_len = u64_at(b, H_USER_BYTES);
    let fits = entries.checked_mul(entry_bytes as u64).and_then(|e| e.checked_add(user_len)) == Some(room);
    if !fits {
        return Err(bad(H_ENTRY_COUNT, "entry count and user bytes do not fill the manifest"));
    }
    Ok((entries as usize, user_len as usize))
}

fn decode_meta(
    b: &[u8],
    entries_len: usize,
    user_len: usize,
    bad: &dyn Fn(usize, &str) -> Error,
) -> Result<Option<ManifestMeta>> {
    let flags = u32_at(b, H_FLAGS);
    if flags & !FLAG_META != 0 {
        return Err(bad(H_FLAGS, "unknown manifest flags"));
    }
    if flags & FLAG_META == 0 {
        let fields_zero = [H_CHECKPOINT_LSN, H_NEXT_FRAME_ID, H_ROOT].iter().all(|&o| u64_at(b, o) == 0);
        if !fields_zero || entries_len != 0 || user_len != 0 {
            return Err(bad(H_FLAGS, "manifest without checkpoint metadata has contents"));
        }
        return Ok(None);
    }
    let user_off = MANIFEST_HEADER_BYTES + entries_len;
    Ok(Some(ManifestMeta {
        checkpoint_lsn: Lsn(u64_at(b, H_CHECKPOINT_LSN)),
        next_frame_id: u64_at(b, H_NEXT_FRAME_ID),
        root: FrameId(u64_at(b, H_ROOT)),
        user: b[user_off..user_off + user_len].to_vec(),
    }))
}

/// Entries must be in strictly increasing frame-id order, never id 0, and
/// name distinct slots: no slot is two frames', or a frame's and a base,
/// or a frame's own and its base.
fn decode_entries(
    b: &[u8],
    entries: usize,
    version: u32,
    bad: &dyn Fn(usize, &str) -> Error,
) -> Result<BTreeMap<FrameId, SlotRef>> {
    let entry_bytes = entry_bytes(version).expect("a version decode reads");
    let mut frames = BTreeMap::new();
    let mut slots_seen = std::collections::HashSet::with_capacity(entries);
    let mut id_prev = 0u64;
    for i in 0..entries {
        let off = MANIFEST_HEADER_BYTES + i * entry_bytes;
        let id = u64_at(b, off + E_FRAME_ID);
        if id <= id_prev {
            return Err(bad(off + E_FRAME_ID, "manifest frame ids not strictly increasing (or zero)"));
        }
        let slot = u32_at(b, off + E_SLOT);
        if !slots_seen.insert(slot) {
            return Err(bad(off + E_SLOT, "two frames mapped to one slot"));
        }
        let base = match version {
            MANIFEST_VERSION_WHOLE => None,
            _ => decode_base(b, off, version, &mut slots_seen, bad)?,
        };
        frames.insert(FrameId(id), SlotRef { slot, crc: u32_at(b, off + E_CRC), base });
        id_prev = id;
    }
    Ok(frames)
}

/// The base of the version 2 or 3 entry at `off`, if any, its slot taken
/// into `slots_seen`: no pages or layout without a base, page 0 always
/// with one, a packed layout only in version 3.
fn decode_base(
    b: &[u8],
    off: usize,
    version: u32,
    slots_seen: &mut std::collections::HashSet<u32>,
    bad: &dyn Fn(usize, &str) -> Error,
) -> Result<Option<Base>> {
    let packed = match u32_at(b, off + E_LAYOUT) {
        LAYOUT_IN_PLACE => false,
        LAYOUT_PACKED if version == MANIFEST_VERSION => true,
        _ => return Err(bad(off + E_LAYOUT, "manifest entry's layout word is unknown")),
    };
    let pages = PageMask::from_le_bytes(b[off + E_PAGES..off + E_PAGES + 16].try_into().expect("16 bytes"));
    match u32_at(b, off + E_BASE) {
        NO_BASE if pages == 0 && !packed => Ok(None),
        NO_BASE => Err(bad(off + E_PAGES, "pages or a layout named without a base")),
        _ if pages & 1 == 0 => Err(bad(off + E_PAGES, "a delta without its first page")),
        slot if slots_seen.insert(slot) => Ok(Some(Base { slot, pages, packed })),
        _ => Err(bad(off + E_BASE, "a base slot another entry also maps")),
    }
}

/// Read `dir/MANIFEST`; `None` if it does not exist.
pub(crate) fn read(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST_NAME);
    let file = match vfs.open(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
    let len = usize::try_from(len).map_err(|_| Error::corrupted(&path, 0, "manifest larger than memory"))?;
    let mut buf = vec![0u8; len];
    let n = file.read_at(&mut buf, 0).map_err(|e| Error::io("read", &path, e))?;
    Manifest::decode(&buf[..n], &path).map(Some)
}

/// Why a publication failed. `poisons`: a sync failed, so the store must
/// refuse further checkpoints (after a directory-sync failure which manifest
/// is durable is unknown; after a file-sync failure what reached the disk
/// is unknown). Otherwise the published manifest is untouched.
#[derive(Debug)]
pub(crate) struct PublishError {
    pub error: Error,
    pub poisons: bool,
}

/// Publish `m` durably as `dir/MANIFEST` (see the module doc for the steps).
/// On `Ok` the new manifest is the one every later open reads.
pub(crate) fn publish(vfs: &dyn Vfs, dir: &Path, m: &Manifest) -> std::result::Result<(), PublishError> {
    m.check_invariants();
    let tmp = dir.join(MANIFEST_TMP_NAME);
    let path = dir.join(MANIFEST_NAME);
    let clean = |error| PublishError { error, poisons: false };
    let unknown = |error| PublishError { error, poisons: true };
    let file = vfs.open(&tmp, true).map_err(|e| clean(Error::io("create", &tmp, e)))?;
    let bytes = m.encode();
    file.set_len(0).map_err(|e| clean(Error::io("truncate", &tmp, e)))?;
    file.write_at(&bytes, 0).map_err(|e| clean(Error::io("write", &tmp, e)))?;
    file.sync_data().map_err(|e| unknown(Error::io("fdatasync", &tmp, e)))?;
    drop(file);
    vfs.rename(&tmp, &path).map_err(|e| clean(Error::io("rename", &tmp, e)))?;
    vfs.sync_dir(dir).map_err(|e| unknown(Error::io("fsync directory", dir, e)))
}

/// Remove a leftover `MANIFEST.tmp` from an interrupted publication.
pub(crate) fn remove_stale_tmp(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let tmp: PathBuf = dir.join(MANIFEST_TMP_NAME);
    match vfs.remove(&tmp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", tmp, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem_vfs::MemVfs;
    use crate::store::splitmix::SplitMix64;

    fn sample() -> Manifest {
        let frames = (1..=5u64).map(|i| (FrameId(i * 3), sample_ref(i))).collect();
        let meta = ManifestMeta { checkpoint_lsn: Lsn(99), next_frame_id: 16, root: FrameId(3), user: b"engine".to_vec() };
        Manifest { store_id: 0xABCD, seq: 4, meta: Some(meta), frames }
    }

    /// Frames 3 and 9 are deltas over bases 20 and 21, frame 3's packed.
    fn sample_ref(i: u64) -> SlotRef {
        let base = [20, 21].get(i.wrapping_sub(1) as usize / 2).copied().filter(|_| i % 2 == 1);
        let base = base.map(|slot| Base { slot, pages: 1 | 1 << (i + 7) | 1 << 127, packed: i == 1 });
        SlotRef { slot: (10 - i) as u32, crc: i as u32 * 77, base }
    }

    fn fresh() -> Manifest {
        Manifest { store_id: 1, seq: 0, meta: None, frames: BTreeMap::new() }
    }

    fn path() -> &'static Path {
        Path::new("/s/MANIFEST")
    }

    #[test]
    fn encode_decode_round_trips() {
        for m in [sample(), fresh()] {
            let b = m.encode();
            assert_eq!(Manifest::decode(&b, path()).unwrap(), m);
        }
    }

    #[test]
    fn every_flipped_bit_is_corrupted() {
        let b = sample().encode();
        for bit in 0..b.len() * 8 {
            let mut bad = b.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            match Manifest::decode(&bad, path()) {
                Err(Error::Corrupted { path: p, .. }) => assert_eq!(p, path()),
                other => panic!("bit {bit}: expected Corrupted, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_is_corrupted() {
        let b = sample().encode();
        for len in 0..b.len() {
            assert!(matches!(Manifest::decode(&b[..len], path()), Err(Error::Corrupted { .. })), "len {len}");
        }
    }

    /// Random bodies behind a valid magic, version and checksum reach the
    /// field checks; they must fail cleanly or decode to a valid manifest.
    #[test]
    fn checksummed_garbage_never_panics() {
        let mut rng = SplitMix64::new(0x5EED);
        for round in 0..20_000 {
            let len = rng.below(160) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if b.len() >= MANIFEST_HEADER_BYTES + TRAILER_BYTES && round % 2 == 0 {
                b[..8].copy_from_slice(&MANIFEST_MAGIC);
                put_u32(&mut b, H_VERSION, MANIFEST_VERSION);
                put_u32(&mut b, H_FLAGS, (rng.below(3)) as u32);
                let len = b.len() as u64;
                let entries = rng.below(6);
                let room = (b.len() - MANIFEST_HEADER_BYTES - TRAILER_BYTES) as u64;
                put_u64(&mut b, H_FILE_BYTES, len);
                put_u64(&mut b, H_ENTRY_COUNT, entries);
                put_u64(&mut b, H_USER_BYTES, room.saturating_sub(entries * ENTRY_BYTES as u64));
                let body = b.len() - TRAILER_BYTES;
                let crc = crc32c::crc32c(&b[..body]);
                put_u32(&mut b, body, crc);
            }
            if let Ok(m) = Manifest::decode(&b, path()) {
                m.check_invariants();
            }
        }
    }

    #[test]
    fn unknown_version_is_unsupported() {
        let mut b = sample().encode();
        put_u32(&mut b, H_VERSION, 9);
        let body = b.len() - TRAILER_BYTES;
        let crc = crc32c::crc32c(&b[..body]);
        put_u32(&mut b, body, crc);
        assert!(matches!(
            Manifest::decode(&b, path()),
            Err(Error::UnsupportedFormat { found: 9, supported: MANIFEST_VERSION, .. })
        ));
    }

    #[test]
    fn duplicate_slot_or_unordered_ids_are_corrupted() {
        let mut m = sample();
        m.frames.insert(FrameId(100), SlotRef { slot: 9, crc: 0, base: None });
        let b = m.encode();
        let dup_slot_off = MANIFEST_HEADER_BYTES + 5 * ENTRY_BYTES + E_SLOT;
        assert!(matches!(Manifest::decode(&b, path()), Err(Error::Corrupted { offset, .. }) if offset == dup_slot_off as u64));
    }

    /// `m` as a version 1 manifest: 16-byte entries, no bases.
    fn encode_whole(m: &Manifest) -> Vec<u8> {
        let b = m.encode();
        let entries = m.frames.len();
        let mut v1 = b[..MANIFEST_HEADER_BYTES].to_vec();
        for e in b[MANIFEST_HEADER_BYTES..MANIFEST_HEADER_BYTES + entries * ENTRY_BYTES].chunks(ENTRY_BYTES) {
            v1.extend_from_slice(&e[..ENTRY_BYTES_WHOLE]);
        }
        v1.extend_from_slice(&b[MANIFEST_HEADER_BYTES + entries * ENTRY_BYTES..b.len() - TRAILER_BYTES]);
        put_u32(&mut v1, H_VERSION, MANIFEST_VERSION_WHOLE);
        let file_bytes = (v1.len() + TRAILER_BYTES) as u64;
        put_u64(&mut v1, H_FILE_BYTES, file_bytes);
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        v1
    }

    /// `m`, whose deltas are in place, as a version 2 manifest.
    fn encode_in_place(m: &Manifest) -> Vec<u8> {
        assert!(m.frames.values().all(|r| r.base.is_none_or(|b| !b.packed)));
        let mut b = m.encode();
        put_u32(&mut b, H_VERSION, MANIFEST_VERSION_IN_PLACE);
        let body = b.len() - TRAILER_BYTES;
        let crc = crc32c::crc32c(&b[..body]);
        put_u32(&mut b, body, crc);
        b
    }

    #[test]
    fn a_version_2_manifest_reads_with_its_deltas_in_place_and_no_packed_one() {
        let mut m = sample();
        m.frames.values_mut().filter_map(|r| r.base.as_mut()).for_each(|b| b.packed = false);
        assert_eq!(Manifest::decode(&encode_in_place(&m), path()).unwrap(), m);
        // A packed layout word in version 2 is unknown there.
        let mut b = encode_in_place(&m);
        put_u32(&mut b, MANIFEST_HEADER_BYTES + E_LAYOUT, LAYOUT_PACKED);
        let body = b.len() - TRAILER_BYTES;
        let crc = crc32c::crc32c(&b[..body]);
        put_u32(&mut b, body, crc);
        let at = (MANIFEST_HEADER_BYTES + E_LAYOUT) as u64;
        assert!(matches!(Manifest::decode(&b, path()), Err(Error::Corrupted { offset, .. }) if offset == at));
    }

    #[test]
    fn a_version_1_manifest_reads_as_whole_images() {
        let mut m = sample();
        let v1 = encode_whole(&m);
        m.frames.values_mut().for_each(|r| r.base = None);
        assert_eq!(Manifest::decode(&v1, path()).unwrap(), m);
    }

    #[test]
    fn a_base_another_entry_maps_or_an_unknown_layout_is_corrupted() {
        let reseal = |b: &mut Vec<u8>| {
            let body = b.len() - TRAILER_BYTES;
            let crc = crc32c::crc32c(&b[..body]);
            put_u32(b, body, crc);
        };
        // Frame 3's base (20) made frame 6's slot (8): the second entry's slot clashes.
        let mut b = sample().encode();
        put_u32(&mut b, MANIFEST_HEADER_BYTES + E_BASE, 8);
        reseal(&mut b);
        let at = MANIFEST_HEADER_BYTES + ENTRY_BYTES + E_SLOT;
        assert!(matches!(Manifest::decode(&b, path()), Err(Error::Corrupted { offset, .. }) if offset == at as u64));
        // Frame 9's base made frame 3's base (20).
        let mut b = sample().encode();
        put_u32(&mut b, MANIFEST_HEADER_BYTES + 2 * ENTRY_BYTES + E_BASE, 20);
        reseal(&mut b);
        let at = MANIFEST_HEADER_BYTES + 2 * ENTRY_BYTES + E_BASE;
        assert!(matches!(Manifest::decode(&b, path()), Err(Error::Corrupted { offset, .. }) if offset == at as u64));
        // A layout word past the known ones (frame 3), a layout without a base (frame 6).
        for (entry, layout) in [(0, 2), (1, LAYOUT_PACKED)] {
            let mut b = sample().encode();
            put_u32(&mut b, MANIFEST_HEADER_BYTES + entry * ENTRY_BYTES + E_LAYOUT, layout);
            reseal(&mut b);
            let at = MANIFEST_HEADER_BYTES + entry * ENTRY_BYTES + if layout == 2 { E_LAYOUT } else { E_PAGES };
            assert!(matches!(Manifest::decode(&b, path()), Err(Error::Corrupted { offset, .. }) if offset == at as u64), "{entry}");
        }
        // Pages without a base (frame 6), a delta without page 0 (frame 3).
        for (entry, page0) in [(1, 0), (0, 1)] {
            let mut b = sample().encode();
            b[MANIFEST_HEADER_BYTES + entry * ENTRY_BYTES + E_PAGES] ^= 1;
            reseal(&mut b);
            let at = MANIFEST_HEADER_BYTES + entry * ENTRY_BYTES + E_PAGES;
            assert!(matches!(Manifest::decode(&b, path()), Err(Error::Corrupted { offset, .. }) if offset == at as u64), "{page0}");
        }
    }

    #[test]
    fn publish_replaces_and_read_sees_it() {
        let vfs = MemVfs::new();
        let dir = Path::new("/s");
        vfs.create_dir_all(dir).unwrap();
        assert!(read(&vfs, dir).unwrap().is_none());
        publish(&vfs, dir, &fresh()).unwrap();
        publish(&vfs, dir, &sample()).unwrap();
        assert_eq!(read(&vfs, dir).unwrap(), Some(sample()));
        assert!(vfs.file_bytes(&dir.join(MANIFEST_TMP_NAME)).is_none(), "tmp renamed away");
        remove_stale_tmp(&vfs, dir).unwrap();
    }
}
