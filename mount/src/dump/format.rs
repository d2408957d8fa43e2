//! The dump stream's bytes (doc/FORMAT.md, "holt-fs dump stream"): a
//! preamble, then length-prefixed records, each closed by a CRC32C that
//! also covers its sequence number, so a flipped bit, a lost or repeated
//! record and a cut stream are all told apart from a good one. Pure: the
//! writer and reader take any `Write` / `Read`.
//!
//! Invariants (checked by the reader, relied on by the loader):
//! - The first record is a Header, the last a Trailer; nothing follows the
//!   Trailer. A stream that ends before it is truncated, never a load.
//! - No body is longer than `BODY_BYTES_MAX`, so a corrupt length cannot
//!   make a reader allocate more than that.
//! - Names are 1 to 255 bytes without `/` or NUL (the root's is empty),
//!   xattr names 1 to 255 bytes without NUL, Data records hold 1 to
//!   `DATA_CHUNK_BYTES` bytes.

use std::fmt;
use std::io::{self, Read, Write};

use crate::schema::{FileKind, Timespec, NAME_BYTES_MAX, SYMLINK_TARGET_BYTES_MAX};

pub const MAGIC: &[u8; 8] = b"HOLTDUMP";
/// The stream format this build writes and reads.
pub const VERSION: u32 = 1;
pub const PREAMBLE_BYTES: usize = 12;
/// tag (1) and body length (4) before the body.
pub const RECORD_HEAD_BYTES: usize = 5;
pub const RECORD_CRC_BYTES: usize = 4;
/// Most file bytes one Data record carries.
pub const DATA_CHUNK_BYTES: usize = 1 << 20;
/// Longest body of any record: a full Data record.
pub const BODY_BYTES_MAX: usize = DATA_OFFSET_BYTES + DATA_CHUNK_BYTES;
/// Longest Abort message.
const ABORT_BYTES_MAX: usize = 4096;
/// Largest xattr value (Linux's XATTR_SIZE_MAX).
const XATTR_VALUE_BYTES_MAX: usize = 64 * 1024;

/// Header flag: regular files carry no Data records.
pub const FLAG_META_ONLY: u32 = 1;
/// Header flag: every ctime is written as zero.
pub const FLAG_NO_CTIME: u32 = 2;
const FLAGS_KNOWN: u32 = FLAG_META_ONLY | FLAG_NO_CTIME;

/// Record tags.
pub const TAG_HEADER: u8 = 1;
pub const TAG_INODE: u8 = 2;
pub const TAG_LINK: u8 = 3;
pub const TAG_XATTR: u8 = 4;
pub const TAG_DATA: u8 = 5;
pub const TAG_END: u8 = 6;
pub const TAG_TRAILER: u8 = 7;
pub const TAG_ABORT: u8 = 8;

/// Fixed part of an Inode body; the name and the symlink target follow.
pub const INODE_FIXED_BYTES: usize = 74;
const DATA_OFFSET_BYTES: usize = 8;

/// Byte tables of the preamble and of each record body's fixed part
/// (field, offset, size); doc/FORMAT.md mirrors them.
#[cfg(test)]
pub(crate) mod fields {
    pub type Fields = &'static [(&'static str, usize, usize)];
    pub const PREAMBLE: Fields = &[("magic", 0, 8), ("version", 8, 4)];
    pub const RECORD: Fields = &[("tag", 0, 1), ("body_len", 1, 4)];
    pub const HEADER: Fields = &[("flags", 0, 4)];
    pub const INODE: Fields = &[
        ("id", 0, 8),
        ("kind", 8, 1),
        ("perm", 9, 2),
        ("uid", 11, 4),
        ("gid", 15, 4),
        ("rdev", 19, 4),
        ("nlink", 23, 4),
        ("size", 27, 8),
        ("atime_sec", 35, 8),
        ("atime_nsec", 43, 4),
        ("mtime_sec", 47, 8),
        ("mtime_nsec", 55, 4),
        ("ctime_sec", 59, 8),
        ("ctime_nsec", 67, 4),
        ("name_len", 71, 1),
        ("target_len", 72, 2),
    ];
    pub const LINK: Fields = &[("id", 0, 8), ("name_len", 8, 1)];
    pub const XATTR: Fields = &[("name_len", 0, 1)];
    pub const DATA: Fields = &[("offset", 0, 8)];
    pub const TRAILER: Fields = &[("inodes", 0, 8), ("names", 8, 8), ("data_bytes", 16, 8)];
}

/// One inode as the stream records it, with the name it is first met by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeRecord {
    /// Its number in this stream: 1 for the root, then counting up in
    /// stream order.
    pub id: u64,
    pub kind: FileKind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub name: Vec<u8>,
    pub target: Vec<u8>,
}

