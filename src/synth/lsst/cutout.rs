//! Rubin cutouts: plain (uncompressed) FITS of three HDUs, as the alert stream ships them.
//! `PRIMARY` is the image in nJy (BITPIX −32) with a linear WCS without CTYPE (`WCSAXES`,
//! `CRPIX1/2`, `PC1_1 … PC2_2`, `CDELT1/2 = 1.0`, `CRVAL1/2` = the source's RA/Dec) and the
//! cutout's origin in the detector image (`CUTMINX`/`CUTMINY`); `UNCERT` its variance (float32,
//! `UTYPE = 'VarianceUncertainty'`); `PSFIMAGE` a normalised Gaussian PSF (float64).
//!
//! The source at detector position (x, y) lies at 0-based pixel (x − CUTMINX − 1, y − CUTMINY − 1)
//! = CRPIX − 1, within half a pixel of the cutout's middle.

use crate::rng::Rng;

const BLOCK_LEN: usize = 2880;
const CARD_LEN: usize = 80;
/// Degrees per pixel (0.2″).
const PIXEL_SCALE: f64 = 0.2 / 3600.0;

/// What a cutout shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Science,
    Template,
    Difference,
}

/// The source and image parameters shared by the three cutouts of an alert.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scene {
    pub(crate) side: usize,
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) ra: f64,
    pub(crate) dec: f64,
    /// Flux of the transient (nJy; the difference image's source).
    pub(crate) psf_flux: f64,
    /// Flux of the static source under it (nJy; in science and template).
    pub(crate) host_flux: f64,
    /// PSF sigma of the science (and difference) image, pixels.
    pub(crate) seeing: f64,
    /// PSF sigma of the template, pixels.
    pub(crate) template_seeing: f64,
    /// Side of the template's PSF image (39, 41, 49, 77 in real alerts).
    pub(crate) template_psf_side: usize,
    /// Position angle of the focal plane (deg).
    pub(crate) rotation: f64,
    /// Whether the header has ROTPA (10.0 on).
    pub(crate) rotpa: bool,
}

impl Scene {
    /// (CUTMINX, CUTMINY): the origin that puts (x, y) nearest the middle of the cutout.
    pub(crate) fn origin(&self) -> (i64, i64) {
        let half = (self.side as f64 - 1.0) / 2.0;
        ((self.x - 1.0 - half).round() as i64, (self.y - 1.0 - half).round() as i64)
    }

    /// The source's 0-based (column, row) in the cutout.
    pub(crate) fn centre(&self) -> (f64, f64) {
        let (cutmin_x, cutmin_y) = self.origin();
        (self.x - cutmin_x as f64 - 1.0, self.y - cutmin_y as f64 - 1.0)
    }
}

