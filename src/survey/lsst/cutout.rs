//! From an alert's three Rubin cutouts to its stamps and variance planes (science, template,
//! difference), and access to each cutout's PSF image.
//!
//! A Rubin cutout is plain FITS of three HDUs: `PRIMARY` (the image, nJy), `UNCERT` (its
//! variance, same shape) and `PSFIMAGE` (the PSF model, its own size); 30×30 in the alerts of
//! 2025–26, square 30–102 px in general. The primary header has `CUTMINX`/`CUTMINY`, the
//! cutout's origin in the detector image, and `CRPIX1/2`. [`cut`] reads the first two HDUs (what
//! follows `UNCERT` is not read) and cuts an S×S window (S = [`StampSpec::size`], any S ≥ 1)
//! around the source from each.
//!
//! **Where the source is.** The source at detector position (`diaSource.x`, `diaSource.y`) is at
//! 0-based pixel (`x − CUTMINX − 1`, `y − CUTMINY − 1`) (column, row) of the cutout, which equals
//! `CRPIX − 1`. Evidence, from the 21 real alerts of the shared set (boom 9.0 and Fink 10.0):
//! * in every one of the 63 cutouts, `x − CUTMINX − 1` = `CRPIX1 − 1` and `y − CUTMINY − 1` =
//!   `CRPIX2 − 1` to 0.001 px (the rest is x and y being float32); e.g. boom 7912941781254298:
//!   x = 754.233, CUTMINX = 739, CRPIX1 = 15.233 → 14.233; y = 3346.291, CUTMINY = 3331,
//!   CRPIX2 = 15.291 → 14.291. The test `real_cutouts_follow_the_rule` checks this.
//! * the difference image peaks there. A Gaussian-weighted (σ 1.5 px) centroid of the
//!   difference image (sign of psfFlux) lies 0.03 px from it in 169813007065939974 (S/N 124:
//!   centroid 14.24, 15.00 against 14.235, 14.975), 0.10 px in 169813006395375696 (S/N 24.5:
//!   14.30, 14.53 against 14.232, 14.599) and 0.44 px in 169813006247002128 (S/N 11.4), against
//!   1.39, 1.42 and 1.70 px from the position one pixel further (`x − CUTMINX`). Over all 21 it
//!   is nearer to the rule's position in 20 (the exception, 169813007065940116, has S/N −0.6).
//!   In the boom alert (S/N −5.0) it is 0.91 px away (1.74 for `x − CUTMINX`).
//!
//! So the cutouts are centred on the source: `CRPIX − 1` lies in [14, 15) in all of them.
//!
//! **The window.** It is the S×S block of pixels whose middle is nearest the source: along each
//! axis it starts at `floor(c − (S − 1)/2 + 0.5)` for source position `c` (ties to the higher
//! start). For odd S the source's pixel (`round(c)`) is the centre pixel, index (S − 1)/2; for even
//! S the source lies within half a pixel of the point between pixels S/2 − 1 and S/2, in one or
//! the other. On the real 30×30 cutouts, S = 30 gives the cutout itself (start 0, nothing
//! padded) and S = 31 one padded row and one padded column. (Starting at `round(c) − S/2` would
//! have padded one row and column at S = 30 and dropped the cutout's last ones.)
//!
//! If x or y is not finite, `CUTMINX`/`CUTMINY` is missing, or the position falls outside the
//! cutout, the source is taken at `CRPIX − 1`, else at the image's centre, and
//! [`FLAG_CENTRE_GUESSED`] is set. The three cutouts are placed each by its own header, so
//! cutouts of different origins are each cut around the source.
//!
//! Window pixels outside the cutout hold the NaN policy's fill ([`StampSpec::fill`], flag
//! [`FLAG_PADDED`]); NaN pixels are kept under `keep_nan`, else filled, and flagged
//! ([`FLAG_HAD_NAN`]), in the stamps and in the variance planes. Rubin has no masked-pixel value.
//! A null cutout fills its channel's stamp and variance ([`FLAG_NO_CUTOUT`]); that is not a
//! reject (Rubin's fake alerts have three). A cutout that cannot be read, or that is larger
//! than [`MAX_SIDE`] on a side, rejects the alert as [`RejectKind::BadCutout`].

use thiserror::Error;

use crate::formats::fits::{self, FitsError, Image};
use crate::survey::{Psfs, Reject, RejectKind, StampSpec};

/// The alert fields of the three channels, in stamp order.
pub const CHANNELS: [&str; 3] = ["cutoutScience", "cutoutTemplate", "cutoutDifference"];
/// Largest cutout side read (Rubin's are 30–102 px).
pub const MAX_SIDE: usize = 1024;

