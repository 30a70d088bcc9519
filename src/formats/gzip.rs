//! The byte stream under a tar archive: a plain `.tar` file as it is, or a `.tar.gz` inflated
//! member by member. Every gzip member is read to its trailer and its CRC-32 and length are
//! checked, so the reader above knows which decompressed bytes are verified. Positions are kept
//! in compressed bytes (for messages and progress) and in decompressed bytes (for verification).
//! After a corrupt member, [`Stream::resync`] looks for the next member that starts a tar header.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Compressed bytes buffered from the file at a time.
const READ_BUFFER: usize = 1 << 20;

/// Inflated bytes kept ahead for small reads (tar headers, padding, zero blocks), so that they
/// cost a copy rather than an inflate call each.
const AHEAD: usize = 64 * 1024;

/// Longest gzip header file name or comment accepted (real ones are a few dozen bytes).
const MAX_HEADER_TEXT: usize = 64 * 1024;

/// How far a resynchronisation attempt inflates a candidate member before giving up on it.
const RESYNC_PROBE_INPUT: usize = 1 << 20;

/// Why the stream stopped before its end.
#[derive(Debug)]
pub enum Break {
    /// The file ends inside a gzip member (mid-data, or before its trailer).
    Truncated { offset: u64, member: usize, detail: &'static str },
    /// A gzip member's data, header or the bytes where a header should be are not gzip;
    /// `start` is where that member began.
    Corrupt { offset: u64, start: u64, member: usize, detail: String },
    /// A member inflated but its trailer does not match what was inflated.
    Checksum { member: usize, start: u64, detail: String },
    /// The file itself could not be read.
    Io(std::io::Error),
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Truncated { offset, member, detail } => {
                write!(f, "the file ends at compressed byte {offset}, inside gzip member {} ({detail})", member + 1)
            }
            Break::Corrupt { offset, member, detail, .. } => {
                write!(f, "gzip member {} is corrupt (found at compressed byte {offset}): {detail}", member + 1)
            }
            Break::Checksum { member, start, detail } => {
                write!(f, "gzip member {} (from compressed byte {start}) fails its check: {detail}", member + 1)
            }
            Break::Io(error) => write!(f, "cannot read the archive: {error}"),
        }
    }
}

enum State {
    /// At a member boundary (or the start): the next byte, if any, starts a gzip header.
    Between,
    /// Inflating a member.
    Inside,
    /// The whole file was read.
    End,
}

/// Where an archive's bytes come from: a file, or an object read in ranges (resynchronising
/// after a corrupt member seeks).
pub trait ArchiveBytes: Read + Seek + Send {
    /// Read at `offset` without moving the stream (to search for the next member).
    ///
    /// # Errors
    /// The bytes cannot be read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
}

impl ArchiveBytes for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

/// A tar byte stream read from an archive file.
pub struct Stream {
    input: BufReader<Box<dyn ArchiveBytes>>,
    gzip: bool,
    /// Compressed bytes consumed from the file.
    offset: u64,
    file_size: u64,
    inflate: Decompress,
    crc: Crc,
    state: State,
    /// Gzip members started so far (the current one is `members - 1`).
    members: usize,
    member_start: u64,
    /// Decompressed bytes inflated (or, for a plain tar, read).
    inflated: u64,
    /// Decompressed bytes inflated when the last member's trailer checked.
    verified: u64,
    /// Inflated bytes not yet handed out: `ahead[ahead_pos..]`, all from one member.
    ahead: Vec<u8>,
    ahead_pos: usize,
    /// A member's trailer failed after its last bytes were inflated: reported on the next read,
    /// once those bytes have been handed out.
    pending: Option<Break>,
}

impl Stream {
    /// Open `file`: gzip if it starts with the gzip magic, else a plain tar.
    pub fn open(file: File) -> std::io::Result<Stream> {
        let file_size = file.metadata()?.len();
        Stream::from_reader(Box::new(file), file_size)
    }

