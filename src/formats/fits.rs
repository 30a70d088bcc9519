//! FITS images held in memory: the ZTF cutout (one primary HDU, BITPIX −32, two axes:
//! [`read_image`]) and files of several image HDUs, such as Rubin's cutouts (a primary image,
//! then `IMAGE` extensions: [`hdus`]). Pixel types −32, −64, 16 and 32 are read, with `BSCALE`,
//! `BZERO` and (integer types) `BLANK` applied; every pixel is given as f32. Only the cards that
//! say where the pixels are and how to scale them are interpreted; any other card can be looked
//! up by keyword ([`Hdu::card`], [`Hdu::int`], [`Hdu::float`]). The header is tolerant of ZTF's
//! `SIMPLE  =  T`, which is not in fixed format.
//! Spec: FITS Standard 4.0, sections 3–5 and 7.1.

use thiserror::Error;

const BLOCK: usize = 2880;
const CARD: usize = 80;
/// Most pixels an image may have (a ZTF cutout has 63×63 = 3,969): NAXIS1×NAXIS2 are checked
/// against this, with overflow-checked arithmetic, before any size is computed from them.
pub const MAX_PIXELS: usize = 1 << 22;
/// Most HDUs [`hdus`] reads from one file (a Rubin cutout has 3).
pub const MAX_HDUS: usize = 16;

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
    /// A pixel type other than −32 ([`read_image`]).
    #[error("BITPIX {0} is not supported (expected -32, 32-bit float)")]
    UnsupportedBitpix(i64),
    /// A pixel type [`hdus`] does not read.
    #[error("BITPIX {0} is not supported (expected -32, -64, 16 or 32)")]
    UnsupportedPixelType(i64),
    /// Not a 2-D image.
    #[error("NAXIS {0} is not supported (expected a 2-D image)")]
    NotTwoDimensional(i64),
    /// NAXIS1×NAXIS2 beyond [`MAX_PIXELS`] (or beyond any integer).
    #[error("FITS image of {width}x{height} pixels is larger than the {MAX_PIXELS}-pixel limit")]
    TooLarge { width: usize, height: usize },
    /// The data block is shorter than the axes say.
    #[error("FITS data is truncated: {got} bytes, expected {expected} for {width}x{height}")]
    Truncated { got: usize, expected: usize, width: usize, height: usize },
    /// Bytes after an HDU that do not start another one.
    #[error("FITS file has {len} bytes at offset {at} that are not an extension (no XTENSION card)")]
    NotAnExtension { at: usize, len: usize },
    /// An extension other than an image.
    #[error("FITS extension XTENSION = '{0}' is not supported (expected IMAGE)")]
    UnsupportedExtension(String),
    /// An image extension with parameters or groups.
    #[error("FITS image extension has PCOUNT = {pcount}, GCOUNT = {gcount} (expected 0 and 1)")]
    Groups { pcount: i64, gcount: i64 },
    /// More HDUs than [`MAX_HDUS`].
    #[error("FITS file has more than {MAX_HDUS} HDUs")]
    TooManyHdus,
}

/// How one pixel is stored (BITPIX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pixel {
    F32,
    F64,
    I16,
    I32,
}

impl Pixel {
    fn of(bitpix: i64) -> Option<Pixel> {
        match bitpix {
            -32 => Some(Pixel::F32),
            -64 => Some(Pixel::F64),
            16 => Some(Pixel::I16),
            32 => Some(Pixel::I32),
            _ => None,
        }
    }

    fn bytes(self) -> usize {
        match self {
            Pixel::I16 => 2,
            Pixel::F32 | Pixel::I32 => 4,
            Pixel::F64 => 8,
        }
    }
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
    pixel: Pixel,
    scale: Option<(f64, f64)>,
    /// Integer types: the stored value that means "no data" (read as NaN).
    blank: Option<i64>,
}

