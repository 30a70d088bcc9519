//! The filters applied to chunks before zstd, as named in each `.zarray`'s `filters`: numcodecs'
//! byte `shuffle` for numbers, and `vlen-utf8` for the light-curve tables' string columns
//! (a chunk is its item count, then each item's byte length and UTF-8 bytes, all little-endian
//! u32; <https://numcodecs.readthedocs.io/en/stable/other/vlen.html>).
//!
//! On `stamps` only the byte `shuffle` (`{"id": "shuffle", "elementsize": 4}`) is written: it groups
//! the first bytes of every float32, then the second bytes, and so on, so zstd sees the slowly
//! varying exponent bytes side by side (stamps: 1.115:1 with zstd alone, 1.269:1 shuffled). A store
//! keeps the filter it was created with; its `.zarray` says which, and appends follow it.
//! Spec: <https://numcodecs.readthedocs.io/en/stable/filter/shuffle.html>.

use serde_json::{json, Value};

/// Bytes per stamp element (float32).
const ELEMENT: usize = 4;

/// The filter of a store's stamp chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampFilter {
    /// `"filters": null`: stores written before the shuffle filter.
    None,
    /// numcodecs `shuffle` with elementsize 4.
    Shuffle,
}

impl StampFilter {
    /// The filter of a new store: the byte shuffle measured 12 % smaller and faster to encode,
    /// at about 20 % slower decoding in numcodecs (docs/performance.md, "Stamp compression").
    pub const NEW_STORE: StampFilter = StampFilter::Shuffle;

    /// The filter named by a stamps `.zarray`.
    ///
    /// # Errors
    /// A filter list this version does not write (the reason, for the caller to attach the path).
    pub fn from_zarray(zarray: &Value) -> Result<StampFilter, String> {
        match &zarray["filters"] {
            Value::Null => Ok(StampFilter::None),
            Value::Array(list) if list.is_empty() => Ok(StampFilter::None),
            Value::Array(list) if list.len() == 1 && list[0] == shuffle_json() => Ok(StampFilter::Shuffle),
            other => Err(format!("stamps filters {other} are not supported (ztf2zarr writes none or {})", shuffle_json())),
        }
    }
}

fn shuffle_json() -> Value {
    shuffle_json_of(ELEMENT)
}

fn shuffle_json_of(element: usize) -> Value {
    json!({"id": "shuffle", "elementsize": element})
}

/// The filter of one array's chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkFilter {
    /// `"filters": null`.
    None,
    /// numcodecs `shuffle` of elements of this many bytes.
    Shuffle(usize),
    /// numcodecs `vlen-utf8`: the chunk bytes are already the encoded items (see [`vlen`]).
    VlenUtf8,
}

impl From<StampFilter> for ChunkFilter {
    fn from(filter: StampFilter) -> Self {
        match filter {
            StampFilter::None => ChunkFilter::None,
            StampFilter::Shuffle => ChunkFilter::Shuffle(ELEMENT),
        }
    }
}

impl ChunkFilter {
    /// The `filters` value of `.zarray`.
    #[must_use]
    pub fn zarray_value(self) -> Value {
        match self {
            ChunkFilter::None => Value::Null,
            ChunkFilter::Shuffle(element) => json!([shuffle_json_of(element)]),
            ChunkFilter::VlenUtf8 => json!([{"id": "vlen-utf8"}]),
        }
    }

    /// Apply the filter to raw chunk bytes (before compression).
    #[must_use]
    pub fn encode<'a>(self, raw: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self {
            ChunkFilter::None | ChunkFilter::VlenUtf8 => raw.into(),
            ChunkFilter::Shuffle(element) => shuffle_of(raw, element).into(),
        }
    }

    /// Undo the filter on decompressed chunk bytes.
    #[must_use]
    pub fn decode(self, filtered: Vec<u8>) -> Vec<u8> {
        match self {
            ChunkFilter::None | ChunkFilter::VlenUtf8 => filtered,
            ChunkFilter::Shuffle(element) => unshuffle_of(&filtered, element),
        }
    }
}