/// What each of a stream's inodes, names and file bytes add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub inodes: u64,
    /// Names: Inode records but the root's, and Link records.
    pub names: u64,
    pub data_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Header { flags: u32 },
    Inode(InodeRecord),
    /// Another name of the inode with stream number `id`.
    Link { id: u64, name: Vec<u8> },
    /// An extended attribute of the inode of the last Inode record.
    Xattr { name: Vec<u8>, value: Vec<u8> },
    /// Bytes of the regular file of the last Inode record at `offset`.
    Data { offset: u64, bytes: Vec<u8> },
    /// Closes the innermost open directory.
    End,
    Trailer(Totals),
    /// The writer failed; nothing before it may be loaded.
    Abort { message: String },
}

/// Why a stream cannot be read.
#[derive(Debug)]
pub enum StreamError {
    Io(io::Error),
    /// The first bytes are not `HOLTDUMP`.
    NotADump,
    UnsupportedVersion(u32),
    /// The stream ends inside a record or before its Trailer.
    Truncated { offset: u64 },
    /// Bytes that fail their checksum or break a rule of the format.
    Corrupt { offset: u64, record: u64, what: String },
    /// The writer gave up and said why (an Abort record).
    Aborted { message: String },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Io(e) => write!(f, "{e}"),
            StreamError::NotADump => write!(f, "not a holt-fs dump (it does not start with {:?})", "HOLTDUMP"),
            StreamError::UnsupportedVersion(v) => {
                write!(f, "dump stream format version {v}; this build reads version {VERSION}")
            }
            StreamError::Truncated { offset } => write!(
                f,
                "the dump is truncated: it ends at byte {offset}, before its trailer (was the dump cut short?)"
            ),
            StreamError::Corrupt { offset, record, what } => {
                write!(f, "the dump is corrupt: record {record} at byte {offset}: {what}")
            }
            StreamError::Aborted { message } => write!(f, "the dump is incomplete: its writer failed: {message}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        StreamError::Io(e)
    }
}

fn put_time(b: &mut Vec<u8>, t: Timespec) {
    b.extend_from_slice(&t.sec.to_le_bytes());
    b.extend_from_slice(&t.nsec.to_le_bytes());
}

impl Record {
    pub fn tag(&self) -> u8 {
        match self {
            Record::Header { .. } => TAG_HEADER,
            Record::Inode(_) => TAG_INODE,
            Record::Link { .. } => TAG_LINK,
            Record::Xattr { .. } => TAG_XATTR,
            Record::Data { .. } => TAG_DATA,
            Record::End => TAG_END,
            Record::Trailer(_) => TAG_TRAILER,
            Record::Abort { .. } => TAG_ABORT,
        }
    }

