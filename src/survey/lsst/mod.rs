//! Rubin (LSST) alerts.
pub mod cutout;
