//! From one cutout's bytes to one stored stamp: gzip → FITS → place in the 63×63 frame → crop the
//! centre → NaN and masked-pixel policy.
//!
//! ZTF cutouts are 63×63 centred on the candidate, except near a CCD edge where the pixels beyond
//! the edge are simply missing (e.g. 63 rows × 44 columns). Such an image is put back where it
//! belongs in the 63×63 frame: along x, a candidate in the high half of the 3072-column readout
//! channel (`xpos` > 1536) lost columns on the high side, so the image starts at column 0;
//! otherwise it lost them on the low side and ends at column 62. Likewise along y with `ypos`
//! against the 3080-row channel. The rest of the frame gets the NaN policy's value.

use std::cell::RefCell;
use std::io::Read;

use libdeflater::Decompressor;
use thiserror::Error;

use crate::formats::fits::{self, FitsError};
pub use crate::survey::StampSpec;

/// Side of a full ZTF cutout.
pub const FRAME: usize = 63;
/// Readout-channel size in pixels (x = columns, y = rows): the midpoints decide which edge clipped a cutout.
const CHANNEL_COLUMNS: f32 = 3072.0;
const CHANNEL_ROWS: f32 = 3080.0;
/// A cutout larger than this when inflated is not a ZTF cutout (~19 KB; guards against gzip bombs).
pub const MAX_INFLATED: u64 = 16 << 20;

/// `stamp_flags` bit: a cutout smaller than 63×63 was placed in the frame.
pub const FLAG_EDGE_PLACED: u8 = 1;
/// `stamp_flags` bit: a stored stamp pixel was NaN.
pub const FLAG_HAD_NAN: u8 = 2;
/// `stamp_flags` bit: edge placement had no `xpos`/`ypos` and assumed the high edge.
pub const FLAG_EDGE_GUESSED: u8 = 4;
/// `stamp_flags` bit: a stored stamp pixel held ZTF's masked-pixel value (−3.4028235e38, the
/// most negative float32; any value ≤ [`MASKED_AT_OR_BELOW`] counts) in the cutout. Stored as a
/// missing pixel (the NaN policy's fill) unless [`StampSpec::keep_masked`].
pub const FLAG_MASKED: u8 = 8;
/// Every `stamp_flags` value (1, 2, 4, 8: test with `stamp_flags & value`) with its short name,
/// in order of value (for counts in summaries and `info`, which shows them as `1=edge_placed`).
pub const STAMP_FLAGS: [(u8, &str); 4] =
    [(FLAG_EDGE_PLACED, "edge_placed"), (FLAG_HAD_NAN, "had_nan"), (FLAG_EDGE_GUESSED, "edge_guessed"), (FLAG_MASKED, "masked_pixels")];
/// Pixels at or below this are ZTF's masked-pixel marker, not data.
pub const MASKED_AT_OR_BELOW: f32 = -1e30;

/// Why a cutout could not become a stamp.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CutoutError {
    /// The bytes are a JPEG image (early IPAC alerts).
    #[error("is a JPEG image, not gzip'd FITS")]
    Jpeg,
    /// Not gzip.
    #[error("is not gzip'd FITS (starts with {0:02x?})")]
    NotGzip(Vec<u8>),
    /// gzip data that does not inflate.
    #[error("gzip data does not inflate: {0}")]
    BadGzip(String),
    /// FITS that cannot be read.
    #[error("{0}")]
    Fits(#[from] FitsError),
    /// Inflates beyond [`MAX_INFLATED`].
    #[error("gzip data inflates to more than {MAX_INFLATED} bytes")]
    InflatedTooLarge,
    /// Larger than the frame.
    #[error("is {width}x{height} pixels, larger than the 63x63 frame")]
    TooLarge { width: usize, height: usize },
}

/// Candidate position in the readout channel, used to place edge cutouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Position {
    /// `candidate.xpos` (pixels), if present.
    pub x: Option<f32>,
    /// `candidate.ypos` (pixels), if present.
    pub y: Option<f32>,
}

/// Decode one gzip'd FITS cutout into `out` (`spec.size²` pixels, row-major); returns its flags.
///
/// # Errors
/// JPEG, not gzip, corrupt gzip, unreadable FITS, or an image larger than 63×63.
pub fn decode_into(gz: &[u8], position: Position, spec: StampSpec, out: &mut [f32]) -> Result<u8, CutoutError> {
    thread_local! {
        /// Each worker keeps its inflater and output buffer: no allocation per cutout.
        static INFLATER: RefCell<(Decompressor, Vec<u8>)> = RefCell::new((Decompressor::new(), Vec::new()));
    }
    INFLATER.with_borrow_mut(|(inflater, fits)| {
        inflate(gz, inflater, fits)?;
        let image = fits::read_image(fits)?;
        place_and_crop(&image, position, spec, out)
    })
}