impl Image<'_> {
    /// The pixel at (`row`, `col`), both in range.
    #[must_use]
    pub fn pixel(&self, row: usize, col: usize) -> f32 {
        let index = row * self.width + col;
        if self.pixel == Pixel::F32 {
            let at = 4 * index;
            let value = f32::from_be_bytes([self.data[at], self.data[at + 1], self.data[at + 2], self.data[at + 3]]);
            return match self.scale {
                #[allow(clippy::cast_possible_truncation)] // scaled values are float32 by definition of BITPIX -32
                Some((bscale, bzero)) => (f64::from(value) * bscale + bzero) as f32,
                None => value,
            };
        }
        let raw = match self.pixel {
            Pixel::F64 => {
                let at = 8 * index;
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&self.data[at..at + 8]);
                f64::from_be_bytes(bytes)
            }
            Pixel::I16 | Pixel::I32 => {
                let value = if self.pixel == Pixel::I16 {
                    i64::from(i16::from_be_bytes([self.data[2 * index], self.data[2 * index + 1]]))
                } else {
                    let at = 4 * index;
                    i64::from(i32::from_be_bytes([self.data[at], self.data[at + 1], self.data[at + 2], self.data[at + 3]]))
                };
                if self.blank == Some(value) {
                    return f32::NAN;
                }
                #[allow(clippy::cast_precision_loss)] // at most 32 bits into a 53-bit mantissa: exact
                let value = value as f64;
                value
            }
            Pixel::F32 => unreachable!("handled above"),
        };
        #[allow(clippy::cast_possible_truncation)] // every pixel is given as float32
        match self.scale {
            Some((bscale, bzero)) => (raw * bscale + bzero) as f32,
            None => raw as f32,
        }
    }

    /// Pixels `col .. col + out.len()` of row `row` (all in range) into `out`, as [`Image::pixel`]
    /// reads each. The common case, unscaled float32, is one pass over the row's bytes.
    pub fn row_into(&self, row: usize, col: usize, out: &mut [f32]) {
        let at = row * self.width + col;
        if self.pixel == Pixel::F32 && self.scale.is_none() {
            let bytes = &self.data[4 * at..4 * (at + out.len())];
            for (pixel, be) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *pixel = f32::from_be_bytes([be[0], be[1], be[2], be[3]]);
            }
            return;
        }
        for (i, pixel) in out.iter_mut().enumerate() {
            *pixel = self.pixel(row, col + i);
        }
    }

    /// Every pixel, row-major.
    #[must_use]
    pub fn pixels(&self) -> Vec<f32> {
        (0..self.height).flat_map(|r| (0..self.width).map(move |c| (r, c))).map(|(r, c)| self.pixel(r, c)).collect()
    }
}

/// The cards of one header that decide where its data is and how to read it.
struct Header<'a> {
    /// Every card up to and including `END`.
    cards: &'a [u8],
    /// An extension's type (`XTENSION`), None for the primary HDU.
    xtension: Option<String>,
    bitpix: i64,
    naxis: i64,
    width: Option<usize>,
    height: Option<usize>,
    bscale: f64,
    bzero: f64,
    /// Where the data starts in the file: the header's last block ends there.
    data_start: usize,
}

impl Header<'_> {
    fn axes(&self) -> Result<(usize, usize), FitsError> {
        Ok((self.width.ok_or(FitsError::BadCard("NAXIS1"))?, self.height.ok_or(FitsError::BadCard("NAXIS2"))?))
    }

    /// The image these cards describe: sizes checked against [`MAX_PIXELS`] before the data's
    /// length is computed, then against the bytes there are.
    fn image<'a>(&self, file: &'a [u8], pixel: Pixel, blank: Option<i64>) -> Result<Image<'a>, FitsError> {
        let (width, height) = self.axes()?;
        let count = width.checked_mul(height).filter(|n| *n <= MAX_PIXELS).ok_or(FitsError::TooLarge { width, height })?;
        let bytes = count * pixel.bytes(); // at most 32 MiB after the check above
        let data = file.get(self.data_start..).unwrap_or_default();
        if data.len() < bytes {
            return Err(FitsError::Truncated { got: data.len(), expected: bytes, width, height });
        }
        let scale = (self.bscale != 1.0 || self.bzero != 0.0).then_some((self.bscale, self.bzero));
        Ok(Image { width, height, data: &data[..bytes], pixel, scale, blank })
    }
}