/// `stamp_flags` bit: part of a window lay outside its cutout and holds the fill.
pub const FLAG_PADDED: u8 = 1;
/// `stamp_flags` bit: a stored stamp or variance pixel was NaN in the cutout.
pub const FLAG_HAD_NAN: u8 = 2;
/// `stamp_flags` bit: a cutout was cut around `CRPIX` or its centre, not the alert's position.
pub const FLAG_CENTRE_GUESSED: u8 = 4;
/// `stamp_flags` bit: a cutout was null; its channel holds the fill.
pub const FLAG_NO_CUTOUT: u8 = 8;
/// `stamp_flags` bit: a cutout had no `UNCERT` HDU; its variance plane holds the fill.
pub const FLAG_NO_VARIANCE: u8 = 16;
/// Every `stamp_flags` value with its short name, in order of value.
pub const STAMP_FLAGS: [(u8, &str); 5] = [
    (FLAG_PADDED, "padded"),
    (FLAG_HAD_NAN, "had_nan"),
    (FLAG_CENTRE_GUESSED, "centre_guessed"),
    (FLAG_NO_CUTOUT, "no_cutout"),
    (FLAG_NO_VARIANCE, "no_variance"),
];
/// Every `stamp_flags` value with a sentence saying what it means, for the store's attributes.
pub const STAMP_FLAG_DOCS: [(u8, &str); 5] = [
    (FLAG_PADDED, "part of a stamp's window lay outside its cutout; those pixels hold the fill (0, or NaN with --keep-nan)"),
    (FLAG_HAD_NAN, "a stamp or variance pixel was NaN in the cutout; it holds the fill (NaN with --keep-nan)"),
    (
        FLAG_CENTRE_GUESSED,
        "a stamp was centred on its cutout's CRPIX or middle, not on diaSource x/y (x or y not finite, CUTMINX/CUTMINY missing, or the position outside the cutout)",
    ),
    (FLAG_NO_CUTOUT, "a cutout was null; its stamp and variance hold the fill"),
    (FLAG_NO_VARIANCE, "a cutout had no UNCERT image; its variance holds the fill"),
];

/// An alert's stamps, as [`cut`] gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// 3·S·S pixels: science, template, difference, each S rows of S, row-major (nJy).
    pub stamps: Vec<f32>,
    /// 3·S·S pixels: the variance of each stamp's pixels (nJy²), in the same order.
    pub variance: Vec<f32>,
    /// `FLAG_*` bits.
    pub flags: u8,
}

/// Why one cutout could not be cut.
#[derive(Debug, Error, Clone, PartialEq)]
enum CutoutError {
    #[error("HDU {hdu}: {error}")]
    Fits { hdu: usize, error: FitsError },
    #[error("FITS primary HDU has no image")]
    NoImage,
    #[error("FITS image of {width}x{height} pixels is larger than the {MAX_SIDE}x{MAX_SIDE} cutout limit")]
    TooLarge { width: usize, height: usize },
    #[error("UNCERT image is {0}x{1} pixels, the image {2}x{3}")]
    VarianceShape(usize, usize, usize, usize),
}

/// One cutout's image, its variance if it has one, and where the source is in it.
struct Planes<'a> {
    image: Image<'a>,
    variance: Option<Image<'a>>,
    /// Source position (column, row), 0-based.
    centre: (f64, f64),
    guessed: bool,
}

/// Cut the stamps of one alert from its three cutouts (science, template, difference; None for
/// a null one) around the source at detector position (`x`, `y`) (`diaSource.x`, `.y`).
///
/// # Errors
/// A [`RejectKind::BadCutout`] naming the channel and why: not FITS, damaged, not a 2-D image,
/// larger than [`MAX_SIDE`], or an `UNCERT` image of another shape.
pub fn cut(cutouts: [Option<&[u8]>; 3], x: f64, y: f64, spec: StampSpec) -> Result<Cut, Reject> {
    let n = spec.pixels();
    let mut cut = Cut { stamps: vec![spec.fill(); 3 * n], variance: vec![spec.fill(); 3 * n], flags: 0 };
    for (channel, bytes) in cutouts.into_iter().enumerate() {
        let Some(bytes) = bytes else {
            cut.flags |= FLAG_NO_CUTOUT;
            continue;
        };
        let planes = read(bytes, x, y).map_err(|e| Reject::new(RejectKind::BadCutout, format!("{}: {e}", CHANNELS[channel])))?;
        if planes.guessed {
            cut.flags |= FLAG_CENTRE_GUESSED;
        }
        let range = channel * n..(channel + 1) * n;
        cut.flags |= crop(&planes.image, planes.centre, spec, &mut cut.stamps[range.clone()]);
        match &planes.variance {
            Some(variance) => cut.flags |= crop(variance, planes.centre, spec, &mut cut.variance[range]),
            None => cut.flags |= FLAG_NO_VARIANCE,
        }
    }
    Ok(cut)
}

/// The PSF image of a cutout (its `PSFIMAGE` HDU) as (width, height, pixels row-major), or None
/// if it has none.
///
/// # Errors
/// The cutout is not FITS or is damaged up to its `PSFIMAGE` HDU.
pub fn psf(cutout: &[u8]) -> Result<Option<(usize, usize, Vec<f32>)>, FitsError> {
    for hdu in fits::hdus(cutout) {
        let hdu = hdu?;
        if hdu.name == "PSFIMAGE" {
            return Ok(hdu.image().map(|image| (image.width, image.height, image.pixels())));
        }
    }
    Ok(None)
}