/// The FITS file of one cutout; `key` seeds its noise.
pub(crate) fn cutout(scene: &Scene, channel: Channel, key: &[u64]) -> Vec<u8> {
    let mut rng = Rng::from_keys(key);
    let side = scene.side;
    let (cx, cy) = scene.centre();
    let (sky_variance, host, point, sigma) = match channel {
        Channel::Science => (rng.uniform(450.0, 900.0), scene.host_flux, scene.psf_flux, scene.seeing),
        Channel::Template => (rng.uniform(80.0, 250.0), scene.host_flux, 0.0, scene.template_seeing),
        Channel::Difference => (rng.uniform(550.0, 1150.0), 0.0, scene.psf_flux, scene.seeing),
    };
    let background = if channel == Channel::Difference { 0.0 } else { rng.uniform(0.0, 150.0) };
    let host_sigma = sigma * 2.0;
    let mut image = Vec::with_capacity(side * side);
    let mut variance = Vec::with_capacity(side * side);
    for row in 0..side {
        for col in 0..side {
            let r2 = (col as f64 - cx).powi(2) + (row as f64 - cy).powi(2);
            let signal = point * gaussian(r2, sigma) + host * gaussian(r2, host_sigma);
            // Poisson-like: nJy per photo-electron of order 1 here, so flux adds to the variance.
            let var = sky_variance + 0.2 * (signal + background).abs();
            image.push((background + signal + var.sqrt() * rng.normal()) as f32);
            variance.push(var as f32);
        }
    }
    let psf_side = if channel == Channel::Template { scene.template_psf_side } else { 41 };
    let psf = psf_image(psf_side, sigma);

    let mut out = Vec::with_capacity(3 * BLOCK_LEN + 2 * padded(side * side * 4) + padded(psf_side * psf_side * 8));
    primary_header(scene, &mut out);
    for value in &image {
        out.extend_from_slice(&value.to_be_bytes());
    }
    pad_data(&mut out);
    extension_header(-32, side, &[string_card("UTYPE", "VarianceUncertainty"), string_card("EXTNAME", "UNCERT")], &mut out);
    for value in &variance {
        out.extend_from_slice(&value.to_be_bytes());
    }
    pad_data(&mut out);
    extension_header(-64, psf_side, &[string_card("EXTNAME", "PSFIMAGE")], &mut out);
    for value in &psf {
        out.extend_from_slice(&value.to_be_bytes());
    }
    pad_data(&mut out);
    out
}

/// Unit-flux Gaussian at squared distance `r2`.
fn gaussian(r2: f64, sigma: f64) -> f64 {
    (-r2 / (2.0 * sigma * sigma)).exp() / (2.0 * std::f64::consts::PI * sigma * sigma)
}

/// A `side`×`side` Gaussian PSF centred on the middle pixel, summing to 1.
fn psf_image(side: usize, sigma: f64) -> Vec<f64> {
    let middle = (side as f64 - 1.0) / 2.0;
    let mut psf: Vec<f64> =
        (0..side * side).map(|i| gaussian(((i % side) as f64 - middle).powi(2) + ((i / side) as f64 - middle).powi(2), sigma)).collect();
    let sum: f64 = psf.iter().sum();
    psf.iter_mut().for_each(|value| *value /= sum);
    psf
}

fn primary_header(scene: &Scene, out: &mut Vec<u8>) {
    let (cutmin_x, cutmin_y) = scene.origin();
    let (cx, cy) = scene.centre();
    let (sin, cos) = scene.rotation.to_radians().sin_cos();
    let mut cards = vec![
        value_card("SIMPLE", "T", "conforms to FITS standard"),
        value_card("BITPIX", "-32", "array data type"),
        value_card("NAXIS", "2", "number of array dimensions"),
        value_card("NAXIS1", &scene.side.to_string(), ""),
        value_card("NAXIS2", &scene.side.to_string(), ""),
        value_card("EXTEND", "T", ""),
        value_card("CUTMINX", &cutmin_x.to_string(), ""),
        value_card("CUTMINY", &cutmin_y.to_string(), ""),
    ];
    if scene.rotpa {
        cards.push(value_card("ROTPA", &float(scene.rotation), "Pos angle in deg of focal plane +Y wrt North"));
    }
    cards.extend([
        string_card("BUNIT", "nJy"),
        value_card("WCSAXES", "2", "Number of coordinate axes"),
        value_card("CRPIX1", &float(cx + 1.0), "Pixel coordinate of reference point"),
        value_card("CRPIX2", &float(cy + 1.0), "Pixel coordinate of reference point"),
        value_card("PC1_1", &float(-PIXEL_SCALE * cos), "Coordinate transformation matrix element"),
        value_card("PC1_2", &float(-PIXEL_SCALE * sin), "Coordinate transformation matrix element"),
        value_card("PC2_1", &float(-PIXEL_SCALE * sin), "Coordinate transformation matrix element"),
        value_card("PC2_2", &float(PIXEL_SCALE * cos), "Coordinate transformation matrix element"),
        value_card("CDELT1", "1.0", "Coordinate increment at reference point"),
        value_card("CDELT2", "1.0", "Coordinate increment at reference point"),
        value_card("CRVAL1", &float(scene.ra), "Coordinate value at reference point"),
        value_card("CRVAL2", &float(scene.dec), "Coordinate value at reference point"),
        value_card("LATPOLE", "90.0", "[deg] Native latitude of celestial pole"),
        value_card("MJDREF", "0.0", "[d] MJD of fiducial time"),
    ]);
    end_header(&cards, out);
}