/// Read a FITS file held in memory: its primary HDU, which must be a 2-D float32 image.
///
/// # Errors
/// Not FITS, not a 2-D float32 image, or truncated.
pub fn read_image(file: &[u8]) -> Result<Image<'_>, FitsError> {
    let header = read_header(file, 0)?;
    header.axes()?;
    if header.bitpix != -32 {
        return Err(FitsError::UnsupportedBitpix(header.bitpix));
    }
    if header.naxis != 2 {
        return Err(FitsError::NotTwoDimensional(header.naxis));
    }
    header.image(file, Pixel::F32, None)
}

/// One HDU of a FITS file: the primary one or an `IMAGE` extension.
#[derive(Debug, Clone)]
pub struct Hdu<'a> {
    /// Its place in the file, 0 for the primary HDU.
    pub index: usize,
    /// Its `EXTNAME`; `PRIMARY` for a primary HDU without one, empty for an extension without one.
    pub name: String,
    /// Its pixel type (BITPIX).
    pub bitpix: i64,
    /// Where its data starts in the file.
    pub data_offset: usize,
    cards: &'a [u8],
    image: Option<Image<'a>>,
}

impl<'a> Hdu<'a> {
    /// Its image; None when it has no data (NAXIS = 0).
    #[must_use]
    pub fn image(&self) -> Option<&Image<'a>> {
        self.image.as_ref()
    }

    /// The value of card `keyword`, as written (a string without its quotes and trailing blanks).
    #[must_use]
    pub fn card(&self, keyword: &str) -> Option<String> {
        let card = find_card(self.cards, keyword)?;
        string_value(card).or_else(|| card_value(card))
    }

    /// The value of card `keyword` if it is an integer.
    #[must_use]
    pub fn int(&self, keyword: &str) -> Option<i64> {
        card_value(find_card(self.cards, keyword)?)?.parse().ok()
    }

    /// The value of card `keyword` if it is a number.
    #[must_use]
    pub fn float(&self, keyword: &str) -> Option<f64> {
        card_value(find_card(self.cards, keyword)?)?.replace('D', "E").parse().ok()
    }
}

/// The HDUs of a FITS file, in order: the primary one, then each `IMAGE` extension. Each image is
/// 2-D (an HDU with NAXIS = 0 has no data: its [`Hdu::image`] is None). The first error ends the
/// iteration; so do [`MAX_HDUS`] HDUs followed by another one.
#[must_use]
pub fn hdus(file: &[u8]) -> Hdus<'_> {
    Hdus { file, next: 0, index: 0, done: false }
}

/// Iterator of [`hdus`].
#[derive(Debug, Clone)]
pub struct Hdus<'a> {
    file: &'a [u8],
    next: usize,
    index: usize,
    done: bool,
}