/// numcodecs `vlen-utf8` chunks. While a chunk fills, its items are kept as they are encoded
/// (length, bytes), so that a chunk's rows can be counted, cut back and continued like fixed-size
/// ones; the item count goes in front and empty items pad it to the chunk length when written.
pub mod vlen {
    /// Append a fixed-width UTF-32LE cell (zero-padded, as a packed row holds it) as one item.
    /// A code point that is not a char (never packed by this tool) is written as U+FFFD.
    pub fn push_utf32_cell(cell: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        for code in cell.chunks_exact(4) {
            let code = u32::from_le_bytes([code[0], code[1], code[2], code[3]]);
            if code == 0 {
                break;
            }
            if code < 0x80 {
                out.push(code as u8);
            } else {
                let mut buffer = [0; 4];
                out.extend_from_slice(char::from_u32(code).unwrap_or('\u{fffd}').encode_utf8(&mut buffer).as_bytes());
            }
        }
        let length = u32_le(out.len() - at - 4);
        out[at..at + 4].copy_from_slice(&length);
    }

    /// Append one item.
    pub fn push_str(text: &str, out: &mut Vec<u8>) {
        push_item(text.as_bytes(), out);
    }

    /// Append one item of UTF-8 `bytes`: its length, then the bytes.
    fn push_item(bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&u32_le(bytes.len()));
        out.extend_from_slice(bytes);
    }

    /// The little-endian u32 of a count or length (every one a chunk holds fits).
    #[must_use]
    pub fn u32_le(n: usize) -> [u8; 4] {
        u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
    }

    fn u32_at(chunk: &[u8], at: usize) -> Option<usize> {
        chunk.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// The items of a chunk, each as its UTF-8 bytes.
    ///
    /// # Errors
    /// A chunk whose count or lengths run past its bytes, or whose count is not `capacity`.
    pub fn items(chunk: &[u8], capacity: usize) -> Result<Vec<&[u8]>, String> {
        let mut at = 4;
        let count = u32_at(chunk, 0).ok_or("no item count")?;
        if count != capacity {
            return Err(format!("holds {count} strings, expected {capacity}"));
        }
        let mut items = Vec::with_capacity(count);
        for index in 0..count {
            let item = u32_at(chunk, at)
                .and_then(|n| chunk.get(at + 4..at + 4 + n))
                .ok_or_else(|| format!("string {index} runs past the chunk"))?;
            at += 4 + item.len();
            items.push(item);
        }
        if at != chunk.len() {
            return Err(format!("{} bytes after its {count} strings", chunk.len() - at));
        }
        Ok(items)
    }

    /// The first `rows` items of a chunk, encoded as while filling (for continuing it).
    ///
    /// # Errors
    /// As [`items`].
    pub fn kept(chunk: &[u8], capacity: usize, rows: usize) -> Result<Vec<u8>, String> {
        let items = items(chunk, capacity)?;
        let mut out = Vec::new();
        for item in items.iter().take(rows) {
            push_item(item, &mut out);
        }
        Ok(out)
    }
}

/// One piece of a chunk as it is compressed: bytes, or a run of zeros (the padding of a last
/// chunk, never put in memory).
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// This many zero bytes.
    Zeros(usize),
}

impl Part<'_> {
    /// Its length in bytes.
    #[must_use]
    pub fn size(&self) -> usize {
        match self {
            Part::Bytes(bytes) => bytes.len(),
            Part::Zeros(n) => *n,
        }
    }
}