    /// The body's bytes, appended to `b`.
    pub fn encode_body(&self, b: &mut Vec<u8>) {
        match self {
            Record::Header { flags } => b.extend_from_slice(&flags.to_le_bytes()),
            Record::Inode(i) => encode_inode(i, b),
            Record::Link { id, name } => {
                b.extend_from_slice(&id.to_le_bytes());
                b.push(name.len() as u8);
                b.extend_from_slice(name);
            }
            Record::Xattr { name, value } => {
                b.push(name.len() as u8);
                b.extend_from_slice(name);
                b.extend_from_slice(value);
            }
            Record::Data { offset, bytes } => {
                b.extend_from_slice(&offset.to_le_bytes());
                b.extend_from_slice(bytes);
            }
            Record::End => {}
            Record::Trailer(t) => {
                for x in [t.inodes, t.names, t.data_bytes] {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
            Record::Abort { message } => {
                let mut cut = message.len().min(ABORT_BYTES_MAX);
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                b.extend_from_slice(&message.as_bytes()[..cut]);
            }
        }
    }
}

fn encode_inode(i: &InodeRecord, b: &mut Vec<u8>) {
    b.extend_from_slice(&i.id.to_le_bytes());
    b.push(i.kind.to_byte());
    b.extend_from_slice(&i.perm.to_le_bytes());
    for x in [i.uid, i.gid, i.rdev, i.nlink] {
        b.extend_from_slice(&x.to_le_bytes());
    }
    b.extend_from_slice(&i.size.to_le_bytes());
    for t in [i.atime, i.mtime, i.ctime] {
        put_time(b, t);
    }
    b.push(i.name.len() as u8);
    b.extend_from_slice(&(i.target.len() as u16).to_le_bytes());
    b.extend_from_slice(&i.name);
    b.extend_from_slice(&i.target);
}

/// A body being taken apart; every read is bounds-checked.
struct Body<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("body shorter than its fields")?;
        let out = &self.b[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn time(&mut self) -> Result<Timespec, String> {
        let sec = i64::from_le_bytes(self.array()?);
        let nsec = self.u32()?;
        if nsec >= 1_000_000_000 {
            return Err(format!("a time with {nsec} nanoseconds"));
        }
        Ok(Timespec { sec, nsec })
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.b[self.pos..];
        self.pos = self.b.len();
        out
    }

    fn done(&self) -> Result<(), String> {
        match self.b.len() - self.pos {
            0 => Ok(()),
            n => Err(format!("{n} bytes past the body's fields")),
        }
    }
}

/// A directory entry's name: 1 to 255 bytes, no `/`, no NUL.
fn check_entry_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX || name.contains(&b'/') || name.contains(&0) {
        return Err(format!("bad entry name {:?}", crate::schema::show_key(name)));
    }
    Ok(())
}

fn decode_inode(body: &mut Body<'_>) -> Result<InodeRecord, String> {
    let id = body.u64()?;
    let kind_byte = body.u8()?;
    let kind = FileKind::from_byte(kind_byte).ok_or_else(|| format!("unknown file kind {kind_byte}"))?;
    let perm = body.u16()?;
    let [uid, gid, rdev, nlink] = [body.u32()?, body.u32()?, body.u32()?, body.u32()?];
    let size = body.u64()?;
    let [atime, mtime, ctime] = [body.time()?, body.time()?, body.time()?];
    let name_len = usize::from(body.u8()?);
    let target_len = usize::from(body.u16()?);
    let name = body.take(name_len)?.to_vec();
    let target = body.take(target_len)?.to_vec();
    body.done()?;
    if id == 0 || perm & !0o7777 != 0 {
        return Err(format!("inode id {id} with permission bits {perm:o}"));
    }
    let symlink = kind == FileKind::Symlink;
    if symlink == target.is_empty() || target.len() > SYMLINK_TARGET_BYTES_MAX || target.contains(&0) {
        return Err("a symlink target (1 to 4095 bytes, no NUL) exactly for symlinks".into());
    }
    if !name.is_empty() {
        check_entry_name(&name)?;
    }
    Ok(InodeRecord { id, kind, perm, uid, gid, rdev, nlink, size, atime, mtime, ctime, name, target })
}

fn decode_body(tag: u8, b: &[u8]) -> Result<Record, String> {
    let mut body = Body { b, pos: 0 };
    let record = match tag {
        TAG_HEADER => {
            let flags = body.u32()?;
            if flags & !FLAGS_KNOWN != 0 {
                return Err(format!("unknown header flags {flags:#x}"));
            }
            Record::Header { flags }
        }
        TAG_INODE => return decode_inode(&mut body).map(Record::Inode),
        TAG_LINK => {
            let id = body.u64()?;
            let len = usize::from(body.u8()?);
            let name = body.take(len)?.to_vec();
            check_entry_name(&name)?;
            Record::Link { id, name }
        }
        TAG_XATTR => {
            let len = usize::from(body.u8()?);
            let name = body.take(len)?.to_vec();
            let value = body.rest().to_vec();
            if name.is_empty() || name.contains(&0) || value.len() > XATTR_VALUE_BYTES_MAX {
                return Err("an xattr name of 1 to 255 bytes without NUL, a value of at most 64 KiB".into());
            }
            Record::Xattr { name, value }
        }
        TAG_DATA => {
            let offset = body.u64()?;
            let bytes = body.rest().to_vec();
            if bytes.is_empty() || offset.checked_add(bytes.len() as u64).is_none_or(|e| e > i64::MAX as u64) {
                return Err("a data record of no bytes, or past the largest file".into());
            }
            Record::Data { offset, bytes }
        }
        TAG_END => Record::End,
        TAG_TRAILER => Record::Trailer(Totals { inodes: body.u64()?, names: body.u64()?, data_bytes: body.u64()? }),
        TAG_ABORT => Record::Abort { message: String::from_utf8_lossy(body.rest()).into_owned() },
        other => return Err(format!("unknown record tag {other}")),
    };
    body.done()?;
    Ok(record)
}

/// CRC32C of a record: its sequence number, then its head and body.
fn record_crc(seq: u64, head: &[u8], body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&seq.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c_append(crc, head), body)
}