impl<'a> Iterator for Hdus<'a> {
    type Item = Result<Hdu<'a>, FitsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || (self.index > 0 && self.next >= self.file.len()) {
            return None;
        }
        let read = if self.index == MAX_HDUS { Err(FitsError::TooManyHdus) } else { read_hdu(self.file, self.next, self.index) };
        match read {
            Ok((hdu, next)) => {
                self.next = next;
                self.index += 1;
                Some(Ok(hdu))
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// The HDU whose header starts at `start`, and where the next one starts.
fn read_hdu(file: &[u8], start: usize, index: usize) -> Result<(Hdu<'_>, usize), FitsError> {
    let header = read_header(file, start)?;
    if let Some(xtension) = &header.xtension {
        if xtension != "IMAGE" {
            return Err(FitsError::UnsupportedExtension(xtension.clone()));
        }
    }
    let lookup = |keyword| find_card(header.cards, keyword).and_then(card_value).and_then(|v| v.parse::<i64>().ok());
    if find_card(header.cards, "NAXIS").is_none() {
        return Err(FitsError::BadCard("NAXIS"));
    }
    let image = match header.naxis {
        0 => None,
        2 => {
            let pixel = Pixel::of(header.bitpix).ok_or(FitsError::UnsupportedPixelType(header.bitpix))?;
            if header.xtension.is_some() {
                let (pcount, gcount) = (lookup("PCOUNT").unwrap_or(0), lookup("GCOUNT").unwrap_or(1));
                if (pcount, gcount) != (0, 1) {
                    return Err(FitsError::Groups { pcount, gcount });
                }
            }
            let blank = matches!(pixel, Pixel::I16 | Pixel::I32).then(|| lookup("BLANK")).flatten();
            Some(header.image(file, pixel, blank)?)
        }
        naxis => return Err(FitsError::NotTwoDimensional(naxis)),
    };
    let bytes = image.as_ref().map_or(0, |image| image.data.len());
    let next = header.data_start + bytes.div_ceil(BLOCK) * BLOCK;
    let name = find_card(header.cards, "EXTNAME").and_then(string_value).unwrap_or_else(|| {
        if index == 0 {
            "PRIMARY".to_string()
        } else {
            String::new()
        }
    });
    Ok((Hdu { index, name, bitpix: header.bitpix, data_offset: header.data_start, cards: header.cards, image }, next))
}

/// The header starting at `start` (0: the primary header, else an extension's).
fn read_header(file: &[u8], start: usize) -> Result<Header<'_>, FitsError> {
    let rest = file.get(start..).unwrap_or_default();
    let mut header =
        Header { cards: &[], xtension: None, bitpix: 0, naxis: -1, width: None, height: None, bscale: 1.0, bzero: 0.0, data_start: 0 };
    if start > 0 {
        if !rest.starts_with(b"XTENSION") {
            return Err(FitsError::NotAnExtension { at: start, len: rest.len() });
        }
        header.xtension = Some(string_value(&rest[..CARD.min(rest.len())]).unwrap_or_default());
    }
    let mut saw_end = false;
    for (index, card) in rest.chunks_exact(CARD).enumerate() {
        let keyword = std::str::from_utf8(&card[..8]).unwrap_or("").trim_end();
        if start == 0 && index == 0 && (keyword != "SIMPLE" || card_value(card).as_deref() != Some("T")) {
            return Err(FitsError::NotFits);
        }
        match keyword {
            "BITPIX" => header.bitpix = int_card(card, "BITPIX")?,
            "NAXIS" => header.naxis = int_card(card, "NAXIS")?,
            "NAXIS1" => header.width = Some(axis_card(card, "NAXIS1")?),
            "NAXIS2" => header.height = Some(axis_card(card, "NAXIS2")?),
            "BSCALE" => header.bscale = float_card(card, "BSCALE")?,
            "BZERO" => header.bzero = float_card(card, "BZERO")?,
            "END" => {
                saw_end = true;
                header.cards = &rest[..(index + 1) * CARD];
                header.data_start = start + ((index + 1) * CARD).div_ceil(BLOCK) * BLOCK;
                break;
            }
            _ => {}
        }
    }
    if saw_end {
        Ok(header)
    } else {
        Err(FitsError::NoEnd)
    }
}

/// The first card of `cards` whose keyword is `keyword`.
fn find_card<'a>(cards: &'a [u8], keyword: &str) -> Option<&'a [u8]> {
    cards.chunks_exact(CARD).find(|card| std::str::from_utf8(&card[..8]).is_ok_and(|k| k.trim_end() == keyword))
}

