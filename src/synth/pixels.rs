//! Pixel content of the three cutouts of one alert: sky + noise + a Gaussian PSF at the centre,
//! the difference as science − template, masked (NaN) pixels where ZTF has them, and the clipping
//! of cutouts whose candidate sits near the CCD's high-x edge.

use crate::rng::Rng;

/// Side of a full ZTF cutout, in pixels.
pub const CUTOUT_SIDE: usize = 63;
/// Row and column of the candidate in a full cutout (0-based).
pub const CUTOUT_CENTRE: usize = CUTOUT_SIDE / 2;
/// Width (NAXIS1) of a readout-channel image, in pixels.
pub const CCD_WIDTH: usize = 3072;
/// Height (NAXIS2) of a readout-channel image, in pixels.
pub const CCD_HEIGHT: usize = 3080;

/// One float32 image, row-major (`width` varies fastest), as it goes into FITS.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

impl Image {
    fn full(pixels: Vec<f32>) -> Self {
        Self { width: CUTOUT_SIDE, height: CUTOUT_SIDE, pixels }
    }

    /// The first `width` columns of every row: what is left when the CCD ends after them.
    fn keep_columns(&self, width: usize) -> Self {
        let pixels = self.pixels.chunks_exact(self.width).flat_map(|row| &row[..width]).copied().collect();
        Self { width, height: self.height, pixels }
    }
}

/// Pixels ZTF masks (NaN) in a cutout. Masks are set on one image and, since the difference is
/// computed from the science and template pixels, also show in the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanMask {
    /// A bad column of the reference image: column `column` of the template is NaN, top to bottom.
    TemplateColumn { column: usize },
    /// A masked (saturated) patch of the science image: `side` x `side` pixels from (row, column).
    ScienceBlock { row: usize, column: usize, side: usize },
}

/// What the pixels of one alert's cutouts must show.
#[derive(Debug, Clone)]
pub(crate) struct CutoutPlan {
    /// Sky level of science and template [DN]; equal, so the difference has zero background.
    pub sky: f64,
    /// Pixel noise of the science image [DN]; the template (a co-add) has half of it.
    pub noise: f64,
    /// PSF full width at half maximum [pixels].
    pub fwhm: f64,
    /// Total flux of the source in the science image [DN].
    pub science_flux: f64,
    /// Total flux of the source in the template [DN] (0: no counterpart in the reference).
    pub template_flux: f64,
    pub nan_mask: Option<NanMask>,
    /// Columns left after clipping at the CCD's high-x edge (`None`: full 63 columns).
    pub clipped_width: Option<usize>,
}

/// The science, template and difference images of one alert, in that order.
pub(crate) fn render_cutouts(plan: &CutoutPlan, rng: &mut Rng) -> [Image; 3] {
    let profile = psf_profile(plan.fwhm);
    let mut science = noisy_sky(plan.sky, plan.noise, rng);
    add_source(&mut science, &profile, plan.science_flux);
    let mut template = noisy_sky(plan.sky, plan.noise * 0.5, rng);
    add_source(&mut template, &profile, plan.template_flux);
    if let Some(mask) = plan.nan_mask {
        apply_mask(mask, &mut science, &mut template);
    }
    let difference: Vec<f32> = science.iter().zip(&template).map(|(sci, tmpl)| sci - tmpl).collect();
    let images = [Image::full(science), Image::full(template), Image::full(difference)];
    match plan.clipped_width {
        Some(width) => images.map(|image| image.keep_columns(width)),
        None => images,
    }
}

/// Normalised 1-D Gaussian weights along one axis of the cutout, centred on `CUTOUT_CENTRE`.
/// The 2-D PSF is separable: weight(row, column) = profile[row] * profile[column].
fn psf_profile(fwhm: f64) -> [f64; CUTOUT_SIDE] {
    let sigma = fwhm / (8.0 * std::f64::consts::LN_2).sqrt();
    let mut profile = [0.0; CUTOUT_SIDE];
    for (offset, weight) in profile.iter_mut().enumerate() {
        let distance = offset as f64 - CUTOUT_CENTRE as f64;
        *weight = (-0.5 * (distance / sigma).powi(2)).exp();
    }
    let total: f64 = profile.iter().sum();
    profile.map(|weight| weight / total)
}

fn noisy_sky(sky: f64, noise: f64, rng: &mut Rng) -> Vec<f32> {
    (0..CUTOUT_SIDE * CUTOUT_SIDE).map(|_| rng.gauss(sky, noise) as f32).collect()
}

fn add_source(pixels: &mut [f32], profile: &[f64; CUTOUT_SIDE], flux: f64) {
    if flux <= 0.0 {
        return;
    }
    for (row, row_pixels) in pixels.chunks_exact_mut(CUTOUT_SIDE).enumerate() {
        let row_flux = flux * profile[row];
        // Rows far from the source get less than a thousandth of a DN: not worth the adds.
        if row_flux < 1e-3 {
            continue;
        }
        for (pixel, weight) in row_pixels.iter_mut().zip(profile) {
            *pixel += (row_flux * weight) as f32;
        }
    }
}

