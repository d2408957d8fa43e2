//! Little-endian fixed-offset field access for the store's on-disk headers.
//! Callers check the buffer length first: an out-of-range offset is a bug in
//! the caller's layout constants, never a property of bytes read from disk.

pub(crate) fn u32_at(buf: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(buf[offset..offset + 4].try_into().expect("4-byte field inside the checked buffer"))
}

pub(crate) fn u64_at(buf: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(buf[offset..offset + 8].try_into().expect("8-byte field inside the checked buffer"))
}

pub(crate) fn put_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(buf: &mut [u8], offset: usize, value: u64) {
    buf[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_round_trip_little_endian() {
        let mut buf = [0u8; 12];
        super::put_u32(&mut buf, 0, 0x0403_0201);
        super::put_u64(&mut buf, 4, 0x0C0B_0A09_0807_0605);
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(super::u32_at(&buf, 0), 0x0403_0201);
        assert_eq!(super::u64_at(&buf, 4), 0x0C0B_0A09_0807_0605);
    }
}
