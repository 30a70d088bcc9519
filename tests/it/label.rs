//! Labels from classifier CSVs and training splits, on a store of the real alerts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ztf2zarr::store::{read_json, StoreReader};
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{real_alerts, tree_bytes, ztf2zarr, ztf2zarr_ok};

const CLASSES: [&str; 5] = ["QSO", "YSO", "AGN", "SNIa", "RRL"];

fn real_store(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let store = dir.join(name);
    let mut args = vec!["build".to_string(), real_alerts().display().to_string(), "-o".into(), store.display().to_string()];
    args.extend(extra.iter().map(|s| (*s).to_string()));
    ztf2zarr_ok(args);
    store
}

fn column(store: &Path, name: &str) -> Vec<String> {
    let layout = tables::catalog();
    let index = layout.index_of(name).unwrap();
    StoreReader::open(store, &TABLES).unwrap().catalog_rows().unwrap().iter().map(|r| layout.read_str(r, index).unwrap()).collect()
}

fn codes(store: &Path) -> Vec<i64> {
    let layout = tables::catalog();
    let index = layout.index_of("label_code").unwrap();
    StoreReader::open(store, &TABLES).unwrap().catalog_rows().unwrap().iter().map(|r| layout.read_i64(r, index).unwrap()).collect()
}

/// A class for every object but one in ten (left out of the CSV to test unlabeled alerts).
fn truth(objects: &[String]) -> HashMap<String, &'static str> {
    objects
        .iter()
        .filter(|o| o.bytes().map(u32::from).sum::<u32>() % 10 != 0)
        .map(|o| (o.clone(), CLASSES[o.bytes().map(usize::from).sum::<usize>() % CLASSES.len()]))
        .collect()
}