/// The value part of a `KEYWORD = value / comment` card, trimmed; free format is accepted.
fn card_value(card: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(card).ok()?;
    let rest = text.get(8..)?.trim_start();
    let rest = rest.strip_prefix('=')?;
    let value = rest.split('/').next()?.trim();
    Some(value.to_string())
}

/// The value of a `KEYWORD = 'string' / comment` card: without its quotes (`''` is one quote)
/// and trailing blanks.
fn string_value(card: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(card).ok()?;
    let rest = text.get(8..)?.trim_start().strip_prefix('=')?.trim_start().strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
            } else {
                return Some(value.trim_end().to_string());
            }
        }
        value.push(c);
    }
    None
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

    /// A fixed-format card `KEYWORD = value`.
    pub(crate) fn card(keyword: &str, value: impl std::fmt::Display) -> String {
        format!("{keyword:<8}= {value:>20}")
    }

    /// One image HDU (the primary one when `primary`): its header with `extra` cards, then
    /// `data` (big-endian pixels), both padded to whole blocks. `width` 0 makes NAXIS = 0.
    pub(crate) fn image_hdu(primary: bool, bitpix: i64, (width, height): (usize, usize), extra: &[String], data: &[u8]) -> Vec<u8> {
        let mut cards = vec![if primary { card("SIMPLE", "T") } else { "XTENSION= 'IMAGE   '".to_string() }, card("BITPIX", bitpix)];
        if width == 0 {
            cards.push(card("NAXIS", 0));
        } else {
            cards.extend([card("NAXIS", 2), card("NAXIS1", width), card("NAXIS2", height)]);
        }
        if !primary {
            cards.extend([card("PCOUNT", 0), card("GCOUNT", 1)]);
        }
        cards.extend(extra.iter().cloned());
        cards.push("END".to_string());
        let mut out: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, b' ');
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    pub(crate) fn be_f32(pixels: &[f32]) -> Vec<u8> {
        pixels.iter().flat_map(|p| p.to_be_bytes()).collect()
    }

    pub(crate) fn be_f64(pixels: &[f64]) -> Vec<u8> {
        pixels.iter().flat_map(|p| p.to_be_bytes()).collect()
    }

    /// `extname` as an `EXTNAME` card.
    pub(crate) fn extname(name: &str) -> String {
        format!("EXTNAME = '{name:<8}'")
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

    /// `read_image` reads only the primary HDU of a multi-HDU file, as before.
    #[test]
    fn read_image_takes_the_primary_of_several() {
        let mut file = image_hdu(true, -32, (2, 1), &[], &be_f32(&[1.5, -2.0]));
        file.extend(image_hdu(false, -64, (1, 1), &[extname("PSF")], &be_f64(&[9.0])));
        assert_eq!(read_image(&file).unwrap().pixels(), [1.5, -2.0]);
    }

    /// Primary + UNCERT + PSFIMAGE as Rubin writes them: names, types, shapes, offsets, cards.
    #[test]
    fn iterates_primary_and_image_extensions() {
        let science: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let variance: Vec<f32> = (0..6).map(|i| i as f32 + 100.0).collect();
        let psf: Vec<f64> = (0..9).map(|i| f64::from(i) / 3.0).collect();
        let mut file = image_hdu(
            true,
            -32,
            (3, 2),
            &[card("CUTMINX", 739), card("CUTMINY", -4), card("CRPIX1", "15.232896835594"), "BUNIT   = 'nJy     '".into()],
            &be_f32(&science),
        );
        file.extend(image_hdu(false, -32, (3, 2), &[extname("UNCERT"), "UTYPE   = 'It''s a / variance'".into()], &be_f32(&variance)));
        file.extend(image_hdu(false, -64, (3, 3), &[extname("PSFIMAGE")], &be_f64(&psf)));
        let hdus: Vec<Hdu<'_>> = hdus(&file).collect::<Result<_, _>>().unwrap();
        let names: Vec<&str> = hdus.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["PRIMARY", "UNCERT", "PSFIMAGE"]);
        assert_eq!(hdus.iter().map(|h| h.bitpix).collect::<Vec<_>>(), [-32, -32, -64]);
        assert_eq!(hdus.iter().map(|h| h.data_offset).collect::<Vec<_>>(), [BLOCK, 3 * BLOCK, 5 * BLOCK]);
        assert_eq!(hdus[0].image().unwrap().pixels(), science);
        assert_eq!(hdus[1].image().unwrap().pixels(), variance);
        let expected_psf: Vec<f32> = psf.iter().map(|&p| p as f32).collect();
        assert_eq!(hdus[2].image().unwrap().pixels(), expected_psf);
        assert_eq!((hdus[2].image().unwrap().width, hdus[2].image().unwrap().height), (3, 3));
        assert_eq!(hdus[0].int("CUTMINX"), Some(739));
        assert_eq!(hdus[0].int("CUTMINY"), Some(-4));
        assert_eq!(hdus[0].float("CRPIX1"), Some(15.232896835594));
        assert_eq!((hdus[0].float("CRPIX2"), hdus[1].int("CUTMINX")), (None, None));
        assert_eq!(hdus[0].card("BUNIT").as_deref(), Some("nJy"));
        assert_eq!(hdus[1].card("UTYPE").as_deref(), Some("It's a / variance"));
        assert_eq!(hdus[0].int("BUNIT"), None, "a string is not an integer");
    }

    /// Integer pixels with BSCALE/BZERO and BLANK; float pixels with BSCALE; an empty primary.
    #[test]
    fn integer_types_scale_and_blank() {
        let i16s: Vec<u8> = [-3i16, 0, 7, i16::MIN].iter().flat_map(|v| v.to_be_bytes()).collect();
        let i32s: Vec<u8> = [70_000i32, -1, 5, 9].iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut file = image_hdu(true, 8, (0, 0), &[], &[]);
        file.extend(image_hdu(false, 16, (2, 2), &[card("BSCALE", 2.0), card("BZERO", 1.0), card("BLANK", i16::MIN)], &i16s));
        file.extend(image_hdu(false, 32, (2, 2), &[card("BLANK", 5)], &i32s));
        file.extend(image_hdu(false, -32, (1, 2), &[card("BSCALE", "0.5D0"), card("BZERO", -1)], &be_f32(&[4.0, f32::NAN])));
        file.extend(image_hdu(false, -64, (1, 1), &[card("BZERO", 10)], &be_f64(&[0.25])));
        let hdus: Vec<Hdu<'_>> = hdus(&file).collect::<Result<_, _>>().unwrap();
        assert_eq!(hdus.len(), 5);
        assert!(hdus[0].image().is_none(), "NAXIS = 0: no data");
        assert_eq!(hdus[1].data_offset, 2 * BLOCK, "the empty primary is one header block");
        let pixels = |i: usize| hdus[i].image().unwrap().pixels();
        let p = pixels(1);
        assert_eq!(&p[..3], [-5.0, 1.0, 15.0]);
        assert!(p[3].is_nan(), "BLANK is NaN");
        let p = pixels(2);
        assert_eq!((p[0], p[1], p[3]), (70_000.0, -1.0, 9.0));
        assert!(p[2].is_nan());
        let p = pixels(3);
        assert_eq!(p[0], 1.0);
        assert!(p[1].is_nan());
        assert_eq!(pixels(4), [10.25]);
    }

    fn first_error(file: &[u8]) -> FitsError {
        hdus(file).find_map(Result::err).expect("an error")
    }

    #[test]
    fn hostile_files_are_errors_with_clear_text() {
        let primary = image_hdu(true, -32, (2, 2), &[], &be_f32(&[1.0; 4]));
        // No END: the header runs to the end of the file.
        let no_end: Vec<u8> = primary[..80 * 5].to_vec();
        assert_eq!(first_error(&no_end), FitsError::NoEnd);
        let mut ext_no_end = primary.clone();
        ext_no_end.extend_from_slice(&image_hdu(false, -32, (2, 2), &[], &[])[..80 * 3]);
        assert_eq!(first_error(&ext_no_end), FitsError::NoEnd);
        // Truncated data, in the primary and in an extension.
        let err = first_error(&primary[..BLOCK + 12]);
        assert_eq!(err, FitsError::Truncated { got: 12, expected: 16, width: 2, height: 2 });
        assert_eq!(err.to_string(), "FITS data is truncated: 12 bytes, expected 16 for 2x2");
        let mut file = primary.clone();
        file.extend(image_hdu(false, -64, (4, 4), &[], &be_f64(&[0.0; 16])));
        assert!(matches!(first_error(&file[..file.len() - BLOCK + 100]), FitsError::Truncated { got: 100, expected: 128, .. }));
        // Absurd axes.
        let huge = image_hdu(true, -32, (1 << 62, 4), &[], &[]);
        assert_eq!(first_error(&huge), FitsError::TooLarge { width: 1 << 62, height: 4 });
        let big = image_hdu(true, -32, (10_000, 10_000), &[], &[]);
        assert_eq!(first_error(&big).to_string(), "FITS image of 10000x10000 pixels is larger than the 4194304-pixel limit");
        assert_eq!(first_error(&image_hdu(true, -32, (2, 0), &[card("NAXIS1", -3)], &[])), FitsError::BadCard("NAXIS1"));
        // Too many HDUs: 16 are read, the 17th is an error.
        let mut many = primary.clone();
        for _ in 1..20 {
            many.extend(image_hdu(false, -32, (1, 1), &[], &be_f32(&[2.0])));
        }
        let read: Vec<_> = hdus(&many).collect();
        assert_eq!(read.len(), MAX_HDUS + 1);
        assert!(read[..MAX_HDUS].iter().all(Result::is_ok));
        assert_eq!(read[MAX_HDUS].as_ref().unwrap_err().to_string(), "FITS file has more than 16 HDUs");
        // Not FITS; garbage after an HDU; a table; a 3-D image; an unknown pixel type.
        assert_eq!(first_error(&[b'x'; 2880]), FitsError::NotFits);
        assert_eq!(first_error(b"hello"), FitsError::NoEnd);
        assert_eq!(first_error(&[]), FitsError::NoEnd);
        let mut trailing = primary.clone();
        trailing.extend_from_slice(b"garbage");
        assert_eq!(first_error(&trailing).to_string(), "FITS file has 7 bytes at offset 5760 that are not an extension (no XTENSION card)");
        let mut table = primary.clone();
        table.extend(image_hdu(false, 8, (4, 1), &[], &[0; 4]));
        table[2 * BLOCK..2 * BLOCK + 80].copy_from_slice(format!("{:<80}", "XTENSION= 'BINTABLE'").as_bytes());
        assert_eq!(first_error(&table).to_string(), "FITS extension XTENSION = 'BINTABLE' is not supported (expected IMAGE)");
        let mut cube = image_hdu(true, -32, (2, 2), &[card("NAXIS3", 2)], &be_f32(&[1.0; 8]));
        cube[160..240].copy_from_slice(format!("{:<80}", card("NAXIS", 3)).as_bytes());
        assert_eq!(first_error(&cube), FitsError::NotTwoDimensional(3));
        assert_eq!(first_error(&image_hdu(true, 8, (2, 2), &[], &[0; 4])), FitsError::UnsupportedPixelType(8));
        let mut groups = primary.clone();
        groups.extend(image_hdu(false, -32, (1, 1), &[], &be_f32(&[2.0])));
        groups[BLOCK * 2 + 5 * 80..BLOCK * 2 + 6 * 80].copy_from_slice(format!("{:<80}", card("PCOUNT", 3)).as_bytes());
        assert_eq!(first_error(&groups), FitsError::Groups { pcount: 3, gcount: 1 });
    }
}