/// The filtered bytes of a whole chunk of `capacity` rows whose first `rows` rows are `bytes`
/// (fixed rows of `row_bytes`, or `vlen` items), the rest padding: as parts, with the
/// buffer some of them borrow from (`scratch`: the byte planes of a shuffle).
#[must_use]
pub fn padded_parts<'a>(
    filter: ChunkFilter,
    bytes: &'a [u8],
    row_bytes: usize,
    rows: usize,
    capacity: usize,
    scratch: &'a mut Vec<u8>,
) -> Vec<Part<'a>> {
    let pad = capacity - rows;
    match filter {
        ChunkFilter::VlenUtf8 => {
            scratch.clear();
            scratch.extend_from_slice(&vlen::u32_le(capacity));
            vec![Part::Bytes(scratch), Part::Bytes(bytes), Part::Zeros(4 * pad)]
        }
        ChunkFilter::None => vec![Part::Bytes(bytes), Part::Zeros(pad * row_bytes)],
        ChunkFilter::Shuffle(element) => {
            // Plane b of the whole chunk is byte b of each data element, then zeros.
            shuffle_into(bytes, element, scratch);
            let (data, padding) = (bytes.len() / element, pad * row_bytes / element);
            scratch.chunks(data.max(1)).take(element).flat_map(|plane| [Part::Bytes(plane), Part::Zeros(padding)]).collect()
        }
    }
}

/// The filtered bytes of a whole chunk of `capacity` rows whose first `rows` rows are `bytes`
/// (as [`padded_parts`] describes them), in one buffer: `out`, cleared first.
pub fn padded_chunk(filter: ChunkFilter, bytes: &[u8], row_bytes: usize, rows: usize, capacity: usize, out: &mut Vec<u8>) {
    let pad = capacity - rows;
    match filter {
        ChunkFilter::VlenUtf8 => {
            out.clear();
            out.extend_from_slice(&vlen::u32_le(capacity));
            out.extend_from_slice(bytes);
            out.resize(out.len() + 4 * pad, 0);
        }
        ChunkFilter::None => {
            out.clear();
            out.extend_from_slice(bytes);
            out.resize(bytes.len() + pad * row_bytes, 0);
        }
        ChunkFilter::Shuffle(element) => shuffle_padded_into(bytes, element, bytes.len() + pad * row_bytes, out),
    }
}

/// The size in bytes of the filtered chunk [`padded_chunk`] would make.
#[must_use]
pub fn padded_size(filter: ChunkFilter, bytes: usize, row_bytes: usize, rows: usize, capacity: usize) -> usize {
    match filter {
        ChunkFilter::VlenUtf8 => 4 + bytes + 4 * (capacity - rows),
        ChunkFilter::None | ChunkFilter::Shuffle(_) => bytes + (capacity - rows) * row_bytes,
    }
}

/// numcodecs `shuffle`: byte `b` of element `i` goes to `b * count + i`; trailing bytes of a
/// partial element (never present in the chunks written here) stay in place at the end.
fn shuffle_of(raw: &[u8], element: usize) -> Vec<u8> {
    let mut out = Vec::new();
    shuffle_into(raw, element, &mut out);
    out
}

/// [`shuffle_of`] into `out` (cleared first), reusing its memory.
fn shuffle_into(raw: &[u8], element: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(raw.len(), 0);
    let whole = raw.len() / element.max(1) * element;
    out[whole..].copy_from_slice(&raw[whole..]);
    transpose_into(&raw[..whole], element, whole / element.max(1), &mut out[..whole]);
}

/// The shuffled bytes of `raw` followed by zeros up to `padded` bytes (a whole multiple of
/// `element`), into `out`: the same bytes as shuffling `raw` padded with zeros, without the
/// padded copy.
fn shuffle_padded_into(raw: &[u8], element: usize, padded: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(padded, 0);
    transpose_into(raw, element, padded / element.max(1), out);
}

/// Byte `b` of each element of `raw` (whole elements) to `planes[b * stride + i]`.
fn transpose_into(raw: &[u8], element: usize, stride: usize, planes: &mut [u8]) {
    // A shuffle is a byte transpose: generic code indexing `element` planes per byte ran at a
    // few hundred MB/s; with the element size a constant the compiler unrolls each element into
    // its planes, several times faster. Stamps are 4-byte floats, light-curve columns 1 to 8.
    match element {
        1 => planes[..raw.len()].copy_from_slice(raw),
        2 => transpose::<2>(raw, stride, planes),
        4 => transpose::<4>(raw, stride, planes),
        8 => transpose::<8>(raw, stride, planes),
        _ => transpose_any(raw, element, stride, planes),
    }
}