/// The PSF images of an alert's three cutouts (None for a null one), each whole at its own size.
///
/// # Errors
/// A [`RejectKind::BadCutout`] naming the channel: a cutout damaged up to its `PSFIMAGE`, or a
/// PSF image larger than [`MAX_SIDE`] on a side (as a cutout's image is).
pub fn psfs(cutouts: [Option<&[u8]>; 3]) -> Result<Psfs, Reject> {
    let mut psfs = Psfs::default();
    for (channel, bytes) in cutouts.into_iter().enumerate() {
        let bad = |reason: String| Reject::new(RejectKind::BadCutout, format!("{} PSFIMAGE: {reason}", CHANNELS[channel]));
        let Some((width, height, pixels)) = bytes.map(psf).transpose().map_err(|e| bad(e.to_string()))?.flatten() else { continue };
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(bad(format!("{width}x{height} pixels, larger than the {MAX_SIDE}x{MAX_SIDE} cutout limit")));
        }
        psfs.pixels.extend_from_slice(&pixels);
        psfs.shapes[channel] = Some((height, width));
    }
    Ok(psfs)
}

fn read(bytes: &[u8], x: f64, y: f64) -> Result<Planes<'_>, CutoutError> {
    let mut hdus = fits::hdus(bytes).enumerate().map(|(hdu, read)| read.map_err(|error| CutoutError::Fits { hdu, error }));
    let primary = hdus.next().ok_or(CutoutError::NoImage)??;
    let image = primary.image().ok_or(CutoutError::NoImage)?.clone();
    let (width, height) = (image.width, image.height);
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(CutoutError::TooLarge { width, height });
    }
    let mut variance = None;
    for hdu in hdus {
        let hdu = hdu?;
        if hdu.name == "UNCERT" {
            variance = hdu.image().cloned();
            break;
        }
    }
    if let Some(v) = &variance {
        if (v.width, v.height) != (width, height) {
            return Err(CutoutError::VarianceShape(v.width, v.height, width, height));
        }
    }
    let inside = |(c, r): (f64, f64)| c.is_finite() && r.is_finite() && in_extent(c, width) && in_extent(r, height);
    #[allow(clippy::cast_precision_loss)] // detector pixel offsets, far below 2^52
    let by_position = match (primary.int("CUTMINX"), primary.int("CUTMINY")) {
        (Some(min_x), Some(min_y)) => Some((x - min_x as f64 - 1.0, y - min_y as f64 - 1.0)),
        _ => None,
    };
    let by_crpix = match (primary.float("CRPIX1"), primary.float("CRPIX2")) {
        (Some(c1), Some(c2)) => Some((c1 - 1.0, c2 - 1.0)),
        _ => None,
    };
    #[allow(clippy::cast_precision_loss)] // at most MAX_SIDE
    let middle = ((width as f64 - 1.0) / 2.0, (height as f64 - 1.0) / 2.0);
    let (centre, guessed) = match (by_position.filter(|p| inside(*p)), by_crpix.filter(|p| inside(*p))) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (p, true),
        (None, None) => (middle, true),
    };
    Ok(Planes { image, variance, centre, guessed })
}

/// Whether position `c` lies on one of `extent` pixels (pixel i covers [i − 0.5, i + 0.5)).
fn in_extent(c: f64, extent: usize) -> bool {
    #[allow(clippy::cast_precision_loss)] // at most MAX_SIDE
    let end = extent as f64 - 0.5;
    (-0.5..end).contains(&c)
}

/// Where a window of `size` pixels around position `c` starts: its middle nearest `c`.
fn window_start(c: f64, size: usize) -> i64 {
    #[allow(clippy::cast_precision_loss)] // a stamp side
    let half = (size as f64 - 1.0) / 2.0;
    #[allow(clippy::cast_possible_truncation)] // c lies on the cutout: small
    let start = (c - half + 0.5).floor() as i64;
    start
}

