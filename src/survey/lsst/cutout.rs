//! Rubin's cutouts into stamps: the three FITS cutouts of an alert (science, template,
//! difference) cut to the stored stamp size around the diaSource's position.
//!
//! A placeholder with the interface the decoder uses: every stamp pixel holds the fill value and
//! no flag is set.

use crate::survey::{Reject, StampSpec};

/// What each `stamp_flags` bit means, in the root attrs.
pub const STAMP_FLAG_DOCS: [(u8, &str); 0] = [];

/// One alert's stamps, cut.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// Three stamps (science, template, difference), each `size²` pixels, row-major.
    pub stamps: Vec<f32>,
    /// Their variance planes, in the same order and shape.
    pub variance: Vec<f32>,
    /// `stamp_flags` of the row.
    pub flags: u8,
}

/// Cut the cutouts (science, template, difference; None for a null one) around pixel `x`, `y`
/// of the difference image (NaN when unknown) as `spec` says.
///
/// # Errors
/// A cutout that cannot be read as an image.
pub fn cut(cutouts: [Option<&[u8]>; 3], x: f64, y: f64, spec: StampSpec) -> Result<Cut, Reject> {
    let _ = (cutouts, x, y);
    let pixels = 3 * spec.pixels();
    Ok(Cut { stamps: vec![spec.fill(); pixels], variance: vec![spec.fill(); pixels], flags: 0 })
}
