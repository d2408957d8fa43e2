//! The offsets one directory handle hands out, each valid for the handle's
//! whole life (telldir/seekdir, and the kernel resuming a listing).
//!
//! An offset stands for a name: resuming at it continues after that name,
//! whatever changed in the directory since. Offset `FIRST + i` is the i-th
//! name recorded, kept packed in one buffer. Resuming only needs the name,
//! so any offset of a name means the same; a pass that meets the names in
//! the order they were recorded (an unchanged directory read again after
//! rewinddir, or re-read after a seek back) reuses their offsets instead of
//! recording them again. Memory is one copy of each name a pass reached
//! that was not next in the log: about the directory's size for the usual
//! single pass or repeated identical passes.

/// The offset of the first recorded name (1 and 2 are `.` and `..`).
pub(super) const FIRST: u64 = 3;

#[derive(Default)]
pub(super) struct NameLog {
    bytes: Vec<u8>,
    /// End of each name in `bytes`.
    ends: Vec<usize>,
}

impl NameLog {
    /// The name offset `offset` stands for, if this log handed it out.
    pub fn name(&self, offset: u64) -> Option<&[u8]> {
        let i = usize::try_from(offset.checked_sub(FIRST)?).ok()?;
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// The offset of `name`, listed right after the entry of offset `prev`
    /// (`None`: the first entry after `..`).
    pub fn record(&mut self, prev: Option<u64>, name: &[u8]) -> u64 {
        let next = prev.map_or(FIRST, |p| p + 1);
        if self.name(next) == Some(name) {
            return next;
        }
        self.bytes.extend_from_slice(name);
        self.ends.push(self.bytes.len());
        FIRST + self.ends.len() as u64 - 1
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ends.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_name_what_they_were_given_for() {
        let mut log = NameLog::default();
        let a = log.record(None, b"a");
        let b = log.record(Some(a), b"b");
        assert_eq!((a, b), (FIRST, FIRST + 1));
        assert_eq!((log.name(a), log.name(b)), (Some(&b"a"[..]), Some(&b"b"[..])));
        assert_eq!(log.name(FIRST + 2), None);
        assert_eq!(log.name(1), None);
        assert_eq!(log.name(u64::MAX), None);
    }

    #[test]
    fn a_pass_in_recorded_order_reuses_offsets() {
        let mut log = NameLog::default();
        for _ in 0..3 {
            let mut prev = None;
            for n in [&b"a"[..], b"bb", b"c"] {
                prev = Some(log.record(prev, n));
            }
        }
        assert_eq!(log.len(), 3, "three identical passes record each name once");
        // A name that appeared meanwhile gets a new offset; the rest keep theirs.
        let a = log.record(None, b"a");
        let new = log.record(Some(a), b"b0");
        assert_eq!(new, FIRST + 3);
        assert_eq!(log.record(Some(new), b"bb"), FIRST + 4);
        assert_eq!(log.name(FIRST + 1), Some(&b"bb"[..]));
    }
}