fn apply_mask(mask: NanMask, science: &mut [f32], template: &mut [f32]) {
    match mask {
        NanMask::TemplateColumn { column } => {
            for row in template.chunks_exact_mut(CUTOUT_SIDE) {
                row[column] = f32::NAN;
            }
        }
        NanMask::ScienceBlock { row, column, side } => {
            for r in row..(row + side).min(CUTOUT_SIDE) {
                let start = r * CUTOUT_SIDE + column;
                let end = r * CUTOUT_SIDE + (column + side).min(CUTOUT_SIDE);
                science[start..end].fill(f32::NAN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CutoutPlan {
        CutoutPlan {
            sky: 100.0,
            noise: 5.0,
            fwhm: 2.0,
            science_flux: 20_000.0,
            template_flux: 2_000.0,
            nan_mask: None,
            clipped_width: None,
        }
    }

    fn at(image: &Image, row: usize, column: usize) -> f32 {
        image.pixels[row * image.width + column]
    }

    fn argmax(image: &Image) -> (usize, usize) {
        let (index, _) =
            image.pixels.iter().enumerate().filter(|(_, v)| !v.is_nan()).fold(
                (0, f32::MIN),
                |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                },
            );
        (index / image.width, index % image.width)
    }

    #[test]
    fn psf_profile_is_normalised_with_the_asked_fwhm() {
        let profile = psf_profile(2.0);
        assert!((profile.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // At one FWHM/2 = 1 pixel from the centre the Gaussian is at half its peak.
        assert!((profile[CUTOUT_CENTRE + 1] / profile[CUTOUT_CENTRE] - 0.5).abs() < 1e-9);
    }

    #[test]
    fn source_peaks_at_the_centre_and_difference_is_science_minus_template() {
        let [science, template, difference] = render_cutouts(&plan(), &mut Rng::from_keys(&[1]));
        for image in [&science, &template, &difference] {
            assert_eq!((image.width, image.height), (63, 63));
            assert!(image.pixels.iter().all(|v| v.is_finite()));
        }
        assert_eq!(argmax(&science), (31, 31));
        assert_eq!(argmax(&difference), (31, 31));
        for i in 0..science.pixels.len() {
            assert_eq!(difference.pixels[i], science.pixels[i] - template.pixels[i]);
        }
        // Background: science sky ~100 DN; difference ~0.
        let corner_mean = |image: &Image| {
            (0..10).flat_map(|r| (0..10).map(move |c| (r, c))).map(|(r, c)| f64::from(at(image, r, c))).sum::<f64>() / 100.0
        };
        assert!((corner_mean(&science) - 100.0).abs() < 3.0);
        assert!(corner_mean(&difference).abs() < 3.0);
    }

    #[test]
    fn template_column_mask_shows_in_template_and_difference_only() {
        let mut masked = plan();
        masked.nan_mask = Some(NanMask::TemplateColumn { column: 25 });
        let [science, template, difference] = render_cutouts(&masked, &mut Rng::from_keys(&[2]));
        assert!(science.pixels.iter().all(|v| v.is_finite()));
        for image in [&template, &difference] {
            let nan: Vec<usize> = (0..image.pixels.len()).filter(|&i| image.pixels[i].is_nan()).collect();
            assert_eq!(nan.len(), 63);
            assert!(nan.iter().all(|i| i % 63 == 25));
        }
    }

    #[test]
    fn science_block_mask_is_clipped_to_the_frame() {
        let mut masked = plan();
        masked.nan_mask = Some(NanMask::ScienceBlock { row: 60, column: 2, side: 4 });
        let [science, template, difference] = render_cutouts(&masked, &mut Rng::from_keys(&[3]));
        let nan_count = |image: &Image| image.pixels.iter().filter(|v| v.is_nan()).count();
        assert_eq!(nan_count(&science), 3 * 4);
        assert_eq!(nan_count(&template), 0);
        assert_eq!(nan_count(&difference), 3 * 4);
        assert!(at(&science, 62, 5).is_nan() && at(&science, 60, 2).is_nan());
        assert!(!at(&science, 59, 2).is_nan() && !at(&science, 60, 6).is_nan());
    }

    #[test]
    fn edge_clipping_keeps_the_low_columns_and_the_source_column() {
        let full = render_cutouts(&plan(), &mut Rng::from_keys(&[4]));
        let mut clipped_plan = plan();
        clipped_plan.clipped_width = Some(44);
        let clipped = render_cutouts(&clipped_plan, &mut Rng::from_keys(&[4]));
        for (whole, part) in full.iter().zip(&clipped) {
            assert_eq!((part.width, part.height), (44, 63));
            for row in 0..63 {
                for column in 0..44 {
                    assert_eq!(at(part, row, column), at(whole, row, column));
                }
            }
        }
        assert_eq!(argmax(&clipped[0]), (31, 31));
    }
}
