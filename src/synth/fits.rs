//! Cutout files as ZTF ships them: a single-HDU FITS image (BITPIX -32, big-endian float32,
//! 2880-byte blocks) wrapped in gzip with a fixed header, so equal pixels give equal bytes.

use std::io::Write;

use flate2::{Compression, GzBuilder};

/// FITS files are made of blocks of this many bytes (header and data are each padded to it).
pub(crate) const BLOCK_LEN: usize = 2880;
/// Every header card is exactly this many ASCII characters.
const CARD_LEN: usize = 80;

/// The uncompressed FITS file for a `width` x `height` float32 image.
///
/// `pixels` is row-major with `height` rows of `width` values; x (NAXIS1, columns) varies fastest,
/// which is also the order FITS stores them in.
///
/// # Panics
/// If `pixels.len() != width * height` (a caller bug: the header would lie about the data).
pub(crate) fn fits_bytes(width: usize, height: usize, pixels: &[f32]) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height, "a {width}x{height} FITS image needs {} pixels", width * height);
    let data_len = padded_len(pixels.len() * 4);
    let mut out = header(width, height);
    out.reserve(data_len);
    for pixel in pixels {
        out.extend_from_slice(&pixel.to_be_bytes());
    }
    // Data padding is zero bytes (header padding is spaces), per the FITS standard.
    out.resize(out.len() + data_len - pixels.len() * 4, 0);
    out
}

/// [`fits_bytes`] compressed with gzip, header mtime 0 and no file name, so the bytes depend on
/// the pixels only.
///
/// # Panics
/// As [`fits_bytes`].
pub(crate) fn gzip_fits(width: usize, height: usize, pixels: &[f32]) -> Vec<u8> {
    let fits = fits_bytes(width, height, pixels);
    let mut encoder = GzBuilder::new()
        .mtime(0)
        // Level 1: noisy float pixels barely shrink at higher levels, and speed matters for the
        // 200,000-alert benchmark nights.
        .write(Vec::with_capacity(fits.len()), Compression::fast());
    // Writing into a Vec never fails; only the underlying writer could produce an I/O error.
    encoder.write_all(&fits).expect("gzip into a Vec cannot fail");
    encoder.finish().expect("gzip into a Vec cannot fail")
}

/// The primary header: the five mandatory cards, the pixel unit, END, padded with spaces.
fn header(width: usize, height: usize) -> Vec<u8> {
    let cards = [
        value_card("SIMPLE", "T"),
        value_card("BITPIX", "-32"),
        value_card("NAXIS", "2"),
        value_card("NAXIS1", &width.to_string()),
        value_card("NAXIS2", &height.to_string()),
        string_card("BUNIT", "DN"),
        pad_card("END".to_string()),
    ];
    let mut out = cards.concat().into_bytes();
    out.resize(padded_len(out.len()), b' ');
    out
}

/// A fixed-format card with a logical or integer value, right-justified to column 30.
fn value_card(keyword: &str, value: &str) -> String {
    pad_card(format!("{keyword:<8}= {value:>20}"))
}

/// A fixed-format card with a string value: quoted, padded inside the quotes to 8 characters.
fn string_card(keyword: &str, value: &str) -> String {
    pad_card(format!("{keyword:<8}= '{value:<8}'"))
}

fn pad_card(text: String) -> String {
    debug_assert!(text.len() <= CARD_LEN && text.is_ascii(), "bad card {text:?}");
    format!("{text:<CARD_LEN$}")
}

/// `len` rounded up to a whole number of FITS blocks.
fn padded_len(len: usize) -> usize {
    len.div_ceil(BLOCK_LEN) * BLOCK_LEN
}

/// Test helper: (NAXIS1, NAXIS2, pixels) of a gzip'd FITS file written by [`gzip_fits`].
#[cfg(test)]
pub(crate) fn read_gzip_fits(gz: &[u8]) -> (usize, usize, Vec<f32>) {
    use std::io::Read;
    let mut fits = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut fits).expect("valid gzip");
    let header_end = fits
        .chunks(CARD_LEN)
        .position(|card| card.starts_with(b"END "))
        .map(|index| padded_len((index + 1) * CARD_LEN))
        .expect("an END card");
    let int_card = |keyword: &str| -> usize {
        fits[..header_end]
            .chunks(CARD_LEN)
            .find(|card| card.starts_with(format!("{keyword:<8}=").as_bytes()))
            .and_then(|card| std::str::from_utf8(&card[10..30]).ok())
            .and_then(|value| value.trim().parse().ok())
            .expect("integer card")
    };
    let (width, height) = (int_card("NAXIS1"), int_card("NAXIS2"));
    let pixels =
        fits[header_end..header_end + width * height * 4].chunks_exact(4).map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]])).collect();
    (width, height, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_cards_are_exactly_ztfs() {
        let fits = fits_bytes(44, 63, &vec![0.0; 44 * 63]);
        let cards: Vec<&str> = fits[..7 * CARD_LEN].chunks(CARD_LEN).map(|card| std::str::from_utf8(card).expect("ASCII header")).collect();
        assert_eq!(cards[0], format!("{:<80}", "SIMPLE  =                    T"));
        assert_eq!(cards[1], format!("{:<80}", "BITPIX  =                  -32"));
        assert_eq!(cards[2], format!("{:<80}", "NAXIS   =                    2"));
        assert_eq!(cards[3], format!("{:<80}", "NAXIS1  =                   44"));
        assert_eq!(cards[4], format!("{:<80}", "NAXIS2  =                   63"));
        assert_eq!(cards[5], format!("{:<80}", "BUNIT   = 'DN      '"));
        assert_eq!(cards[6], format!("{:<80}", "END"));
        assert!(fits[7 * CARD_LEN..BLOCK_LEN].iter().all(|&b| b == b' '));
    }

    #[test]
    fn data_is_big_endian_row_major_and_zero_padded() {
        let (width, height) = (3, 2);
        let pixels = [1.0, 2.0, 3.0, 4.0, f32::NAN, -6.5];
        let fits = fits_bytes(width, height, &pixels);
        assert_eq!(fits.len(), 2 * BLOCK_LEN);
        let data = &fits[BLOCK_LEN..];
        assert_eq!(&data[..4], &1.0f32.to_be_bytes());
        assert_eq!(&data[20..24], &(-6.5f32).to_be_bytes());
        assert!(f32::from_be_bytes([data[16], data[17], data[18], data[19]]).is_nan());
        assert!(data[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn full_cutout_fills_two_data_blocks_exactly_padded() {
        let fits = fits_bytes(63, 63, &vec![1.5; 63 * 63]);
        assert_eq!(fits.len() % BLOCK_LEN, 0);
        assert_eq!(fits.len(), BLOCK_LEN + padded_len(63 * 63 * 4));
    }

    #[test]
    fn gzip_is_deterministic_and_round_trips() {
        let pixels: Vec<f32> = (0..63 * 63).map(|i| i as f32 * 0.25).collect();
        let gz = gzip_fits(63, 63, &pixels);
        assert_eq!(gz, gzip_fits(63, 63, &pixels));
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "mtime 0");
        let (width, height, back) = read_gzip_fits(&gz);
        assert_eq!((width, height), (63, 63));
        assert_eq!(back, pixels);
    }

    #[test]
    #[should_panic(expected = "needs 12 pixels")]
    fn wrong_pixel_count_is_refused() {
        fits_bytes(3, 4, &[0.0; 11]);
    }
}
