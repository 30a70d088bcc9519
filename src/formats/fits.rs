//! The FITS images inside ZTF cutouts: one primary HDU, BITPIX −32 (big-endian IEEE float32),
//! two axes. Only the cards that say where the pixels are and how to scale them are read; the
//! header is tolerant of ZTF's `SIMPLE  =  T`, which is not in fixed format.
//! Spec: FITS Standard 4.0, sections 3–5.

use thiserror::Error;

const BLOCK: usize = 2880;
const CARD: usize = 80;
/// Most pixels an image may have (a ZTF cutout has 63×63 = 3,969): NAXIS1×NAXIS2 are checked
/// against this, with overflow-checked arithmetic, before any size is computed from them.
pub const MAX_PIXELS: usize = 1 << 22;

/// Why a FITS image could not be read.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FitsError {
    /// The header ends before an `END` card.
    #[error("FITS header has no END card")]
    NoEnd,
    /// The first card is not `SIMPLE = T`.
    #[error("not a FITS file (first card is not SIMPLE = T)")]
    NotFits,
    /// A required card is missing or unreadable.
    #[error("FITS header card {0} is missing or not a number")]
    BadCard(&'static str),
    /// A pixel type other than −32.
    #[error("BITPIX {0} is not supported (expected -32, 32-bit float)")]
    UnsupportedBitpix(i64),
    /// Not a 2-D image.
    #[error("NAXIS {0} is not supported (expected a 2-D image)")]
    NotTwoDimensional(i64),
    /// NAXIS1×NAXIS2 beyond [`MAX_PIXELS`] (or beyond any integer).
    #[error("FITS image of {width}x{height} pixels is larger than the {MAX_PIXELS}-pixel limit")]
    TooLarge { width: usize, height: usize },
    /// The data block is shorter than the axes say.
    #[error("FITS data is truncated: {got} bytes, expected {expected} for {width}x{height}")]
    Truncated { got: usize, expected: usize, width: usize, height: usize },
}

/// An image inside a FITS file's bytes: `height` rows of `width` pixels (rows are NAXIS2,
/// columns NAXIS1). Pixels are read where they lie, so a crop converts only what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Image<'a> {
    /// NAXIS1: columns (x).
    pub width: usize,
    /// NAXIS2: rows (y).
    pub height: usize,
    data: &'a [u8],
    scale: Option<(f64, f64)>,
}

impl Image<'_> {
    /// The pixel at (`row`, `col`), both in range.
    #[must_use]
    pub fn pixel(&self, row: usize, col: usize) -> f32 {
        let at = 4 * (row * self.width + col);
        let value = f32::from_be_bytes([self.data[at], self.data[at + 1], self.data[at + 2], self.data[at + 3]]);
        match self.scale {
            #[allow(clippy::cast_possible_truncation)] // scaled values are float32 by definition of BITPIX -32
            Some((bscale, bzero)) => (f64::from(value) * bscale + bzero) as f32,
            None => value,
        }
    }

    /// Every pixel, row-major.
    #[must_use]
    pub fn pixels(&self) -> Vec<f32> {
        (0..self.height).flat_map(|r| (0..self.width).map(move |c| (r, c))).map(|(r, c)| self.pixel(r, c)).collect()
    }
}

struct Header {
    bitpix: i64,
    naxis: i64,
    width: usize,
    height: usize,
    bscale: f64,
    bzero: f64,
    data_start: usize,
}

/// Read a FITS file held in memory.
///
/// # Errors
/// Not FITS, not a 2-D float32 image, or truncated.
pub fn read_image(file: &[u8]) -> Result<Image<'_>, FitsError> {
    let header = read_header(file)?;
    if header.bitpix != -32 {
        return Err(FitsError::UnsupportedBitpix(header.bitpix));
    }
    if header.naxis != 2 {
        return Err(FitsError::NotTwoDimensional(header.naxis));
    }
    let (width, height) = (header.width, header.height);
    let count = width.checked_mul(height).filter(|n| *n <= MAX_PIXELS).ok_or(FitsError::TooLarge { width, height })?;
    let bytes = count * 4; // |BITPIX| / 8 = 4; at most 16 MiB after the check above
    let data = file.get(header.data_start..).unwrap_or_default();
    if data.len() < bytes {
        return Err(FitsError::Truncated { got: data.len(), expected: bytes, width, height });
    }
    let scale = (header.bscale != 1.0 || header.bzero != 0.0).then_some((header.bscale, header.bzero));
    Ok(Image { width, height, data: &data[..bytes], scale })
}