    /// Open a stream of `file_size` bytes (an archive on object storage).
    pub fn from_reader(reader: Box<dyn ArchiveBytes>, file_size: u64) -> std::io::Result<Stream> {
        let mut input = BufReader::with_capacity(READ_BUFFER, reader);
        let gzip = input.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        Ok(Stream {
            input,
            gzip,
            offset: 0,
            file_size,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            state: State::Between,
            members: 0,
            member_start: 0,
            inflated: 0,
            verified: 0,
            ahead: Vec::new(),
            ahead_pos: 0,
            pending: None,
        })
    }

    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Compressed bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// True between gzip members (or at the end): the last member's bytes were all handed out and
    /// its trailer check reported.
    pub fn at_member_boundary(&self) -> bool {
        !matches!(self.state, State::Inside) && self.ahead_pos == self.ahead.len() && self.pending.is_none()
    }

    /// Decompressed bytes handed out so far.
    pub fn produced(&self) -> u64 {
        self.inflated - (self.ahead.len() - self.ahead_pos) as u64
    }

    /// Decompressed bytes, from the start, that every trailer so far has vouched for.
    pub fn verified(&self) -> u64 {
        if self.gzip {
            self.verified
        } else {
            self.produced()
        }
    }

    /// Fill `out` as far as the stream allows; `Ok(0)` only at the clean end of the file.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, Break> {
        if out.is_empty() {
            return Ok(0);
        }
        if !self.gzip {
            let n = loop {
                match self.input.read(out) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(Break::Io(e)),
                }
            };
            self.offset += n as u64;
            self.inflated += n as u64;
            return Ok(n);
        }
        if self.ahead_pos == self.ahead.len() {
            if out.len() >= AHEAD {
                return self.inflate_into(out);
            }
            let mut ahead = std::mem::take(&mut self.ahead);
            ahead.resize(AHEAD, 0);
            let filled = self.inflate_into(&mut ahead);
            ahead.truncate(*filled.as_ref().unwrap_or(&0));
            self.ahead = ahead;
            self.ahead_pos = 0;
            filled?;
        }
        let n = out.len().min(self.ahead.len() - self.ahead_pos);
        out[..n].copy_from_slice(&self.ahead[self.ahead_pos..self.ahead_pos + n]);
        self.ahead_pos += n;
        Ok(n)
    }

    /// Inflate straight into `out` (at most to the current member's end).
    fn inflate_into(&mut self, out: &mut [u8]) -> Result<usize, Break> {
        if let Some(broken) = self.pending.take() {
            return Err(broken);
        }
        loop {
            match self.state {
                State::End => return Ok(0),
                State::Between => {
                    if self.input.fill_buf().map_err(Break::Io)?.is_empty() {
                        self.state = State::End;
                        return Ok(0);
                    }
                    self.start_member()?;
                }
                State::Inside => {
                    let n = self.inflate_some(out)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
            }
        }
    }

    /// Read `out.len()` bytes; returns how many were read before a clean end of file.
    pub fn read_full(&mut self, out: &mut [u8]) -> Result<usize, Break> {
        let mut filled = 0;
        while filled < out.len() {
            let n = self.read(&mut out[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }

    /// Inflate into `out`; at a member's end, check its trailer. Returns bytes produced (0 when
    /// only the member ended).
    fn inflate_some(&mut self, out: &mut [u8]) -> Result<usize, Break> {
        let input = self.input.fill_buf().map_err(Break::Io)?;
        let eof = input.is_empty();
        let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
        let flush = if eof { FlushDecompress::Finish } else { FlushDecompress::None };
        let status = self.inflate.decompress(input, out, flush);
        let used = usize::try_from(self.inflate.total_in() - in_before).unwrap_or(usize::MAX);
        let made = usize::try_from(self.inflate.total_out() - out_before).unwrap_or(usize::MAX);
        self.consume(used);
        self.crc.update(&out[..made]);
        self.inflated += made as u64;
        match status {
            Err(error) => {
                Err(Break::Corrupt { offset: self.offset, start: self.member_start, member: self.members - 1, detail: error.to_string() })
            }
            Ok(Status::StreamEnd) => match self.finish_member() {
                Err(broken) if made > 0 => {
                    self.pending = Some(broken);
                    Ok(made)
                }
                checked => checked.map(|()| made),
            },
            Ok(_) if made == 0 && (eof || used == 0) => {
                Err(Break::Truncated { offset: self.offset, member: self.members - 1, detail: "its compressed data is cut" })
            }
            Ok(_) => Ok(made),
        }
    }

    fn consume(&mut self, n: usize) {
        self.input.consume(n);
        self.offset += n as u64;
    }

    /// Read exactly `out.len()` compressed bytes; false if the file ended first.
    fn take_exact(&mut self, out: &mut [u8]) -> Result<bool, Break> {
        match self.input.read_exact(out) {
            Ok(()) => {
                self.offset += out.len() as u64;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                self.offset = self.file_size;
                Ok(false)
            }
            Err(e) => Err(Break::Io(e)),
        }
    }

    fn truncated(&self, detail: &'static str) -> Break {
        Break::Truncated { offset: self.offset, member: self.members - 1, detail }
    }

    /// Parse a gzip member header (RFC 1952) and get ready to inflate its data.
    fn start_member(&mut self) -> Result<(), Break> {
        self.member_start = self.offset;
        self.members += 1;
        let mut fixed = [0u8; 10];
        if !self.take_exact(&mut fixed)? {
            return Err(self.truncated("its header is cut"));
        }
        if fixed[0] != 0x1f || fixed[1] != 0x8b || fixed[2] != 8 || fixed[3] & 0xe0 != 0 {
            return Err(Break::Corrupt {
                offset: self.member_start,
                start: self.member_start,
                member: self.members - 1,
                detail: "these bytes are not a gzip member header".into(),
            });
        }
        let flags = fixed[3];
        if flags & 0x04 != 0 {
            let mut length = [0u8; 2];
            if !self.take_exact(&mut length)? {
                return Err(self.truncated("its header is cut"));
            }
            let mut extra = vec![0u8; usize::from(u16::from_le_bytes(length))];
            if !self.take_exact(&mut extra)? {
                return Err(self.truncated("its header is cut"));
            }
        }
        for flag in [0x08, 0x10] {
            if flags & flag != 0 {
                self.skip_text()?;
            }
        }
        if flags & 0x02 != 0 {
            let mut header_crc = [0u8; 2];
            if !self.take_exact(&mut header_crc)? {
                return Err(self.truncated("its header is cut"));
            }
        }
        self.inflate.reset(false);
        self.crc.reset();
        self.state = State::Inside;
        Ok(())
    }

    /// Skip a zero-terminated header field (file name or comment), bounded in length.
    fn skip_text(&mut self) -> Result<(), Break> {
        let mut byte = [0u8; 1];
        for _ in 0..MAX_HEADER_TEXT {
            if !self.take_exact(&mut byte)? {
                return Err(self.truncated("its header is cut"));
            }
            if byte[0] == 0 {
                return Ok(());
            }
        }
        Err(Break::Corrupt {
            offset: self.offset,
            start: self.member_start,
            member: self.members - 1,
            detail: format!("a header text field is longer than {MAX_HEADER_TEXT} bytes"),
        })
    }

    /// Check the 8-byte trailer: CRC-32 and length (mod 2^32) of what was inflated.
    fn finish_member(&mut self) -> Result<(), Break> {
        self.state = State::Between;
        let mut trailer = [0u8; 8];
        if !self.take_exact(&mut trailer)? {
            return Err(self.truncated("its 8-byte trailer (CRC-32 and length) is missing"));
        }
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let length = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        let (member, start) = (self.members - 1, self.member_start);
        if crc != self.crc.sum() {
            let detail = format!("CRC-32 {:08x} of the inflated data, the trailer says {crc:08x}", self.crc.sum());
            return Err(Break::Checksum { member, start, detail });
        }
        if length != self.crc.amount() {
            let detail = format!("{} bytes inflated (mod 2^32), the trailer says {length}", self.crc.amount());
            return Err(Break::Checksum { member, start, detail });
        }
        self.verified = self.inflated;
        Ok(())
    }

    /// After a break, find the first gzip member at or after compressed byte `from` whose data
    /// starts with a valid tar header (`starts_tar`), and continue reading there. Returns its
    /// offset, or None when no such member is left (the stream is then at its end).
    pub fn resync(&mut self, from: u64, starts_tar: impl Fn(&[u8]) -> bool) -> Result<Option<u64>, Break> {
        let mut candidate = from;
        while let Some(at) = self.find_magic(candidate).map_err(Break::Io)? {
            if self.probe(at, &starts_tar) {
                self.seek(at)?;
                return Ok(Some(at));
            }
            candidate = at + 1;
        }
        self.seek(self.file_size)?;
        self.state = State::End;
        Ok(None)
    }

    fn seek(&mut self, at: u64) -> Result<(), Break> {
        self.input.seek(SeekFrom::Start(at)).map_err(Break::Io)?;
        self.offset = at;
        self.state = State::Between;
        self.ahead.clear();
        self.ahead_pos = 0;
        self.pending = None;
        Ok(())
    }

    /// Would a member starting at `at` inflate to a tar header?
    fn probe(&mut self, at: u64, starts_tar: &impl Fn(&[u8]) -> bool) -> bool {
        if self.seek(at).is_err() || self.start_member().is_err() {
            return false;
        }
        self.members -= 1; // a probe is not a member read
        let mut block = [0u8; 512];
        let mut filled = 0;
        let limit = self.offset + RESYNC_PROBE_INPUT as u64;
        while filled < block.len() && self.offset < limit {
            let Ok(input) = self.input.fill_buf() else { return false };
            if input.is_empty() {
                break;
            }
            let before = (self.inflate.total_in(), self.inflate.total_out());
            let status = self.inflate.decompress(input, &mut block[filled..], FlushDecompress::None);
            let used = usize::try_from(self.inflate.total_in() - before.0).unwrap_or(0);
            filled += usize::try_from(self.inflate.total_out() - before.1).unwrap_or(0);
            self.consume(used);
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(_) if used == 0 => break,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        filled == block.len() && starts_tar(&block)
    }

    /// The offset of the next `1f 8b 08` at or after `from`.
    fn find_magic(&self, from: u64) -> std::io::Result<Option<u64>> {
        let file = self.input.get_ref();
        let mut window = vec![0u8; 1 << 16];
        let mut at = from;
        while at < self.file_size {
            let n = file.read_at(&mut window, at)?;
            if n < 3 {
                return Ok(None);
            }
            if let Some(i) = window[..n].windows(3).position(|w| w == [0x1f, 0x8b, 0x08]) {
                return Ok(Some(at + i as u64));
            }
            at += n as u64 - 2; // the magic may straddle two windows
        }
        Ok(None)
    }
}

/// Whether `bytes` start as a gzip stream does.
#[must_use]
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Inflate a whole gzip'd file held in memory (every member, each checked against its CRC-32
/// and length by the decoder), refusing to produce more than `limit` bytes.
///
/// # Errors
/// Data that does not inflate or fails a member's check, or more than `limit` bytes.
pub fn inflate_all(bytes: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1).read_to_end(&mut out);
    match read {
        Err(error) => Err(format!("gzip data does not inflate: {error}")),
        Ok(_) if out.len() > limit => Err(format!("gzip data inflates to more than {} MiB", limit >> 20)),
        Ok(_) => Ok(out),
    }
}