fn extension_header(bitpix: i32, side: usize, extra: &[String], out: &mut Vec<u8>) {
    let mut cards = vec![
        string_card("XTENSION", "IMAGE"),
        value_card("BITPIX", &bitpix.to_string(), "array data type"),
        value_card("NAXIS", "2", "number of array dimensions"),
        value_card("NAXIS1", &side.to_string(), ""),
        value_card("NAXIS2", &side.to_string(), ""),
        value_card("PCOUNT", "0", "number of parameters"),
        value_card("GCOUNT", "1", "number of groups"),
    ];
    cards.extend_from_slice(extra);
    end_header(&cards, out);
}

/// Appends the cards, END, and spaces up to the end of the block.
fn end_header(cards: &[String], out: &mut Vec<u8>) {
    for card in cards {
        out.extend_from_slice(card.as_bytes());
    }
    out.extend_from_slice(format!("{:<CARD_LEN$}", "END").as_bytes());
    let len = padded(out.len());
    out.resize(len, b' ');
}

/// Zero bytes up to the end of the block (data padding).
fn pad_data(out: &mut Vec<u8>) {
    let len = padded(out.len());
    out.resize(len, 0);
}

fn padded(len: usize) -> usize {
    len.div_ceil(BLOCK_LEN) * BLOCK_LEN
}

/// A fixed-format card: value right-justified to column 30, then an optional comment.
fn value_card(keyword: &str, value: &str, comment: &str) -> String {
    let text = if comment.is_empty() { format!("{keyword:<8}= {value:>20}") } else { format!("{keyword:<8}= {value:>20} / {comment}") };
    pad_card(text)
}

/// A fixed-format string card: quoted, padded inside the quotes to 8 characters.
fn string_card(keyword: &str, value: &str) -> String {
    pad_card(format!("{keyword:<8}= '{value:<8}'"))
}

fn pad_card(mut text: String) -> String {
    debug_assert!(text.is_ascii(), "bad card {text:?}");
    text.truncate(CARD_LEN);
    format!("{text:<CARD_LEN$}")
}

/// A FITS real: mantissa with 13 decimals and a signed two-digit exponent (`-4.8390638600464E-05`).
fn float(value: f64) -> String {
    let text = format!("{value:.13E}");
    let (mantissa, exponent) = text.split_once('E').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    format!("{mantissa}E{exponent:+03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reals_are_fits_reals() {
        assert_eq!(float(-4.8390638600464e-5), "-4.8390638600464E-05");
        assert_eq!(float(15.232896835594), "1.5232896835594E+01");
        assert_eq!(float(0.0), "0.0000000000000E+00");
    }

    #[test]
    fn origin_centres_the_source() {
        let scene = Scene {
            side: 30,
            x: 754.233,
            y: 3346.291,
            ra: 55.75,
            dec: -32.27,
            psf_flux: 1000.0,
            host_flux: 0.0,
            seeing: 1.7,
            template_seeing: 1.4,
            template_psf_side: 41,
            rotation: 0.0,
            rotpa: false,
        };
        // As in the real boom alert 7912941781254298.
        assert_eq!(scene.origin(), (739, 3331));
        let (cx, cy) = scene.centre();
        assert!((cx - 14.233).abs() < 1e-9 && (cy - 14.291).abs() < 1e-9);
    }
}