/// Copy the window of `image` around `centre` into `out` (S·S pixels); returns its flags.
fn crop(image: &Image<'_>, centre: (f64, f64), spec: StampSpec, out: &mut [f32]) -> u8 {
    let size = spec.size;
    let (col0, row0) = (window_start(centre.0, size), window_start(centre.1, size));
    let on = |start: i64, i: usize, extent: usize| {
        i64::try_from(i).ok().and_then(|i| usize::try_from(start.checked_add(i)?).ok()).filter(|at| *at < extent)
    };
    let mut flags = 0;
    for (r, out_row) in out.chunks_exact_mut(size).enumerate() {
        let row = on(row0, r, image.height);
        for (c, pixel) in out_row.iter_mut().enumerate() {
            *pixel = match (row, on(col0, c, image.width)) {
                (Some(row), Some(col)) => {
                    let value = image.pixel(row, col);
                    if value.is_nan() {
                        flags |= FLAG_HAD_NAN;
                        spec.fill()
                    } else {
                        value
                    }
                }
                _ => {
                    flags |= FLAG_PADDED;
                    spec.fill()
                }
            };
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::fits::tests::{be_f32, be_f64, card, extname, image_hdu};

    const SPEC: StampSpec = StampSpec { size: 5, keep_nan: false, keep_masked: false };

    fn spec(size: usize) -> StampSpec {
        StampSpec { size, ..SPEC }
    }

    /// A `side`×`side` cutout whose pixel (row, col) holds `row·1000 + col + base` and whose
    /// variance holds the same plus 0.5, with origin (`min_x`, `min_y`) and `CRPIX` 15.5.
    fn cutout(side: usize, base: f32, origin: Option<(i64, i64)>) -> Vec<u8> {
        let image: Vec<f32> = (0..side * side).map(|i| ((i / side) * 1000 + i % side) as f32 + base).collect();
        let variance: Vec<f32> = image.iter().map(|p| p + 0.5).collect();
        let mut cards = vec![card("CRPIX1", 15.5), card("CRPIX2", 15.5)];
        if let Some((min_x, min_y)) = origin {
            cards.extend([card("CUTMINX", min_x), card("CUTMINY", min_y)]);
        }
        let mut file = image_hdu(true, -32, (side, side), &cards, &be_f32(&image));
        file.extend(image_hdu(false, -32, (side, side), &[extname("UNCERT")], &be_f32(&variance)));
        file.extend(image_hdu(false, -64, (3, 3), &[extname("PSFIMAGE")], &be_f64(&[0.5; 9])));
        file
    }

    /// The value `cutout` puts at (row, col).
    fn at(row: usize, col: usize) -> f32 {
        (row * 1000 + col) as f32
    }

    fn plane(cut: &Cut, channel: usize, size: usize) -> &[f32] {
        &cut.stamps[channel * size * size..(channel + 1) * size * size]
    }

    #[test]
    fn window_inside_is_centred_on_the_source() {
        let file = cutout(30, 0.0, Some((100, 200)));
        // Source at 0-based (x − 100 − 1, y − 200 − 1) = (12.2, 17.7): pixel (col 12, row 18).
        let cut = cut([Some(&file), Some(&file), Some(&file)], 113.2, 218.7, SPEC).unwrap();
        assert_eq!(cut.flags, 0);
        for channel in 0..3 {
            let stamp = plane(&cut, channel, 5);
            assert_eq!(stamp[0], at(16, 10), "odd S: the source's pixel is the centre");
            assert_eq!(stamp[12], at(18, 12));
            assert_eq!(stamp[24], at(20, 14));
            assert_eq!(cut.variance[channel * 25 + 12], at(18, 12) + 0.5);
        }
        // Even S = 4: the window whose middle is nearest. Column 12.2 → columns 11..15 (middle 12.5;
        // the source's pixel 12 is window column 1 = S/2 − 1); row 17.7 → rows 16..20.
        let cut = super::cut([Some(&file), None, None], 113.2, 218.7, spec(4)).unwrap();
        assert_eq!(cut.flags, FLAG_NO_CUTOUT);
        assert_eq!((cut.stamps[0], cut.stamps[15]), (at(16, 11), at(19, 14)));
        // Column 12.6 → columns 11..15 too (the source's pixel 13 is window column 2 = S/2); row
        // 16.9 → rows 15..19.
        let cut = super::cut([Some(&file), None, None], 113.6, 217.9, spec(4)).unwrap();
        assert_eq!((cut.stamps[0], cut.stamps[15]), (at(15, 11), at(18, 14)));
        // S = 1 is the source's pixel; S = 2 its block.
        let cut = super::cut([None, None, Some(&file)], 113.2, 218.7, spec(1)).unwrap();
        assert_eq!(cut.stamps[2], at(18, 12));
        let cut = super::cut([None, None, Some(&file)], 113.2, 218.7, spec(2)).unwrap();
        assert_eq!(&cut.stamps[8..], [at(17, 12), at(17, 13), at(18, 12), at(18, 13)]);
    }

    #[test]
    fn windows_clipped_at_each_edge_are_padded_and_flagged() {
        let file = cutout(30, 1.0, Some((0, 0)));
        // (x, y) → source pixel (x − 1, y − 1): a 5×5 window around each corner pixel, stamp
        // pixel (row, col) → the cutout's (row, col), or None where padded.
        type Expect = [((usize, usize), Option<(usize, usize)>); 4];
        let corners: [(f64, f64, Expect); 4] = [
            (1.0, 1.0, [((2, 2), Some((0, 0))), ((4, 4), Some((2, 2))), ((1, 2), None), ((2, 1), None)]),
            (30.0, 1.0, [((2, 2), Some((0, 29))), ((2, 0), Some((0, 27))), ((2, 3), None), ((4, 4), None)]),
            (1.0, 30.0, [((2, 2), Some((29, 0))), ((0, 2), Some((27, 0))), ((3, 2), None), ((0, 0), None)]),
            (30.0, 30.0, [((2, 2), Some((29, 29))), ((0, 0), Some((27, 27))), ((3, 3), None), ((2, 4), None)]),
        ];
        for (x, y, expect) in corners {
            let cut = cut([Some(&file), None, None], x, y, SPEC).unwrap();
            assert_eq!(cut.flags, FLAG_PADDED | FLAG_NO_CUTOUT, "at ({x}, {y})");
            for ((r, c), source) in expect {
                let expected = source.map_or(0.0, |(row, col)| at(row, col) + 1.0);
                assert_eq!(cut.stamps[r * 5 + c], expected, "stamp ({r}, {c}) at ({x}, {y})");
                let variance = source.map_or(0.0, |(row, col)| at(row, col) + 1.5);
                assert_eq!(cut.variance[r * 5 + c], variance);
            }
        }
        // A window larger than the cutout: S = 102 on 30×30, the cutout in its middle.
        let cut = cut([Some(&file), Some(&file), Some(&file)], 15.5, 15.5, spec(102)).unwrap();
        assert_eq!(cut.flags, FLAG_PADDED);
        // centre 14.5 → start floor(14.5 − 50.5 + 0.5) = −36: cutout pixel (0, 0) at (36, 36).
        assert_eq!(cut.stamps[36 * 102 + 36], at(0, 0) + 1.0);
        assert_eq!(cut.stamps[65 * 102 + 65], at(29, 29) + 1.0);
        assert_eq!((cut.stamps[35 * 102 + 36], cut.stamps[66 * 102 + 65], cut.stamps[36 * 102 + 66]), (0.0, 0.0, 0.0));
        let real = cut.stamps.iter().filter(|p| **p != 0.0).count();
        assert_eq!(real, 3 * 900, "every cutout pixel once per channel (all are ≥ 1)");
    }

    #[test]
    fn nan_follows_the_policy_and_is_flagged() {
        let mut image = vec![1.0f32; 100];
        image[5 * 10 + 5] = f32::NAN;
        image[0] = f32::NAN; // outside the 3×3 window: not flagged
        let mut variance = vec![2.0f32; 100];
        variance[4 * 10 + 4] = f32::NAN;
        let mut file = image_hdu(true, -32, (10, 10), &[card("CUTMINX", 0), card("CUTMINY", 0)], &be_f32(&image));
        file.extend(image_hdu(false, -32, (10, 10), &[extname("UNCERT")], &be_f32(&variance)));
        let keep_nan = StampSpec { size: 3, keep_nan: true, keep_masked: false };
        let cut = cut([None, Some(&file), None], 6.0, 6.0, spec(3)).unwrap();
        assert_eq!(cut.flags, FLAG_HAD_NAN | FLAG_NO_CUTOUT);
        assert_eq!((cut.stamps[9 + 4], cut.stamps[9 + 3], cut.variance[9]), (0.0, 1.0, 0.0));
        let kept = super::cut([None, Some(&file), None], 6.0, 6.0, keep_nan).unwrap();
        assert_eq!(kept.flags, FLAG_HAD_NAN | FLAG_NO_CUTOUT);
        assert!(kept.stamps[9 + 4].is_nan() && kept.variance[9].is_nan() && kept.stamps[0].is_nan(), "NaN kept; null channel NaN");
        let clean = super::cut([None, Some(&file), None], 3.0, 8.0, spec(3)).unwrap();
        assert_eq!(clean.flags, FLAG_NO_CUTOUT, "a window without NaN");
    }

    #[test]
    fn null_cutouts_fill_without_reject() {
        let cut = cut([None, None, None], f64::NAN, 1.0, spec(4)).unwrap();
        assert_eq!(cut.flags, FLAG_NO_CUTOUT);
        assert_eq!((cut.stamps, cut.variance), (vec![0.0; 48], vec![0.0; 48]));
        let nan = super::cut([None, None, None], 0.0, 0.0, StampSpec { size: 2, keep_nan: true, keep_masked: false }).unwrap();
        assert!(nan.stamps.iter().chain(&nan.variance).all(|p| p.is_nan()) && nan.stamps.len() == 12);
    }

    #[test]
    fn centre_falls_back_to_crpix_then_the_middle() {
        let with_origin = cutout(30, 0.0, Some((100, 200)));
        let without = cutout(30, 0.0, None);
        // CRPIX 15.5 → 14.5: the 5-wide window starts at floor(14.5 − 2 + 0.5) = 13.
        for (file, x, y) in [(&with_origin, f64::NAN, 218.7), (&with_origin, 113.2, f64::INFINITY), (&without, 113.2, 218.7)] {
            let cut = cut([Some(file), None, None], x, y, SPEC).unwrap();
            assert_eq!(cut.flags, FLAG_CENTRE_GUESSED | FLAG_NO_CUTOUT);
            assert_eq!(cut.stamps[0], at(13, 13));
        }
        // A position off the cutout is not trusted either.
        let cut = cut([Some(&with_origin), None, None], 5000.0, 218.7, SPEC).unwrap();
        assert_eq!((cut.flags, cut.stamps[0]), (FLAG_CENTRE_GUESSED | FLAG_NO_CUTOUT, at(13, 13)));
        // No CRPIX either: the middle of a 7×6 image is (3, 2.5) → columns 1..6, rows 1..6 (no padding).
        let image: Vec<f32> = (0..42).map(|i| ((i / 7) * 1000 + i % 7) as f32).collect();
        let bare = image_hdu(true, -32, (7, 6), &[], &be_f32(&image));
        let cut = super::cut([Some(&bare), None, None], 1.0, 2.0, SPEC).unwrap();
        assert_eq!(cut.flags, FLAG_CENTRE_GUESSED | FLAG_NO_CUTOUT | FLAG_NO_VARIANCE);
        assert_eq!((cut.stamps[0], cut.stamps[19]), (at(1, 1), at(4, 5)));
        assert_eq!(cut.variance, vec![0.0; 75], "no UNCERT: variance filled");
    }

    /// Cutouts of different origins are each cut around the source.
    #[test]
    fn each_cutout_by_its_own_origin() {
        let a = cutout(30, 0.0, Some((100, 200)));
        let b = cutout(30, 0.0, Some((103, 198)));
        let cut = cut([Some(&a), Some(&b), Some(&a)], 113.2, 218.7, SPEC).unwrap();
        assert_eq!(cut.flags, 0);
        assert_eq!((plane(&cut, 0, 5)[12], plane(&cut, 1, 5)[12], plane(&cut, 2, 5)[12]), (at(18, 12), at(20, 9), at(18, 12)));
    }

    #[test]
    fn bad_cutouts_are_rejects_naming_channel_and_reason() {
        let good = cutout(30, 0.0, Some((0, 0)));
        let reason = |bad: &[u8], channel: usize| {
            let mut cutouts = [Some(&good[..]); 3];
            cutouts[channel] = Some(bad);
            let reject = cut(cutouts, 15.0, 15.0, SPEC).unwrap_err();
            assert_eq!(reject.kind, RejectKind::BadCutout);
            reject.reason
        };
        assert_eq!(reason(b"\x1f\x8b\x08garbage", 0), "cutoutScience: HDU 0: FITS header has no END card");
        assert_eq!(reason(&[b' '; 2880], 1), "cutoutTemplate: HDU 0: not a FITS file (first card is not SIMPLE = T)");
        let huge = image_hdu(true, -32, (10_000, 10_000), &[], &[]);
        assert_eq!(reason(&huge, 2), "cutoutDifference: HDU 0: FITS image of 10000x10000 pixels is larger than the 4194304-pixel limit");
        let big = image_hdu(true, -32, (1025, 4), &[], &be_f32(&[0.0; 4100]));
        assert_eq!(reason(&big, 2), "cutoutDifference: FITS image of 1025x4 pixels is larger than the 1024x1024 cutout limit");
        let naxis = image_hdu(true, -32, (1 << 62, 1), &[], &[]);
        assert!(reason(&naxis, 0).contains("4611686018427387904x1 pixels is larger"));
        assert_eq!(reason(&good[..2880 * 3 + 100], 1), "cutoutTemplate: HDU 1: FITS header has no END card");
        assert_eq!(reason(&good[..2880 * 4 + 100], 1), "cutoutTemplate: HDU 1: FITS data is truncated: 100 bytes, expected 3600 for 30x30");
        let empty = image_hdu(true, 8, (0, 0), &[], &[]);
        assert_eq!(reason(&empty, 0), "cutoutScience: FITS primary HDU has no image");
        let mut shape = image_hdu(true, -32, (2, 2), &[], &be_f32(&[1.0; 4]));
        shape.extend(image_hdu(false, -32, (2, 1), &[extname("UNCERT")], &be_f32(&[1.0; 2])));
        assert_eq!(reason(&shape, 0), "cutoutScience: UNCERT image is 2x1 pixels, the image 2x2");
        // 20 HDUs and no UNCERT among them: the 17th is refused.
        let mut many = image_hdu(true, -32, (1, 1), &[], &be_f32(&[1.0]));
        for _ in 1..20 {
            many.extend(image_hdu(false, -32, (1, 1), &[], &be_f32(&[1.0])));
        }
        assert_eq!(reason(&many, 0), "cutoutScience: HDU 16: FITS file has more than 16 HDUs");
        // What follows UNCERT is not read: a damaged PSF does not lose the stamps.
        assert!(cut([Some(&good[..good.len() - 100]); 3], 15.0, 15.0, SPEC).is_ok());
    }

    #[test]
    fn psf_is_read_as_f32() {
        let file = cutout(30, 0.0, None);
        assert_eq!(psf(&file), Ok(Some((3, 3, vec![0.5; 9]))));
        let psf64: Vec<f64> = (0..6).map(|i| f64::from(i) * 0.1).collect();
        let mut file = image_hdu(true, -32, (1, 1), &[], &be_f32(&[1.0]));
        file.extend(image_hdu(false, -64, (3, 2), &[extname("PSFIMAGE")], &be_f64(&psf64)));
        let expected: Vec<f32> = psf64.iter().map(|&p| p as f32).collect();
        assert_eq!(psf(&file), Ok(Some((3, 2, expected))));
        assert_eq!(psf(&image_hdu(true, -32, (1, 1), &[], &be_f32(&[1.0]))), Ok(None));
        assert_eq!(psf(b"nope"), Err(FitsError::NoEnd));
    }

    /// The real Rubin alerts: `../shared/data/lsst-alerts` beside the repo.
    fn real_alerts() -> std::path::PathBuf {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/lsst-alerts");
        assert!(path.join("MANIFEST.md").is_file(), "real Rubin alert data not found at {}", path.display());
        path
    }

    /// Each real alert with its `diaSource.x`, `.y` (float32, as decoded by fastavro).
    const REAL: [(&str, f64, f64); 21] = [
        ("boom/7912941781254298.avro", 754.23291015625, 3346.291015625),
        ("fink-v10.0/169813006111211570.avro", 3468.736328125, 1280.47412109375),
        ("fink-v10.0/169813006111211588.avro", 1388.48486328125, 1680.079345703125),
        ("fink-v10.0/169813006111211648.avro", 1122.8017578125, 3206.492919921875),
        ("fink-v10.0/169813006129561655.avro", 23.85837173461914, 1433.7474365234375),
        ("fink-v10.0/169813006129561660.avro", 2276.704833984375, 1510.854248046875),
        ("fink-v10.0/169813006131658851.avro", 2050.886474609375, 1774.3638916015625),
        ("fink-v10.0/169813006247002128.avro", 4071.77978515625, 390.86968994140625),
        ("fink-v10.0/169813006247002143.avro", 1390.711181640625, 724.640625),
        ("fink-v10.0/169813006247002380.avro", 383.9650573730469, 3212.853759765625),
        ("fink-v10.0/169813006395375644.avro", 1737.2843017578125, 1396.311767578125),
        ("fink-v10.0/169813006395375676.avro", 488.5147705078125, 2626.808837890625),
        ("fink-v10.0/169813006395375696.avro", 3978.23193359375, 3382.5986328125),
        ("fink-v10.0/169813006680588318.avro", 2885.8857421875, 1019.5690307617188),
        ("fink-v10.0/169813007065939974.avro", 1144.235107421875, 99.97522735595703),
        ("fink-v10.0/169813007065939979.avro", 3477.024169921875, 234.17478942871094),
        ("fink-v10.0/169813007065940116.avro", 364.7225646972656, 3981.600341796875),
        ("fink-v10.0/169813007074328578.avro", 3454.36572265625, 18.26015281677246),
        ("fink-v10.0/169813007074328596.avro", 3630.978515625, 532.6448974609375),
        ("fink-v10.0/169813007074328663.avro", 3750.13818359375, 2316.358642578125),
        ("fink-v10.0/169813007334899766.avro", 969.0846557617188, 2036.6898193359375),
    ];

    /// The three cutouts of an alert message, as science, template, difference. Each is an Avro
    /// `["null", "bytes"]` value: union branch 1 (byte 2), a zigzag varint length, then the FITS
    /// bytes, which start `SIMPLE  =`. They come in the schema's order (difference first).
    fn real_cutouts(message: &[u8]) -> [&[u8]; 3] {
        let starts: Vec<usize> = (0..message.len() - 9).filter(|&at| &message[at..at + 9] == b"SIMPLE  =").collect();
        assert_eq!(starts.len(), 3, "three cutouts");
        let found: Vec<&[u8]> = starts
            .iter()
            .map(|&at| {
                let first = (0..at - 1).rev().take_while(|&i| message[i] & 0x80 != 0).last().unwrap_or(at - 1);
                assert_eq!(message[first - 1], 2, "union branch 1 before the length");
                let raw = message[first..at].iter().rev().fold(0u64, |value, byte| value << 7 | u64::from(byte & 0x7f));
                let length = usize::try_from(raw >> 1).unwrap();
                assert!([34_560, 40_320, 69_120].contains(&length), "a cutout size the data's MANIFEST gives: {length}");
                &message[at..at + length]
            })
            .collect();
        [found[1], found[2], found[0]]
    }

    /// The 30×30 float32 pixels of the HDU whose header starts at `from`, and where the next HDU
    /// starts: read straight from the bytes, apart from the code under test.
    fn raw_plane(fits: &[u8], from: usize) -> (Vec<f32>, usize) {
        let cards: Vec<&[u8]> = fits[from..].chunks(80).take_while(|card| !card.starts_with(b"END ")).collect();
        let text =
            |key: &str| cards.iter().find(|c| c.starts_with(key.as_bytes())).map(|c| String::from_utf8_lossy(&c[9..30]).trim().to_string());
        assert_eq!(
            (text("BITPIX").as_deref(), text("NAXIS1").as_deref(), text("NAXIS2").as_deref()),
            (Some("-32"), Some("30"), Some("30"))
        );
        let data = from + ((cards.len() + 1) * 80).div_ceil(2880) * 2880;
        let pixels = fits[data..data + 3600].chunks(4).map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]])).collect();
        (pixels, data + 5760)
    }

    /// The start of the `size`-wide window around `c` by brute force: the one whose middle is
    /// nearest `c` (ties to the higher).
    fn reference_start(c: f64, size: usize) -> i64 {
        let distance = |start: i64| (start as f64 + (size as f64 - 1.0) / 2.0 - c).abs();
        (-200..200).fold(-200, |best, start| if distance(start) <= distance(best) { start } else { best })
    }

    /// Every real cutout: the rule's position equals `CRPIX − 1`, and each stamp and variance
    /// plane is its image cropped by the rule, bit for bit. On these 30×30 cutouts S = 30 is the
    /// cutout itself (window start 0, nothing padded); S = 31 pads one row and one column.
    #[test]
    fn real_cutouts_follow_the_rule() {
        let root = real_alerts();
        for (name, x, y) in REAL {
            let message = std::fs::read(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let cutouts = real_cutouts(&message);
            let mut centres = Vec::new();
            for cutout in cutouts {
                let primary = fits::hdus(cutout).next().unwrap().unwrap();
                let (min_x, min_y) = (primary.int("CUTMINX").unwrap() as f64, primary.int("CUTMINY").unwrap() as f64);
                let (cx, cy) = (x - min_x - 1.0, y - min_y - 1.0);
                let (crpix1, crpix2) = (primary.float("CRPIX1").unwrap(), primary.float("CRPIX2").unwrap());
                assert!((cx - (crpix1 - 1.0)).abs() < 1e-3 && (cy - (crpix2 - 1.0)).abs() < 1e-3, "{name}: ({cx}, {cy}) is CRPIX − 1");
                assert!((14.0..15.0).contains(&cx) && (14.0..15.0).contains(&cy), "{name}: the source in pixel 14");
                centres.push((cx, cy));
            }
            for size in [30, 31, 21, 2, 1, 64, 102] {
                let cut = cut(cutouts.map(Some), x, y, spec(size)).unwrap();
                let n = size * size;
                let mut padded = (0, 0);
                for (channel, cutout) in cutouts.iter().enumerate() {
                    let (image, next) = raw_plane(cutout, 0);
                    let (variance, _) = raw_plane(cutout, next);
                    let (c0, r0) = (reference_start(centres[channel].0, size), reference_start(centres[channel].1, size));
                    let on = |start: i64, i: usize| usize::try_from(start + i as i64).ok().filter(|at| *at < 30);
                    padded = ((0..size).filter(|&r| on(r0, r).is_none()).count(), (0..size).filter(|&c| on(c0, c).is_none()).count());
                    for (r, c) in (0..size).flat_map(|r| (0..size).map(move |c| (r, c))) {
                        let source = on(r0, r).zip(on(c0, c)).map(|(row, col)| row * 30 + col);
                        let at = channel * n + r * size + c;
                        assert_eq!(cut.stamps[at].to_bits(), source.map_or(0.0f32, |i| image[i]).to_bits(), "{name} S {size} ({r}, {c})");
                        assert_eq!(cut.variance[at].to_bits(), source.map_or(0.0f32, |i| variance[i]).to_bits());
                    }
                }
                assert_eq!(cut.flags, if padded == (0, 0) { 0 } else { FLAG_PADDED }, "{name} S {size}");
                match size {
                    30 => assert_eq!(padded, (0, 0), "{name}: S = 30 is the whole cutout"),
                    31 => assert_eq!(padded, (1, 1), "{name}: S = 31 pads one row and one column"),
                    21 | 2 | 1 => assert_eq!(padded, (0, 0)),
                    _ => assert_eq!(padded, (size - 30, size - 30)),
                }
            }
        }
    }

    /// The PSF images of the real cutouts: 41×41 for science and difference; the template's
    /// 77×77 (boom), 49×49 or 39×39 (Fink); each sums to about 1.
    #[test]
    fn real_psf_images() {
        let root = real_alerts();
        for (name, _, _) in REAL {
            let message = std::fs::read(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (channel, cutout) in real_cutouts(&message).into_iter().enumerate() {
                let (width, height, pixels) = psf(cutout).unwrap().expect("a PSFIMAGE");
                assert_eq!(width, height);
                assert!(if channel == 1 { [77, 49, 39].contains(&width) } else { width == 41 }, "{name} {channel}: {width}");
                let sum: f32 = pixels.iter().sum();
                assert!((sum - 1.0).abs() < 0.05, "{name} {channel}: PSF sums to {sum}");
            }
        }
    }
}