/// Write a CSV in ALeRCE's unlabeled-set convention (`oid,predicted_class,…`) or its labeled-set
/// convention (`classALeRCE,oid,…`).
fn write_csv(path: &Path, truth: &HashMap<String, &str>, labeled_set: bool) {
    let mut rows: Vec<_> = truth.iter().collect();
    rows.sort();
    let mut text = if labeled_set { String::from("classALeRCE,oid,period\n") } else { String::from("oid,predicted_class,probability\n") };
    for (object, class) in rows {
        text += &if labeled_set { format!("{class},{object},1.5\n") } else { format!("{object},{class},0.9\n") };
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn labels_join_on_object_in_both_csv_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let plain = real_store(dir.path(), "plain.zarr", &[]);
    let objects = column(&plain, "objectId");
    let truth = truth(&objects);
    for labeled_set in [false, true] {
        let csv = dir.path().join(format!("labels-{labeled_set}.csv"));
        write_csv(&csv, &truth, labeled_set);
        let store = real_store(dir.path(), &format!("l{labeled_set}.zarr"), &["--labels", csv.to_str().unwrap()]);
        let labels = column(&store, "label");
        let codes = codes(&store);
        let attrs = read_json(&store.join(".zattrs")).unwrap();
        let table = &attrs["ztf2zarr"]["labels"]["classes"];
        for ((object, label), code) in objects.iter().zip(&labels).zip(&codes) {
            match truth.get(object) {
                Some(class) => {
                    assert_eq!(label, class, "{object}");
                    assert_eq!(table[code.to_string()], *class, "code {code} of {object}");
                }
                None => assert_eq!((label.as_str(), *code), ("", -1), "{object} is not in the CSV"),
            }
        }
        assert_eq!(attrs["ztf2zarr"]["labels"]["class_column"], if labeled_set { "classALeRCE" } else { "predicted_class" });
        assert_eq!(attrs["ztf2zarr"]["labels"]["sha256"].as_str().unwrap().len(), 64);
    }
}

#[test]
fn class_mapping_and_relabel_equal_build_time_labels() {
    let dir = tempfile::tempdir().unwrap();
    let plain = real_store(dir.path(), "plain.zarr", &[]);
    let truth = truth(&column(&plain, "objectId"));
    let csv = dir.path().join("labels.csv");
    write_csv(&csv, &truth, false);
    let mapping = ["--classes", "QSO,YSO,AGN", "--other", "Otro"];
    let mut args = vec!["--labels", csv.to_str().unwrap()];
    args.extend(mapping);
    let built = real_store(dir.path(), "built.zarr", &args);
    let labels = column(&built, "label");
    assert!(labels.iter().all(|l| ["QSO", "YSO", "AGN", "Otro", ""].contains(&l.as_str())));
    assert!(labels.iter().any(|l| l == "Otro") && labels.iter().any(|l| l == "QSO"));
    let table = &read_json(&built.join(".zattrs")).unwrap()["ztf2zarr"]["labels"]["classes"];
    assert_eq!(table, &serde_json::json!({"0": "QSO", "1": "YSO", "2": "AGN", "3": "Otro"}));

    let mut relabel = vec!["label", plain.to_str().unwrap(), "--labels", csv.to_str().unwrap()];
    relabel.extend(mapping);
    let summary = ztf2zarr_ok(relabel);
    assert!(summary.contains("labeled"), "{summary}");
    let (a, b) = (StoreReader::open(&built, &TABLES).unwrap(), StoreReader::open(&plain, &TABLES).unwrap());
    assert_eq!(a.catalog_rows().unwrap(), b.catalog_rows().unwrap(), "relabel must equal build-time labels");
    assert_eq!(a.stamps().unwrap(), b.stamps().unwrap());
    let output = ztf2zarr(["verify", plain.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn a_bad_csv_is_an_error_naming_the_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = real_store(dir.path(), "s.zarr", &[]);
    let before = tree_bytes(&store);
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "oid,predicted_class\nZTF18aaaaaaa,QSO\nZTF18aaaaaab,QSO,oops\n").unwrap();
    let output = ztf2zarr(["label", store.to_str().unwrap(), "--labels", csv.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.csv") && stderr.contains("line 3"), "{stderr}");
    assert_eq!(tree_bytes(&store), before);
    // Appending labeled alerts to an unlabeled store is refused (one code table per store).
    std::fs::write(&csv, "oid,predicted_class\nZTF18aaaaaaa,QSO\n").unwrap();
    let output =
        ztf2zarr(["build", real_alerts().join("boom").to_str().unwrap(), "-o", store.to_str().unwrap(), "--labels", csv.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("label them first"));
    assert_eq!(tree_bytes(&store), before);
}

#[test]
fn splits_are_disjoint_by_object_stratified_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let plain = real_store(dir.path(), "s.zarr", &[]);
    let objects = column(&plain, "objectId");
    let csv = dir.path().join("labels.csv");
    write_csv(&csv, &truth(&objects), false);
    ztf2zarr_ok(["label", plain.to_str().unwrap(), "--labels", csv.to_str().unwrap()]);
    let labels = column(&plain, "label");
    let read_splits = |store: &Path| -> Vec<Vec<i64>> {
        ["train", "val", "test"]
            .iter()
            .map(|name| {
                let zarray = read_json(&store.join("splits").join(name).join(".zarray")).unwrap();
                let n = zarray["shape"][0].as_u64().unwrap() as usize;
                let chunk = zarray["chunks"][0].as_u64().unwrap() as usize;
                let raw = zstd::bulk::decompress(&std::fs::read(store.join("splits").join(name).join("0")).unwrap(), chunk * 8).unwrap();
                raw.chunks_exact(8).take(n).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
            })
            .collect()
    };
    ztf2zarr_ok(["split", plain.to_str().unwrap(), "--train", "0.7", "--val", "0.15", "--test", "0.15", "--seed", "11"]);
    let first = read_splits(&plain);
    ztf2zarr_ok(["split", plain.to_str().unwrap(), "--train", "0.7", "--val", "0.15", "--test", "0.15", "--seed", "11"]);
    assert_eq!(read_splits(&plain), first, "same seed, same splits");
    ztf2zarr_ok(["split", plain.to_str().unwrap(), "--train", "0.7", "--val", "0.15", "--test", "0.15", "--seed", "12"]);
    assert_ne!(read_splits(&plain), first, "another seed, other splits");

    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut per_label: HashMap<&str, [usize; 3]> = HashMap::new();
    let mut all = HashSet::new();
    for (split, rows) in first.iter().enumerate() {
        for row in rows {
            let row = *row as usize;
            assert!(all.insert(row), "row {row} twice");
            assert_eq!(*owner.entry(objects[row].as_str()).or_insert(split), split, "object {} in two splits", objects[row]);
            per_label.entry(labels[row].as_str()).or_default()[split] += 1;
        }
    }
    assert_eq!(all.len(), objects.len(), "every alert is in a split");
    // Stratified: each label's train share is near 0.7 by objects; by alerts, within 0.2 for labels with ≥ 20 alerts.
    for (label, counts) in per_label {
        let total: usize = counts.iter().sum();
        if total >= 20 {
            let share = counts[0] as f64 / total as f64;
            assert!((share - 0.7).abs() < 0.2, "label {label:?}: train share {share:.2} of {total}");
        }
    }
    let output = ztf2zarr(["verify", plain.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));

    ztf2zarr_ok(["split", plain.to_str().unwrap(), "--seed", "3", "--one-per-object", "--balance", "25", "--labeled-only"]);
    let capped = read_splits(&plain);
    let rows: Vec<usize> = capped.concat().into_iter().map(|r| r as usize).collect();
    let distinct: HashSet<&str> = rows.iter().map(|r| objects[*r].as_str()).collect();
    assert_eq!(distinct.len(), rows.len(), "one alert per object");
    let mut per_label: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        assert!(!labels[*row].is_empty());
        *per_label.entry(labels[*row].as_str()).or_default() += 1;
    }
    assert!(per_label.values().all(|n| *n <= 25), "{per_label:?}");
}

#[test]
fn appending_unlabeled_alerts_to_a_labeled_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    std::fs::write(&csv, "oid,predicted_class\nZTF20aaaaaaa,QSO\n").unwrap();
    let store = dir.path().join("s.zarr");
    let night = real_alerts().join("kowalski-20200202");
    ztf2zarr_ok(["build", night.to_str().unwrap(), "-o", store.to_str().unwrap(), "--labels", csv.to_str().unwrap()]);
    let summary = ztf2zarr_ok(["build", real_alerts().join("boom").to_str().unwrap(), "-o", store.to_str().unwrap()]);
    assert!(summary.contains("the 1 new alerts are unlabeled"), "{summary}");
}
