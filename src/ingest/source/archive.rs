//! Streaming one archive (`.tar.gz` or plain `.tar`): its tar members in order, each `.avro`
//! member sent as bytes, every other member listed as ignored with the reason, and marks that
//! tell the collector which alerts came from bytes a gzip trailer has verified.
//!
//! What happens to damage:
//! - a member whose CRC-32 or length check fails, or whose data will not inflate: the alerts read
//!   from it since the last verified member are rolled back and rejected ([`Mark::Failed`]), and
//!   reading resumes at the next gzip member that starts with a tar header, if any;
//! - a file that ends early (cut mid-member, or without its trailer): the alert members complete
//!   before the break are kept although no trailer vouched for them — tar headers are checksummed
//!   and the decoder checks every alert's structure, and dropping a whole night for a cut tail
//!   would lose far more than it protects — and the truncation is one reject saying where;
//! - a member that declares more than [`MAX_MEMBER_BYTES`]: rejected unread, its bytes skipped.
//!
//! Nested archives are not opened (listed as ignored): an archive inside an archive is rare, and
//! reading it would need a second decompressor and its own accounting for little gain.

use std::fs::File;
use std::path::Path;

use super::{display, Item, Mark, Payload};
use crate::formats::gzip::{Break, Stream};
use crate::survey::{Reject, RejectKind};

/// Largest archive member read as an alert. Real alerts are about 60–200 kB; a bigger member
/// is rejected without reading it into memory.
pub const MAX_MEMBER_BYTES: u64 = 64 << 20;

/// Largest GNU long-name or pax extended header read (they hold a path or a few fields).
const MAX_EXTENDED_HEADER_BYTES: u64 = 64 << 10;

/// Growth step when reading a member: memory follows the bytes present, never the declared size.
const READ_STEP: usize = 1 << 20;

const BLOCK: usize = 512;

/// Send every `.avro` member of the archive at `path`, and the marks and rejects that account
/// for the rest. Returns false if the consumer stopped.
pub(super) fn read_archive(input: usize, path: &Path, send: &mut dyn FnMut(Item) -> bool) -> bool {
    let name = display(path);
    let stream = match open_stream(path) {
        Ok(stream) => stream,
        Err(e) => return send(Item { input, name, payload: Payload::Unreadable(format!("cannot open archive: {e}")), consumed: 0 }),
    };
    let mut walker = Walker { input, name, stream, send, reported: 0, unverified_end: None, current: None, alerts: 0 };
    walker.run().is_ok()
}

/// A local archive, or one on object storage.
fn open_stream(path: &Path) -> std::io::Result<Stream> {
    let text = path.to_string_lossy();
    if !crate::store::object::is_url(&text) {
        return File::open(path).and_then(Stream::open);
    }
    match super::remote::RemoteObject::open(&text) {
        Ok(Some(object)) => {
            let size = object.size();
            Stream::from_reader(Box::new(object.reader()), size)
        }
        Ok(None) => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such object")),
        Err(error) => Err(std::io::Error::other(error)),
    }
}

/// The consumer stopped listening.
struct Stopped;

/// Why reading tar members stopped.
enum Stop {
    Consumer,
    /// The byte stream broke.
    Stream(Break),
    /// The bytes are intact but not a tar header where one must be.
    BadHeader {
        at: u64,
    },
    /// The stream ended cleanly inside a tar header or member.
    Cut,
}

impl From<Break> for Stop {
    fn from(b: Break) -> Self {
        Stop::Stream(b)
    }
}

impl From<Stopped> for Stop {
    fn from(_: Stopped) -> Self {
        Stop::Consumer
    }
}

/// The member being read, for messages when the stream breaks inside it.
struct Current {
    member: String,
    /// An alert member not yet sent: a break inside it loses one alert file.
    alert: bool,
    size: u64,
    read: u64,
}

struct Walker<'s> {
    input: usize,
    name: String,
    stream: Stream,
    send: &'s mut dyn FnMut(Item) -> bool,
    /// Compressed offset up to which progress was reported.
    reported: u64,
    /// Decompressed end of the last alert sent that no trailer has verified yet.
    unverified_end: Option<u64>,
    current: Option<Current>,
    /// Alert members sent.
    alerts: usize,
}