/// Inflate a single-member gzip cutout into `out`: libdeflate in one call, sized by the gzip
/// trailer's ISIZE, with its CRC checked. Anything libdeflate refuses (e.g. several members) goes
/// through flate2's streaming decoder, which also gives the better error message.
fn inflate(gz: &[u8], inflater: &mut Decompressor, out: &mut Vec<u8>) -> Result<(), CutoutError> {
    match gz {
        [0xff, 0xd8, 0xff, ..] => return Err(CutoutError::Jpeg),
        [0x1f, 0x8b, ..] => {}
        _ => return Err(CutoutError::NotGzip(gz.iter().take(4).copied().collect())),
    }
    let isize = gz.len().checked_sub(4).map_or(0, |at| u32::from_le_bytes([gz[at], gz[at + 1], gz[at + 2], gz[at + 3]]));
    if u64::from(isize) <= MAX_INFLATED {
        let expected = usize::try_from(isize).unwrap_or(0);
        out.resize(expected, 0);
        if inflater.gzip_decompress(gz, out).is_ok_and(|n| n == expected) {
            return Ok(());
        }
    }
    out.clear();
    // One byte past the limit tells a cutout that fits from one that does not (never cut silently).
    flate2::read::MultiGzDecoder::new(gz).take(MAX_INFLATED + 1).read_to_end(out).map_err(|e| CutoutError::BadGzip(e.to_string()))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(CutoutError::InflatedTooLarge);
    }
    Ok(())
}

/// Where along one axis a clipped image starts in the frame, and whether that was a guess.
fn axis_offset(extent: usize, position: Option<f32>, channel_size: f32) -> (usize, bool) {
    if extent == FRAME {
        return (0, false);
    }
    match position {
        Some(p) if p.is_finite() && p <= channel_size / 2.0 => (FRAME - extent, false),
        Some(p) if p.is_finite() => (0, false),
        _ => (0, true),
    }
}