/// Byte `b` of each `N`-byte element of `raw` into plane `b` of `planes` (planes `stride`
/// bytes apart), in blocks of `BLOCK` elements so that each plane is written a run at a time.
fn transpose<const N: usize>(raw: &[u8], stride: usize, planes: &mut [u8]) {
    const BLOCK: usize = 16;
    let mut block = [[0u8; BLOCK]; N];
    let mut elements = raw.chunks_exact(N * BLOCK);
    let mut at = 0;
    for chunk in elements.by_ref() {
        for (i, element) in chunk.chunks_exact(N).enumerate() {
            for (b, byte) in element.iter().enumerate() {
                block[b][i] = *byte;
            }
        }
        for (b, bytes) in block.iter().enumerate() {
            planes[b * stride + at..b * stride + at + BLOCK].copy_from_slice(bytes);
        }
        at += BLOCK;
    }
    for (i, element) in elements.remainder().chunks_exact(N).enumerate() {
        for (b, byte) in element.iter().enumerate() {
            planes[b * stride + at + i] = *byte;
        }
    }
}

/// [`transpose`] for an element size known only at run time.
fn transpose_any(raw: &[u8], element: usize, stride: usize, planes: &mut [u8]) {
    for (i, bytes) in raw.chunks_exact(element.max(1)).enumerate() {
        for (b, byte) in bytes.iter().enumerate() {
            planes[b * stride + i] = *byte;
        }
    }
}

/// The inverse of [`shuffle_of`].
fn unshuffle_of(filtered: &[u8], element: usize) -> Vec<u8> {
    let count = filtered.len() / element;
    let mut out = filtered.to_vec();
    if count == 0 {
        return out;
    }
    let planes: Vec<&[u8]> = filtered[..count * element].chunks_exact(count).collect();
    for (i, element) in out[..count * element].chunks_exact_mut(element).enumerate() {
        for (byte, plane) in element.iter_mut().zip(&planes) {
            *byte = plane[i];
        }
    }
    out
}

thread_local! {
    /// Each writing thread's compressor: one zstd context and output buffer for all its chunks,
    /// instead of a fresh context and fresh pages per chunk.
    pub(super) static COMPRESSOR: std::cell::RefCell<ChunkCompressor> = std::cell::RefCell::default();
}

