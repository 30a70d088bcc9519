//! How deep real alert histories are, for `--history measured`: the lengths of
//! `prv_candidates` counted on real ZTF alerts, and draws from them.
//!
//! # How the table was measured
//! Over all 548 alert files of the shared real-alert set (`ztf-alerts/`, see its MANIFEST.md:
//! schemas 1.3 to 4.02, alerts of 2016 to 2024, one record per file), read with fastavro 1.13.1;
//! the 7 files under `*-corrupt/` (each one byte short) were read after putting back the missing
//! `\r` (every position at which a file parses again gives the same lengths). For each alert:
//! `len(prv_candidates)` (null counts as 0; it is never null there), the entries with a candid
//! (detections) and those without (upper limits), and `len(fp_hists)` (null or absent = 0).
//!
//! | schema | alerts | prv mean | median | p90 | max | detections / upper limits | fp_hists |
//! |---|---:|---:|---:|---:|---:|---|---|
//! | 1.x (no schemavsn) | 27 | 74.0 | 34 | 179 | 196 | 1250 / 749 (62.5 %) | 0 |
//! | 3.x | 520 | 14.1 | 12 | 23 | 123 | 1574 / 5771 (21.4 %) | 0 |
//! | 4.x | 1 | 10.0 | 10 | 10 | 10 | 7 / 3 (70.0 %) | 10 (all 10) |
//! | all | 548 | 17.1 | 12 | 24 | 196 | 2831 / 6523 (30.3 %) | mean 0.02 |
//!
//! (p90 is the nearest-rank percentile.) Only one alert has `fp_hists` (boom, schema 4.02): its
//! 10 entries are forced photometry on exactly the 10 exposures of its `prv_candidates` (same
//! pid, jd, fid and diffmaglim), newest first. One alert is no distribution, so the generator
//! follows that alert's rule instead: an `fp_hists` entry for every `prv_candidates` exposure,
//! which makes `len(fp_hists)` = `len(prv_candidates)`, drawn from [`PRV_CANDIDATES`].

use crate::rng::Rng;

/// `(len(prv_candidates), alerts with that length)` over the 548 real alerts: every length seen,
/// ascending (module doc for how it was measured).
#[rustfmt::skip]
pub(crate) const PRV_CANDIDATES: [(u16, u16); 46] = [
    (4, 1), (5, 3), (8, 3), (9, 7), (10, 156), (11, 86), (12, 53), (13, 3), (14, 104), (15, 4), (16, 1),
    (17, 22), (18, 3), (19, 3), (20, 5), (21, 12), (22, 6), (23, 20), (24, 5), (25, 2), (26, 1), (27, 2),
    (28, 17), (29, 1), (30, 2), (31, 3), (32, 1), (33, 2), (34, 1), (36, 1), (43, 1), (65, 1), (66, 2), (67, 2),
    (74, 1), (82, 1), (84, 1), (123, 1), (136, 1), (139, 1), (141, 1), (154, 1), (168, 1), (179, 1), (180, 1),
    (196, 1),
];

/// `prv_candidates` entries of those alerts that are detections (have a candid), and all entries.
pub(crate) const DETECTIONS_OF_ENTRIES: (u32, u32) = (2831, 9354);

/// Alerts in [`PRV_CANDIDATES`] (548).
fn alerts() -> u64 {
    PRV_CANDIDATES.iter().map(|&(_, alerts)| u64::from(alerts)).sum()
}

/// One history length, drawn with the frequencies of [`PRV_CANDIDATES`] (one draw from `rng`).
pub(crate) fn draw_prv_length(rng: &mut Rng) -> usize {
    // Which of the 548 measured alerts: its length is the draw.
    let mut pick = rng.int_in(0, alerts() as i64 - 1) as u64;
    for &(length, alerts) in &PRV_CANDIDATES {
        if pick < u64::from(alerts) {
            return usize::from(length);
        }
        pick -= u64::from(alerts);
    }
    unreachable!("the pick is below the table's total")
}

/// The measured share of `prv_candidates` entries that are detections (30.3 %).
pub(crate) fn detected_fraction() -> f64 {
    f64::from(DETECTIONS_OF_ENTRIES.0) / f64::from(DETECTIONS_OF_ENTRIES.1)
}

/// Mean length of the table (17.07), for the tests.
#[cfg(test)]
pub(crate) fn mean_prv_length() -> f64 {
    let total: u64 = PRV_CANDIDATES.iter().map(|&(length, alerts)| u64::from(length) * u64::from(alerts)).sum();
    total as f64 / alerts() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_the_measured_one() {
        assert_eq!(alerts(), 548);
        assert!(PRV_CANDIDATES.windows(2).all(|w| w[0].0 < w[1].0), "ascending, each length once");
        assert!((mean_prv_length() - 17.07).abs() < 0.01, "{}", mean_prv_length());
        assert!((detected_fraction() - 0.3027).abs() < 1e-4);
    }

    #[test]
    fn draws_follow_the_table() {
        let mut rng = Rng::from_keys(&[42]);
        let draws: Vec<usize> = (0..54_800).map(|_| draw_prv_length(&mut rng)).collect();
        let mean = draws.iter().sum::<usize>() as f64 / draws.len() as f64;
        // Standard deviation of the table 20.4: the mean of 54,800 draws is within 0.09 of 17.07 by 1 sigma.
        assert!((mean - mean_prv_length()).abs() < 0.4, "mean {mean}");
        // Every length drawn is one of the table; the common ones come with their frequency.
        assert!(draws.iter().all(|&d| PRV_CANDIDATES.iter().any(|&(length, _)| usize::from(length) == d)));
        for (length, alerts) in [(10, 156), (11, 86), (14, 104)] {
            let share = draws.iter().filter(|&&d| d == length).count() as f64 / draws.len() as f64;
            let expected = f64::from(alerts) / 548.0;
            assert!((share - expected).abs() < 0.01, "length {length}: {share} against {expected}");
        }
        assert_eq!(draws.iter().min(), Some(&4));
        assert_eq!(draws.iter().max(), Some(&196));
    }
}
