//! A classifier CSV for synthetic alerts, shaped like ALeRCE's unlabeled-set predictions
//! (`oid,predicted_class,probability`): one row per object, a class drawn by the seed.

use std::collections::BTreeSet;

use apache_avro::types::Value;

use super::{synth_record, SynthConfig};
use crate::rng::Rng;

/// Classes ALeRCE's light-curve classifier predicts (a representative subset).
pub const CLASSES: [&str; 8] = ["QSO", "YSO", "AGN", "SNIa", "SNII", "RRL", "LPV", "E"];

/// The CSV text for the objects of `cfg`'s alerts, one row per object in objectId order.
#[must_use]
pub fn labels_csv(cfg: &SynthConfig) -> String {
    let objects: BTreeSet<String> = (0..cfg.count).filter_map(|index| object_id(&synth_record(cfg, index))).collect();
    let mut out = String::from("oid,predicted_class,probability\n");
    for object in objects {
        let key = object.bytes().fold(cfg.seed, |h, b| h.rotate_left(5) ^ u64::from(b));
        let mut rng = Rng::from_keys(&[cfg.seed, key, 0x1abe1]);
        let class = rng.pick(&CLASSES);
        out.push_str(&format!("{object},{class},{:.3}\n", rng.uniform(0.4, 1.0)));
    }
    out
}

fn object_id(record: &Value) -> Option<String> {
    let Value::Record(fields) = record else { return None };
    fields.iter().find_map(|(name, value)| match (name.as_str(), value) {
        ("objectId", Value::String(id)) => Some(id.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_object_with_a_known_class() {
        let cfg = SynthConfig { count: 12, ..SynthConfig::default() };
        let csv = labels_csv(&cfg);
        let rows: Vec<&str> = csv.lines().skip(1).collect();
        assert!(rows.len() >= 4 && rows.len() < 12, "{csv}");
        assert!(rows.iter().all(|r| r.starts_with("ZTF") && CLASSES.contains(&r.split(',').nth(1).unwrap())));
        assert_eq!(csv, labels_csv(&cfg));
    }
}