/// Writes a stream: the preamble at once, then one record per `write`.
pub struct StreamWriter<W: Write> {
    out: W,
    seq: u64,
    bytes: u64,
    body: Vec<u8>,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(mut out: W) -> io::Result<StreamWriter<W>> {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        Ok(StreamWriter { out, seq: 0, bytes: PREAMBLE_BYTES as u64, body: Vec::new() })
    }

    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        self.body.clear();
        record.encode_body(&mut self.body);
        assert!(self.body.len() <= BODY_BYTES_MAX, "a record body within the format's limit");
        let mut head = [0u8; RECORD_HEAD_BYTES];
        head[0] = record.tag();
        head[1..].copy_from_slice(&(self.body.len() as u32).to_le_bytes());
        let crc = record_crc(self.seq, &head, &self.body);
        self.out.write_all(&head)?;
        self.out.write_all(&self.body)?;
        self.out.write_all(&crc.to_le_bytes())?;
        self.seq += 1;
        self.bytes += (RECORD_HEAD_BYTES + self.body.len() + RECORD_CRC_BYTES) as u64;
        Ok(())
    }

    /// Bytes written so far, preamble included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads a stream record by record, checking each checksum and body.
pub struct StreamReader<R: Read> {
    input: R,
    seq: u64,
    offset: u64,
    /// The Trailer has been read: nothing more is.
    ended: bool,
    buf: Vec<u8>,
}

impl<R: Read> StreamReader<R> {
    /// Read and check the preamble.
    pub fn new(mut input: R) -> Result<StreamReader<R>, StreamError> {
        let mut pre = [0u8; PREAMBLE_BYTES];
        let got = read_fully(&mut input, &mut pre)?;
        if got < MAGIC.len() || &pre[..MAGIC.len()] != MAGIC {
            return Err(if got == 0 { StreamError::Truncated { offset: 0 } } else { StreamError::NotADump });
        }
        if got < PREAMBLE_BYTES {
            return Err(StreamError::Truncated { offset: got as u64 });
        }
        let version = u32::from_le_bytes(pre[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(StreamError::UnsupportedVersion(version));
        }
        Ok(StreamReader { input, seq: 0, offset: PREAMBLE_BYTES as u64, ended: false, buf: Vec::new() })
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.seq
    }

    fn corrupt(&self, offset: u64, what: impl Into<String>) -> StreamError {
        StreamError::Corrupt { offset, record: self.seq, what: what.into() }
    }

    /// The next record; `None` once the Trailer has been returned. An
    /// Abort record is returned as `StreamError::Aborted`.
    pub fn next_record(&mut self) -> Result<Option<Record>, StreamError> {
        if self.ended {
            return Ok(None);
        }
        let start = self.offset;
        let mut head = [0u8; RECORD_HEAD_BYTES];
        self.read_exact(&mut head)?;
        let body_len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        if body_len > BODY_BYTES_MAX {
            return Err(self.corrupt(start, format!("a body of {body_len} bytes, over the {BODY_BYTES_MAX}-byte limit")));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(body_len + RECORD_CRC_BYTES, 0);
        self.read_exact(&mut buf)?;
        let (body, crc) = buf.split_at(body_len);
        if u32::from_le_bytes(crc.try_into().expect("4 bytes")) != record_crc(self.seq, &head, body) {
            return Err(self.corrupt(start, "checksum mismatch (damaged, or a record lost or repeated)"));
        }
        let record = decode_body(head[0], body).map_err(|what| self.corrupt(start, what))?;
        self.buf = buf;
        self.check_order(&record, start)?;
        self.seq += 1;
        Ok(Some(record))
    }

    /// The Header first, the Trailer last; an Abort ends the stream.
    fn check_order(&mut self, record: &Record, start: u64) -> Result<(), StreamError> {
        match record {
            Record::Header { .. } if self.seq != 0 => Err(self.corrupt(start, "a second header")),
            Record::Header { .. } => Ok(()),
            _ if self.seq == 0 => Err(self.corrupt(start, "the stream does not open with a header")),
            Record::Abort { message } => Err(StreamError::Aborted { message: message.clone() }),
            Record::Trailer(_) => {
                self.ended = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// After the Trailer: the input must end there.
    pub fn expect_end(&mut self) -> Result<(), StreamError> {
        let mut probe = [0u8; 1];
        match read_fully(&mut self.input, &mut probe)? {
            0 => Ok(()),
            _ => Err(self.corrupt(self.offset, "bytes after the trailer")),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        let got = read_fully(&mut self.input, buf)?;
        self.offset += got as u64;
        if got < buf.len() {
            return Err(StreamError::Truncated { offset: self.offset });
        }
        Ok(())
    }

    pub fn into_inner(self) -> R {
        self.input
    }
}

/// `read` until `buf` is full or the input ends; the bytes read.
fn read_fully(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match input.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