fn place_and_crop(image: &fits::Image<'_>, position: Position, spec: StampSpec, out: &mut [f32]) -> Result<u8, CutoutError> {
    let (width, height) = (image.width, image.height);
    if width > FRAME || height > FRAME {
        return Err(CutoutError::TooLarge { width, height });
    }
    let (x0, x_guess) = axis_offset(width, position.x, CHANNEL_COLUMNS);
    let (y0, y_guess) = axis_offset(height, position.y, CHANNEL_ROWS);
    let mut flags = 0;
    if width < FRAME || height < FRAME {
        flags |= FLAG_EDGE_PLACED;
    }
    if x_guess || y_guess {
        flags |= FLAG_EDGE_GUESSED;
    }
    let start = (FRAME - spec.size) / 2;
    // The stamp's columns that fall on the image: `first .. end`, from image column `from`.
    let first = x0.saturating_sub(start).min(spec.size);
    let end = (x0 + width).saturating_sub(start).clamp(first, spec.size);
    let from = (start + first).saturating_sub(x0);
    for (r, out_row) in out.chunks_exact_mut(spec.size).enumerate() {
        let Some(row) = (start + r).checked_sub(y0).filter(|row| *row < height) else {
            out_row.fill(spec.fill());
            continue;
        };
        out_row[..first].fill(spec.fill());
        out_row[end..].fill(spec.fill());
        image.row_into(row, from, &mut out_row[first..end]);
        for pixel in &mut out_row[first..end] {
            if pixel.is_nan() {
                flags |= FLAG_HAD_NAN;
                *pixel = spec.fill();
            } else if *pixel <= MASKED_AT_OR_BELOW {
                flags |= FLAG_MASKED;
                if !spec.keep_masked {
                    *pixel = spec.fill();
                }
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::fits::tests::fits_bytes;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// A 63-wide frame whose pixel (row, col) holds row * 100 + col.
    fn coordinate_image(width: usize, height: usize, col0: usize, row0: usize) -> Vec<f32> {
        (0..height).flat_map(|r| (0..width).map(move |c| ((r + row0) * 100 + c + col0) as f32)).collect()
    }

    #[test]
    fn full_cutout_crops_the_centre() {
        let gz = gzip(&fits_bytes(63, 63, &coordinate_image(63, 63, 0, 0)));
        let mut out = vec![0.0; 21 * 21];
        let flags = decode_into(&gz, Position::default(), StampSpec { size: 21, keep_nan: false, keep_masked: false }, &mut out).unwrap();
        assert_eq!(flags, 0);
        assert_eq!(out[0], 2121.0);
        assert_eq!(out[20 * 21 + 20], 4141.0);
    }

    #[test]
    fn high_edge_cutout_starts_at_zero_low_edge_ends_at_62() {
        // 63 rows x 44 columns clipped on the high-x side: frame columns 0..44.
        let gz = gzip(&fits_bytes(44, 63, &coordinate_image(44, 63, 0, 0)));
        let mut out = vec![0.0; 63 * 63];
        let spec = StampSpec { size: 63, keep_nan: true, keep_masked: false };
        let flags = decode_into(&gz, Position { x: Some(3058.0), y: Some(900.0) }, spec, &mut out).unwrap();
        assert_eq!(flags, FLAG_EDGE_PLACED);
        assert_eq!(out[10 * 63 + 43], 1043.0);
        assert!(out[10 * 63 + 44].is_nan());
        // clipped on the low-x side: frame columns 19..63.
        let gz = gzip(&fits_bytes(44, 63, &coordinate_image(44, 63, 19, 0)));
        decode_into(&gz, Position { x: Some(12.0), y: Some(900.0) }, spec, &mut out).unwrap();
        assert!(out[10 * 63 + 18].is_nan());
        assert_eq!(out[10 * 63 + 19], 1019.0);
        assert_eq!(out[10 * 63 + 62], 1062.0);
    }

    #[test]
    fn nan_becomes_zero_and_is_flagged() {
        let mut pixels = vec![1.0; 63 * 63];
        pixels[31 * 63 + 31] = f32::NAN;
        pixels[0] = f32::NAN; // outside the 21x21 crop: not flagged
        let gz = gzip(&fits_bytes(63, 63, &pixels));
        let mut out = vec![0.0; 21 * 21];
        let flags = decode_into(&gz, Position::default(), StampSpec { size: 21, keep_nan: false, keep_masked: false }, &mut out).unwrap();
        assert_eq!(flags, FLAG_HAD_NAN);
        assert_eq!(out[10 * 21 + 10], 0.0);
    }

    #[test]
    fn masked_pixels_follow_the_nan_policy_unless_kept_and_are_flagged() {
        let mut pixels = vec![1.0; 63 * 63];
        pixels[31 * 63 + 30] = f32::MIN;
        pixels[31 * 63 + 32] = -1e31;
        let gz = gzip(&fits_bytes(63, 63, &pixels));
        let mut out = vec![0.0; 21 * 21];
        let decode = |keep_nan, keep_masked, out: &mut [f32]| {
            decode_into(&gz, Position::default(), StampSpec { size: 21, keep_nan, keep_masked }, out).unwrap()
        };
        assert_eq!(decode(false, false, &mut out), FLAG_MASKED);
        assert_eq!((out[10 * 21 + 9], out[10 * 21 + 11], out[10 * 21 + 10]), (0.0, 0.0, 1.0));
        assert_eq!(decode(true, false, &mut out), FLAG_MASKED);
        assert!(out[10 * 21 + 9].is_nan() && out[10 * 21 + 11].is_nan() && out[10 * 21 + 10] == 1.0);
        assert_eq!(decode(false, true, &mut out), FLAG_MASKED);
        assert_eq!((out[10 * 21 + 9], out[10 * 21 + 11]), (f32::MIN, -1e31));
    }

    #[test]
    fn jpeg_and_garbage_are_named() {
        let mut out = vec![0.0; 1];
        let spec = StampSpec { size: 1, keep_nan: false, keep_masked: false };
        assert_eq!(decode_into(&[0xff, 0xd8, 0xff, 0xe0], Position::default(), spec, &mut out), Err(CutoutError::Jpeg));
        assert!(matches!(decode_into(b"SIMPLE", Position::default(), spec, &mut out), Err(CutoutError::NotGzip(_))));
        assert!(matches!(decode_into(&[0x1f, 0x8b, 8, 0, 1], Position::default(), spec, &mut out), Err(CutoutError::BadGzip(_))));
    }
}