impl Walker<'_> {
    fn emit(&mut self, name: String, payload: Payload) -> Result<(), Stopped> {
        let consumed = self.stream.offset() - self.reported;
        self.reported = self.stream.offset();
        if (self.send)(Item { input: self.input, name, payload, consumed }) {
            Ok(())
        } else {
            Err(Stopped)
        }
    }

    fn mark(&mut self, mark: Mark) -> Result<(), Stopped> {
        self.emit(self.name.clone(), Payload::Mark(mark))
    }

    fn member_name(&self, member: &str) -> String {
        format!("{}:{member}", self.name)
    }

    fn run(&mut self) -> Result<(), Stopped> {
        self.mark(Mark::Verified)?;
        loop {
            let stop = match self.members() {
                Ok(()) => break,
                Err(stop) => stop,
            };
            if !self.recover(stop)? {
                break;
            }
        }
        self.checkpoint()?;
        self.mark(Mark::Closed)
    }

    /// Account for a stop; true if reading goes on (after resynchronising).
    fn recover(&mut self, stop: Stop) -> Result<bool, Stopped> {
        match stop {
            Stop::Consumer => Err(Stopped),
            Stop::Stream(Break::Truncated { .. }) | Stop::Cut => {
                let reject = self.truncation(&stop);
                self.mark(Mark::Problem(reject))?;
                Ok(false)
            }
            Stop::Stream(Break::Io(error)) => {
                let reason = format!("cannot read the archive at compressed byte {}: {error}", self.stream.offset());
                self.mark(Mark::Problem(Reject::new(RejectKind::Unreadable, reason).for_records(self.lost_alert())))?;
                Ok(false)
            }
            Stop::Stream(broken @ (Break::Corrupt { .. } | Break::Checksum { .. })) => self.failed(&broken),
            Stop::BadHeader { at } => self.bad_header(at),
        }
    }

    /// A member failed: resynchronise, then tell the collector to drop what it did not verify.
    fn failed(&mut self, broken: &Break) -> Result<bool, Stopped> {
        // A corrupt member may hide the start of the next anywhere after its own start; a
        // member that failed its trailer ended where the stream now is.
        let (kind, broke_at, from) = match broken {
            Break::Corrupt { start, .. } => (RejectKind::ArchiveCorrupt, *start, start + 1),
            _ => (RejectKind::ArchiveChecksum, self.stream.offset(), self.stream.offset()),
        };
        let unsent = self.lost_alert();
        let inside = self.current.take().map(|c| format!(" (inside member {})", c.member)).unwrap_or_default();
        self.unverified_end = None;
        let (resumed, after) = self.resync(broke_at, from);
        let reason = format!("{broken}{inside}; {after}");
        self.mark(Mark::Failed { kind, reason, unsent })?;
        Ok(resumed)
    }

    /// Intact bytes that are not a tar header: the member's trailer is still checked (reading it
    /// to its end), then reading resumes at the next member that starts a tar header.
    fn bad_header(&mut self, at: u64) -> Result<bool, Stopped> {
        let mut scratch = vec![0u8; 64 << 10];
        while !self.stream.at_member_boundary() {
            match self.stream.read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(broken) => return self.recover(Stop::Stream(broken)),
            }
        }
        self.checkpoint()?;
        let what = format!("the bytes at decompressed offset {at} are not a tar header");
        let (resumed, after) = if self.stream.is_gzip() {
            self.resync(self.stream.offset(), self.stream.offset())
        } else {
            let left = self.stream.file_size().saturating_sub(at);
            (false, format!("a plain tar cannot be resynchronised: the last {left} bytes are not read"))
        };
        let reject = Reject::new(RejectKind::ArchiveCorrupt, format!("{what}; {after}")).for_records(0);
        self.mark(Mark::Problem(reject))?;
        Ok(resumed)
    }

    /// Find the next gzip member at or after `from` that starts with a tar header; describe
    /// what was skipped since `broke_at`.
    fn resync(&mut self, broke_at: u64, from: u64) -> (bool, String) {
        match self.stream.resync(from, valid_header) {
            Ok(Some(at)) => (true, format!("reading resumed at compressed byte {at}, {} bytes skipped", at.saturating_sub(broke_at))),
            Ok(None) => {
                let left = self.stream.file_size().saturating_sub(broke_at);
                (
                    false,
                    format!(
                        "no later gzip member starts a tar header: the last {left} bytes (from compressed byte {broke_at}) are not read"
                    ),
                )
            }
            Err(e) => (false, format!("cannot look for a later gzip member: {e}")),
        }
    }

    /// One alert file lost if the break came inside an alert member not yet sent.
    fn lost_alert(&self) -> usize {
        usize::from(self.current.as_ref().is_some_and(|c| c.alert))
    }

    fn truncation(&self, stop: &Stop) -> Reject {
        let offset = self.stream.offset();
        let left = self.stream.file_size().saturating_sub(offset);
        let mut reason = match stop {
            Stop::Stream(broken) => format!("truncated: {broken}"),
            _ => format!("truncated: the tar data ends at compressed byte {offset}, in the middle of a tar header or member"),
        };
        if let Some(current) = &self.current {
            reason += &format!(", inside member {} ({} of its {} bytes present)", current.member, current.read, current.size);
        }
        reason += &format!("; {left} bytes of the file not read; the {} alert members before the break are kept", self.alerts);
        if self.stream.verified() < self.stream.produced() {
            reason += " (not covered by a gzip checksum)";
        }
        Reject::new(RejectKind::ArchiveTruncated, reason).for_records(self.lost_alert())
    }

    /// Everything sent so far is verified: let the collector forget how to roll it back.
    fn checkpoint(&mut self) -> Result<(), Stopped> {
        if self.unverified_end.is_some_and(|end| self.stream.verified() >= end) {
            self.unverified_end = None;
            self.mark(Mark::Verified)?;
        }
        Ok(())
    }

    /// Read tar members until the stream's clean end (zero blocks are stepped over, so every
    /// trailer is reached and archives concatenated after an end-of-archive marker are read too).
    fn members(&mut self) -> Result<(), Stop> {
        let mut long_name: Option<String> = None;
        let mut long_link: Option<String> = None;
        loop {
            self.checkpoint()?;
            let at = self.stream.produced();
            let mut header = [0u8; BLOCK];
            match self.stream.read_full(&mut header)? {
                0 => return Ok(()),
                BLOCK => {}
                _ => return Err(Stop::Cut),
            }
            if header.iter().all(|&b| b == 0) {
                continue;
            }
            if !valid_header(&header) {
                return Err(Stop::BadHeader { at });
            }
            let size = declared_size(&header).ok_or(Stop::BadHeader { at })?;
            let member = long_name.take().unwrap_or_else(|| header_path(&header));
            let link = long_link.take().unwrap_or_else(|| text(&header[157..257]));
            match header[156] {
                b'0' | 0 | b'7' => self.regular(member, size)?,
                kind @ (b'L' | b'K' | b'x') => {
                    let Some(value) = self.extended(&member, size)? else { continue };
                    match kind {
                        b'L' => long_name = Some(value),
                        b'K' => long_link = Some(value),
                        _ => {
                            long_name = pax_value(&value, "path").or(long_name);
                            long_link = pax_value(&value, "linkpath").or(long_link);
                        }
                    }
                }
                b'g' => self.skip(&member, size)?,
                kind => {
                    let reason = match kind {
                        b'1' => format!("a hard link to {link} (links are not followed)"),
                        b'2' => format!("a symbolic link to {link} (links are not followed)"),
                        b'5' => "a folder entry (its files are members of their own)".to_string(),
                        b'3' | b'4' => "a device entry".to_string(),
                        b'6' => "a FIFO entry".to_string(),
                        other => format!("tar entry type `{}` is not a regular file", char::from(other).escape_default()),
                    };
                    self.ignore(&member, reason)?;
                    self.skip(&member, size)?;
                }
            }
        }
    }

    fn ignore(&mut self, member: &str, reason: String) -> Result<(), Stopped> {
        let name = self.member_name(member);
        self.emit(name, Payload::Mark(Mark::Ignored { reason }))
    }

    fn regular(&mut self, member: String, size: u64) -> Result<(), Stop> {
        if let Some(reason) = not_an_alert(&member) {
            self.ignore(&member, reason.to_string())?;
            return self.skip(&member, size);
        }
        let name = self.member_name(&member);
        if size > MAX_MEMBER_BYTES {
            let reason = format!(
                "the archive member declares {size} bytes, more than the {} MiB allowed for one alert file: not read",
                MAX_MEMBER_BYTES >> 20
            );
            self.emit(name, Payload::Rejected(Reject::new(RejectKind::MemberTooLarge, reason)))?;
            return self.skip(&member, size);
        }
        self.current = Some(Current { member: member.clone(), alert: true, size, read: 0 });
        let bytes = self.read_member(size)?;
        self.current = None;
        self.alerts += 1;
        self.emit(name, Payload::Bytes(bytes))?;
        if self.stream.is_gzip() {
            self.unverified_end = Some(self.stream.produced());
        }
        self.skip_bytes(padding(size))
    }

    /// Read a member's `size` bytes, growing the buffer with the bytes that arrive.
    fn read_member(&mut self, size: u64) -> Result<Vec<u8>, Stop> {
        let mut bytes = Vec::new();
        let total = usize::try_from(size).map_err(|_| Stop::Cut)?;
        while bytes.len() < total {
            let filled = bytes.len();
            bytes.resize(filled + (total - filled).min(READ_STEP), 0);
            let n = self.stream.read_full(&mut bytes[filled..])?;
            if let Some(current) = &mut self.current {
                current.read += n as u64;
            }
            if filled + n < bytes.len() {
                return Err(Stop::Cut);
            }
        }
        Ok(bytes)
    }

    /// Step over a member's `size` bytes and their padding, naming it if the stream ends inside.
    fn skip(&mut self, member: &str, size: u64) -> Result<(), Stop> {
        self.current = Some(Current { member: member.to_string(), alert: false, size, read: 0 });
        self.skip_bytes(size.saturating_add(padding(size)))?;
        self.current = None;
        Ok(())
    }

    fn skip_bytes(&mut self, count: u64) -> Result<(), Stop> {
        let mut scratch = [0u8; 8192];
        let mut left = count;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(scratch.len());
            let n = self.stream.read_full(&mut scratch[..want])?;
            if let Some(current) = &mut self.current {
                current.read = (current.read + n as u64).min(current.size);
            }
            if n < want {
                return Err(Stop::Cut);
            }
            left -= n as u64;
        }
        Ok(())
    }

    /// The text of a GNU long-name or pax header member, or None if it is too long to read.
    fn extended(&mut self, member: &str, size: u64) -> Result<Option<String>, Stop> {
        if size > MAX_EXTENDED_HEADER_BYTES {
            let reason = format!("an extended header of {size} bytes (more than {MAX_EXTENDED_HEADER_BYTES} allowed): not read");
            self.ignore(member, reason)?;
            self.skip(member, size)?;
            return Ok(None);
        }
        self.current = Some(Current { member: member.to_string(), alert: false, size, read: 0 });
        let bytes = self.read_member(size)?;
        self.skip_bytes(padding(size))?;
        self.current = None;
        Ok(Some(text(&bytes)))
    }
}