/// A zstd context kept for one level, and the buffer it compresses into.
#[derive(Default)]
pub(super) struct ChunkCompressor {
    context: Option<(i32, zstd::bulk::Compressor<'static>)>,
    /// The streaming context of [`ChunkCompressor::compress_parts`].
    stream: Option<zstd::zstd_safe::CCtx<'static>>,
    out: Vec<u8>,
    /// A buffer for the filtered bytes of a chunk.
    pub(super) scratch: Vec<u8>,
}

impl ChunkCompressor {
    /// `raw` compressed as one zstd frame at `level` (the same bytes as `zstd::bulk::compress`).
    pub(super) fn compress(&mut self, raw: &[u8], level: i32) -> std::io::Result<&[u8]> {
        if self.context.as_ref().is_none_or(|(kept, _)| *kept != level) {
            self.context = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let Some((_, context)) = self.context.as_mut() else { unreachable!("set above") };
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        context.compress_to_buffer(raw, &mut self.out)?;
        Ok(&self.out)
    }

    /// `parts`, one after the other, compressed as one zstd frame at `level` that declares its
    /// size (a string chunk is read by that size).
    pub(super) fn compress_parts(&mut self, parts: &[Part<'_>], level: i32) -> std::io::Result<&[u8]> {
        use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
        use zstd::zstd_safe::{CParameter, InBuffer, OutBuffer};
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        let fail = |code: usize| std::io::Error::other(zstd::zstd_safe::get_error_name(code));
        let total: usize = parts.iter().map(Part::size).sum();
        let context = self.stream.get_or_insert_with(zstd::zstd_safe::CCtx::create);
        context.reset(zstd::zstd_safe::ResetDirective::SessionAndParameters).map_err(fail)?;
        context.set_parameter(CParameter::CompressionLevel(level)).map_err(fail)?;
        context.set_pledged_src_size(Some(total as u64)).map_err(fail)?;
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(total));
        let mut out = OutBuffer::around(&mut self.out);
        let feed = |bytes: &[u8], out: &mut OutBuffer<'_, Vec<u8>>, context: &mut zstd::zstd_safe::CCtx<'static>| -> std::io::Result<()> {
            let mut input = InBuffer::around(bytes);
            while input.pos() < bytes.len() {
                context.compress_stream2(out, &mut input, EndDirective::ZSTD_e_continue).map_err(fail)?;
            }
            Ok(())
        };
        for part in parts {
            match *part {
                Part::Bytes(bytes) => feed(bytes, &mut out, context)?,
                Part::Zeros(mut left) => {
                    while left > 0 {
                        let now = left.min(ZEROS.len());
                        feed(&ZEROS[..now], &mut out, context)?;
                        left -= now;
                    }
                }
            }
        }
        loop {
            let remaining = context.compress_stream2(&mut out, &mut InBuffer::around(&[]), EndDirective::ZSTD_e_end).map_err(fail)?;
            if remaining == 0 {
                break;
            }
        }
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_groups_bytes_by_position_as_numcodecs_does() {
        let raw: Vec<u8> = (0..12).collect();
        assert_eq!(shuffle_of(&raw, ELEMENT), vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    }

    #[test]
    fn shuffle_of_every_element_size_and_length_is_the_byte_transpose() {
        for element in 1..=9 {
            for count in [0, 1, 15, 16, 17, 33, 100] {
                for tail in [0, element / 2] {
                    let raw: Vec<u8> = (0..count * element + tail).map(|i| (i * 31 % 253) as u8).collect();
                    let mut expected = raw.clone();
                    for i in 0..count {
                        for b in 0..element {
                            expected[b * count + i] = raw[i * element + b];
                        }
                    }
                    assert_eq!(shuffle_of(&raw, element), expected, "element {element}, count {count}, tail {tail}");
                    assert_eq!(unshuffle_of(&expected, element), raw, "element {element}, count {count}, tail {tail}");
                }
            }
        }
    }

    #[test]
    fn unshuffle_inverts_shuffle() {
        let raw: Vec<u8> = (0..4001u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(unshuffle_of(&shuffle_of(&raw, ELEMENT), ELEMENT), raw);
        let stamps = ChunkFilter::from(StampFilter::Shuffle);
        assert_eq!(stamps.decode(stamps.encode(&raw).into_owned()), raw);
    }

    fn joined(parts: &[Part<'_>]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|p| match p {
                Part::Bytes(b) => b.to_vec(),
                Part::Zeros(n) => vec![0; *n],
            })
            .collect()
    }

    #[test]
    fn a_padded_chunk_in_one_buffer_is_its_parts_joined_and_compresses_to_the_same_bytes() {
        let rows: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let (mut scratch, mut whole) = (Vec::new(), Vec::new());
        let mut items = Vec::new();
        vlen::push_str("ab", &mut items);
        let cases = [
            (ChunkFilter::None, &rows[..], 8, rows.len() / 8, rows.len() / 8 + 100_000),
            (ChunkFilter::Shuffle(4), &rows[..], 8, rows.len() / 8, rows.len() / 8 + 100_000),
            (ChunkFilter::Shuffle(8), &rows[..24], 8, 3, 5),
            (ChunkFilter::VlenUtf8, &items[..], 8, 1, 3),
        ];
        for (filter, bytes, row_bytes, count, capacity) in cases {
            let parts = padded_parts(filter, bytes, row_bytes, count, capacity, &mut scratch);
            padded_chunk(filter, bytes, row_bytes, count, capacity, &mut whole);
            assert_eq!(whole, joined(&parts), "{filter:?}");
            assert_eq!(whole.len(), padded_size(filter, bytes.len(), row_bytes, count, capacity));
            let mut compressor = ChunkCompressor::default();
            let streamed = zstd::bulk::decompress(compressor.compress_parts(&parts, 1).unwrap(), whole.len()).unwrap();
            let frame = compressor.compress(&whole, 1).unwrap();
            assert_eq!(zstd::zstd_safe::get_frame_content_size(frame).ok(), Some(Some(whole.len() as u64)), "{filter:?}");
            assert_eq!(zstd::bulk::decompress(frame, whole.len()).unwrap(), streamed, "{filter:?}");
        }
    }

    #[test]
    fn padded_parts_are_the_filtered_padded_chunk() {
        let rows: Vec<u8> = (1..=24).collect();
        let mut scratch = Vec::new();
        let mut padded = rows.clone();
        padded.resize(40, 0);
        for filter in [ChunkFilter::None, ChunkFilter::Shuffle(4), ChunkFilter::Shuffle(8)] {
            let parts = padded_parts(filter, &rows, 8, 3, 5, &mut scratch);
            assert_eq!(joined(&parts), filter.encode(&padded).into_owned(), "{filter:?}");
        }
        let mut items = Vec::new();
        vlen::push_str("ab", &mut items);
        let parts = padded_parts(ChunkFilter::VlenUtf8, &items, 8, 1, 3, &mut scratch);
        assert_eq!(joined(&parts), [&[3, 0, 0, 0, 2, 0, 0, 0, b'a', b'b'][..], &[0; 8]].concat());
    }

    #[test]
    fn shuffle_of_eight_byte_elements_inverts() {
        let raw: Vec<u8> = (0..80).collect();
        let shuffled = ChunkFilter::Shuffle(8).encode(&raw).into_owned();
        assert_eq!(&shuffled[..10], &[0, 8, 16, 24, 32, 40, 48, 56, 64, 72]);
        assert_eq!(ChunkFilter::Shuffle(8).decode(shuffled), raw);
    }

    #[test]
    fn vlen_chunks_hold_count_items_and_padding_as_numcodecs_writes() {
        let mut items = Vec::new();
        let cell: Vec<u8> = "aé".chars().flat_map(|c| (c as u32).to_le_bytes()).chain([0; 8]).collect();
        vlen::push_utf32_cell(&cell, &mut items);
        vlen::push_str("", &mut items);
        let mut scratch = Vec::new();
        let chunk = joined(&padded_parts(ChunkFilter::VlenUtf8, &items, 8, 2, 4, &mut scratch));
        assert_eq!(chunk, [&[4, 0, 0, 0, 3, 0, 0, 0, b'a', 0xc3, 0xa9][..], &[0; 12]].concat());
        assert_eq!(vlen::items(&chunk, 4).unwrap(), [&b"a\xc3\xa9"[..], b"", b"", b""]);
        assert_eq!(vlen::kept(&chunk, 4, 2).unwrap(), items);
        assert!(vlen::items(&chunk, 5).unwrap_err().contains("expected 5"));
        assert!(vlen::items(&chunk[..10], 4).unwrap_err().contains("runs past"));
    }

    #[test]
    fn zarray_filters_round_trip_and_unknown_ones_are_refused() {
        for filter in [StampFilter::None, StampFilter::Shuffle] {
            assert_eq!(StampFilter::from_zarray(&json!({"filters": ChunkFilter::from(filter).zarray_value()})), Ok(filter));
        }
        let err = StampFilter::from_zarray(&json!({"filters": [{"id": "delta", "dtype": "<f4"}]})).unwrap_err();
        assert!(err.contains("not supported") && err.contains("delta"), "{err}");
    }
}