fn read_header(file: &[u8]) -> Result<Header, FitsError> {
    let mut header = Header { bitpix: 0, naxis: -1, width: 0, height: 0, bscale: 1.0, bzero: 0.0, data_start: 0 };
    let mut saw = (false, false, false);
    for (index, card) in file.chunks_exact(CARD).enumerate() {
        let keyword = std::str::from_utf8(&card[..8]).unwrap_or("").trim_end();
        if index == 0 && (keyword != "SIMPLE" || card_value(card).as_deref() != Some("T")) {
            return Err(FitsError::NotFits);
        }
        match keyword {
            "BITPIX" => header.bitpix = int_card(card, "BITPIX")?,
            "NAXIS" => header.naxis = int_card(card, "NAXIS")?,
            "NAXIS1" => (header.width, saw.0) = (axis_card(card, "NAXIS1")?, true),
            "NAXIS2" => (header.height, saw.1) = (axis_card(card, "NAXIS2")?, true),
            "BSCALE" => header.bscale = float_card(card, "BSCALE")?,
            "BZERO" => header.bzero = float_card(card, "BZERO")?,
            "END" => {
                saw.2 = true;
                header.data_start = ((index + 1) * CARD).div_ceil(BLOCK) * BLOCK;
                break;
            }
            _ => {}
        }
    }
    match saw {
        (_, _, false) => Err(FitsError::NoEnd),
        (false, _, _) => Err(FitsError::BadCard("NAXIS1")),
        (_, false, _) => Err(FitsError::BadCard("NAXIS2")),
        _ => Ok(header),
    }
}

/// The value part of a `KEYWORD = value / comment` card, trimmed; free format is accepted.
fn card_value(card: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(card).ok()?;
    let rest = text.get(8..)?.trim_start();
    let rest = rest.strip_prefix('=')?;
    let value = rest.split('/').next()?.trim();
    Some(value.to_string())
}

fn int_card(card: &[u8], name: &'static str) -> Result<i64, FitsError> {
    card_value(card).and_then(|v| v.parse().ok()).ok_or(FitsError::BadCard(name))
}

fn axis_card(card: &[u8], name: &'static str) -> Result<usize, FitsError> {
    usize::try_from(int_card(card, name)?).map_err(|_| FitsError::BadCard(name))
}

fn float_card(card: &[u8], name: &'static str) -> Result<f64, FitsError> {
    card_value(card).and_then(|v| v.replace('D', "E").parse().ok()).ok_or(FitsError::BadCard(name))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal FITS file as ZTF writes it (with the free-format SIMPLE card).
    pub(crate) fn fits_bytes(width: usize, height: usize, pixels: &[f32]) -> Vec<u8> {
        let cards = [
            "SIMPLE  =  T".to_string(),
            "BITPIX  =                  -32".to_string(),
            "NAXIS   =                    2".to_string(),
            format!("NAXIS1  = {width:>20}"),
            format!("NAXIS2  = {height:>20}"),
            "BUNIT   = 'DN      '".to_string(),
            "END".to_string(),
        ];
        let mut out: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
        out.resize(BLOCK, b' ');
        out.extend(pixels.iter().flat_map(|p| p.to_be_bytes()));
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    #[test]
    fn reads_free_format_header_and_big_endian_pixels() {
        let pixels: Vec<f32> = (0..12).map(|i| i as f32 - 3.5).collect();
        let file = fits_bytes(4, 3, &pixels);
        let image = read_image(&file).unwrap();
        assert_eq!((image.width, image.height), (4, 3));
        assert_eq!(image.pixels(), pixels);
    }

    #[test]
    fn rejects_other_bitpix_and_truncation() {
        let mut file = fits_bytes(2, 2, &[1.0; 4]);
        file[80..160].copy_from_slice(format!("{:<80}", "BITPIX  =                   16").as_bytes());
        assert_eq!(read_image(&file), Err(FitsError::UnsupportedBitpix(16)));
        let file = fits_bytes(2, 2, &[1.0; 4]);
        assert!(matches!(read_image(&file[..BLOCK + 8]), Err(FitsError::Truncated { .. })));
        assert_eq!(read_image(b"hello"), Err(FitsError::NoEnd));
    }

    #[test]
    fn axes_whose_product_overflows_are_too_large() {
        let huge = 1 << 62;
        for (width, height) in [(huge, 4), (1 << 32, 1 << 32), (MAX_PIXELS, 2)] {
            let mut file = fits_bytes(2, 2, &[1.0; 4]);
            file[240..320].copy_from_slice(format!("{:<80}", format!("NAXIS1  = {width:>20}")).as_bytes());
            file[320..400].copy_from_slice(format!("{:<80}", format!("NAXIS2  = {height:>20}")).as_bytes());
            assert_eq!(read_image(&file), Err(FitsError::TooLarge { width, height }));
        }
    }
}