/// Bytes after a member's data up to the next 512-byte block.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Why a regular member is not read as an alert (None: it is one).
fn not_an_alert(member: &str) -> Option<&'static str> {
    let lower = member.to_ascii_lowercase();
    if member.ends_with(".avro") || member.ends_with(".avro.gz") {
        None
    } else if [".tar", ".tar.gz", ".tgz"].iter().any(|e| lower.ends_with(e)) {
        Some("a nested archive (not opened: extract it and give it to build)")
    } else if lower.ends_with(".avro") || lower.ends_with(".avro.gz") {
        Some("the extension is not lower-case .avro or .avro.gz")
    } else {
        Some("not an .avro file")
    }
}

/// A tar header block whose checksum matches (the POSIX unsigned sum, or the old signed one).
pub(super) fn valid_header(block: &[u8]) -> bool {
    if block.len() < BLOCK || block[..BLOCK].iter().all(|&b| b == 0) {
        return false;
    }
    let Some(stored) = octal(&block[148..156]) else { return false };
    let field = 148..156;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block[..BLOCK].iter().enumerate() {
        let b = if field.contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        #[allow(clippy::cast_possible_wrap)] // the old signed checksum sums bytes as i8
        let s = b as i8;
        signed += i64::from(s);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// The member size: octal digits, or GNU base-256 (first byte's high bit set); None if neither.
/// A base-256 size past 64 bits reads as `u64::MAX` (it is rejected as too large anyway).
fn declared_size(header: &[u8]) -> Option<u64> {
    let field = &header[124..136];
    if field[0] & 0x80 == 0 {
        return octal(field);
    }
    let mut value: u64 = u64::from(field[0] & 0x7f);
    for &b in &field[1..] {
        value = match value.checked_mul(256) {
            Some(v) => v + u64::from(b),
            None => return Some(u64::MAX),
        };
    }
    Some(value)
}

fn octal(field: &[u8]) -> Option<u64> {
    let digits: &[u8] = {
        let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
        let rest = &field[start..];
        let end = rest.iter().position(|&b| b == 0 || b == b' ').unwrap_or(rest.len());
        &rest[..end]
    };
    digits.iter().try_fold(0u64, |value, &d| match d {
        b'0'..=b'7' => value.checked_mul(8).map(|v| v + u64::from(d - b'0')),
        _ => None,
    })
}

/// Text up to the first NUL.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The member's path: POSIX ustar joins `prefix/name`; older and GNU headers have the name only.
fn header_path(header: &[u8]) -> String {
    let name = text(&header[..100]);
    if &header[257..263] == b"ustar\0" {
        let prefix = text(&header[345..500]);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

/// A value from pax extended header records (`LEN key=value\n`).
fn pax_value(records: &str, key: &str) -> Option<String> {
    records.lines().find_map(|line| {
        let (_, field) = line.split_once(' ')?;
        let (k, v) = field.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size_field: &[u8]) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[124..124 + size_field.len()].copy_from_slice(size_field);
        block[156] = b'0';
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        block
    }

    #[test]
    fn sizes_are_read_from_octal_and_base_256_without_overflow() {
        assert_eq!(declared_size(&header("a.avro", b"00000001750\0")), Some(1000));
        let mut huge = [0u8; 12];
        huge[0] = 0x80;
        huge[4] = 0x40; // 2^62
        assert_eq!(declared_size(&header("a.avro", &huge)), Some(1 << 62));
        let overflow = [0xffu8; 12];
        assert_eq!(declared_size(&header("a.avro", &overflow)), Some(u64::MAX));
        assert_eq!(declared_size(&header("a.avro", b"12x\0")), None);
    }

    #[test]
    fn header_checksum_is_checked() {
        let mut block = header("night/1.avro", b"00000000017\0");
        assert!(valid_header(&block));
        block[0] ^= 1;
        assert!(!valid_header(&block));
        assert!(!valid_header(&[0u8; BLOCK]));
    }

    #[test]
    fn members_that_are_not_alerts_say_why() {
        assert_eq!(not_an_alert("n/1.avro"), None);
        assert!(not_an_alert("n/1.AVRO").unwrap().contains("lower-case"));
        assert_eq!(not_an_alert("n/1.avro.gz"), None, "a gzip'd alert file is read");
        assert!(not_an_alert("n/1.AVRO.GZ").unwrap().contains("lower-case"));
        assert!(not_an_alert("n/inner.tar.gz").unwrap().contains("nested archive"));
        assert_eq!(pax_value("30 path=night/long.avro\n", "path").as_deref(), Some("night/long.avro"));
    }
}
