//! `--classes` and `--other` as a user may mistype them (a class that is not in the CSV, spaces,
//! `--other` alone), the alerts per class that every labelling summary and `info` print, and the
//! warning of a split that leaves a class out of val or test; on the 12 real alerts (11 objects)
//! of one night.

use std::path::{Path, PathBuf};
use std::process::Output;

use ztf2zarr::store::{read_json, StoreReader};
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{real_alerts, tree_bytes, ztf2zarr, ztf2zarr_ok};

fn night() -> PathBuf {
    real_alerts().join("kowalski-20200202")
}

/// A store of the night and a CSV giving its objects, in sorted order, `classes` in turn (all
/// but the first object; one more row names an object not in the store, of class `Extra`).
fn labelled_setup(dir: &Path, classes: &[&str]) -> (PathBuf, PathBuf) {
    let store = dir.join("s.zarr");
    ztf2zarr_ok(["build", night().to_str().unwrap(), "-o", store.to_str().unwrap(), "--no-progress"]);
    let layout = tables::catalog();
    let column = layout.index_of("objectId").unwrap();
    let mut objects: Vec<String> =
        StoreReader::open(&store, &TABLES).unwrap().catalog_rows().unwrap().iter().map(|r| layout.read_str(r, column).unwrap()).collect();
    objects.sort();
    objects.dedup();
    let mut text = String::from("oid,predicted_class,probability\n");
    for (i, object) in objects.iter().enumerate().skip(1) {
        text += &format!("{object},{},0.9\n", classes[i % classes.len()]);
    }
    text += "ZTF99zzzzzzz,Extra,0.5\n";
    let csv = dir.join("labels.csv");
    std::fs::write(&csv, text).unwrap();
    (store, csv)
}

fn run(args: &[&str]) -> Output {
    ztf2zarr(args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The line of `text` that starts with `key`, without its indentation.
fn line<'t>(text: &'t str, key: &str) -> &'t str {
    text.lines().map(str::trim_start).find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no `{key}` line in:\n{text}"))
}

#[test]
fn a_class_the_csv_lacks_is_refused_naming_its_classes_and_the_case_match() {
    let dir = tempfile::tempdir().unwrap();
    let (store, csv) = labelled_setup(dir.path(), &["QSO", "YSO"]);
    let (s, c) = (store.to_str().unwrap(), csv.to_str().unwrap());
    let before = tree_bytes(&store);
    let output = run(&["label", s, "--labels", c, "--classes", "qso,yso"]);
    assert_eq!(output.status.code(), Some(2), "a typo must not relabel every object `other`");
    let message = stderr(&output);
    assert!(message.contains("labels.csv") && message.contains("--classes lists `qso`, `yso`, which no row"), "{message}");
    assert!(message.contains("its classes are Extra (1 object), QSO (5 objects), YSO (5 objects)"), "{message}");
    assert!(message.contains("did you mean `QSO` for `qso`, `YSO` for `yso`?"), "{message}");
    assert_eq!(tree_bytes(&store), before, "nothing written");

    // The build refuses the same before it reads an alert; no store is made.
    let fresh = dir.path().join("fresh.zarr");
    let output = run(&["build", night().to_str().unwrap(), "-o", fresh.to_str().unwrap(), "--labels", c, "--classes", "QSO,AGN"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("`AGN`") && !message.contains("did you mean"), "{message}");
    assert!(!fresh.exists());
}

#[test]
fn class_names_are_trimmed_and_other_needs_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, csv) = labelled_setup(dir.path(), &["QSO", "YSO", "AGN"]);
    let (s, c) = (store.to_str().unwrap(), csv.to_str().unwrap());
    let summary = ztf2zarr_ok(["label", s, "--labels", c, "--classes", "QSO, YSO ", "--other", " Otro"]);
    assert!(line(&summary, "classes").contains("0=QSO, 1=YSO, 2=Otro (3 classes)"), "{summary}");
    let table = &read_json(&store.join(".zattrs")).unwrap()["ztf2zarr"]["labels"]["classes"];
    assert_eq!(table, &serde_json::json!({"0": "QSO", "1": "YSO", "2": "Otro"}));

    let before = tree_bytes(&store);
    for (args, words) in [
        (vec!["label", s, "--labels", c, "--other", "Otro"], vec!["--other", "--classes"]),
        (vec!["label", s, "--labels", c, "--classes", "QSO,,YSO"], vec!["empty class name"]),
        (vec!["label", s, "--labels", c, "--classes", "QSO,YSO,QSO"], vec!["`QSO` twice"]),
        (vec!["label", s, "--classes", "QSO"], vec!["required", "--labels <FILE.csv>"]),
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(words.iter().all(|w| message.contains(w)), "{args:?}: {message}");
    }
    assert_eq!(tree_bytes(&store), before);
    let fresh = dir.path().join("fresh.zarr");
    let output = run(&["build", night().to_str().unwrap(), "-o", fresh.to_str().unwrap(), "--classes", "QSO", "--other", "x"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--classes, --other only apply with --labels"), "{}", stderr(&output));
    assert!(!fresh.exists());
}

#[test]
fn label_build_and_info_count_the_alerts_of_every_class() {
    let dir = tempfile::tempdir().unwrap();
    let (store, csv) = labelled_setup(dir.path(), &["QSO", "YSO"]);
    let (s, c) = (store.to_str().unwrap(), csv.to_str().unwrap());
    // Extra is a class of the CSV whose one object is not in the store: 0 alerts, still shown.
    let mapping = ["--classes", "YSO,Extra,QSO", "--other", "rest"];
    let mut args = vec!["label", s, "--labels", c];
    args.extend(mapping);
    let summary = ztf2zarr_ok(&args);
    let layout = tables::catalog();
    let code = layout.index_of("label_code").unwrap();
    let mut per_code = [0_usize; 4];
    let mut unlabeled = 0;
    for row in StoreReader::open(&store, &TABLES).unwrap().catalog_rows().unwrap() {
        match usize::try_from(layout.read_i64(&row, code).unwrap()) {
            Ok(c) => per_code[c] += 1,
            Err(_) => unlabeled += 1,
        }
    }
    assert!(per_code[0] > 0 && per_code[2] > 0 && unlabeled > 0, "{per_code:?} {unlabeled}");
    let expected = format!("YSO {}, Extra 0, QSO {}, rest {}, (unlabeled) {unlabeled}", per_code[0], per_code[2], per_code[3]);
    assert_eq!(line(&summary, "per class"), format!("per class   {expected} (alerts)"), "{summary}");

    let built = dir.path().join("built.zarr");
    let night = night();
    let mut args = vec!["build", night.to_str().unwrap(), "-o", built.to_str().unwrap(), "--no-progress", "--labels", c];
    args.extend(mapping);
    let summary = ztf2zarr_ok(&args);
    assert_eq!(line(&summary, "per class"), format!("per class   {expected} (new alerts)"), "{summary}");

    for store in [s, built.to_str().unwrap()] {
        let text = ztf2zarr_ok(["info", store]);
        assert_eq!(line(&text, "labels"), format!("labels       {expected} (from labels.csv)"), "{text}");
        let info: serde_json::Value = serde_json::from_str(&ztf2zarr_ok(["info", store, "--json"])).unwrap();
        let classes: Vec<(i64, String, usize)> = info["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["code"].as_i64().unwrap(), c["label"].as_str().unwrap().to_string(), c["alerts"].as_u64().unwrap() as usize))
            .collect();
        let names = ["YSO", "Extra", "QSO", "rest"];
        let want: Vec<(i64, String, usize)> = (0..4).map(|i| (i as i64, names[i].to_string(), per_code[i])).collect();
        assert_eq!(classes, want);
        assert_eq!(info["labels"]["Extra"], 0);
    }
}

#[test]
fn a_split_that_leaves_a_class_out_of_val_or_test_warns() {
    let dir = tempfile::tempdir().unwrap();
    // 10 objects of QSO and one of RRL, every object labelled.
    let (store, csv) = labelled_setup(dir.path(), &["QSO"]);
    let s = store.to_str().unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let first_object = {
        let layout = tables::catalog();
        let column = layout.index_of("objectId").unwrap();
        let rows = StoreReader::open(&store, &TABLES).unwrap().catalog_rows().unwrap();
        let mut objects: Vec<String> = rows.iter().map(|r| layout.read_str(r, column).unwrap()).collect();
        objects.sort();
        objects[0].clone()
    };
    std::fs::write(&csv, format!("{text}{first_object},RRL,0.7\n")).unwrap();
    ztf2zarr_ok(["label", s, "--labels", csv.to_str().unwrap()]);

    let output = run(&["split", s, "--train", "0.6", "--val", "0.2", "--test", "0.2", "--seed", "1"]);
    assert_eq!(output.status.code(), Some(0), "a warning, not an error: {}", stderr(&output));
    let message = stderr(&output);
    let warnings: Vec<&str> = message.lines().filter(|l| l.starts_with("warning: class")).collect();
    assert_eq!(warnings.len(), 1, "QSO has objects in every split: {message}");
    assert!(warnings[0].contains("class `RRL` has no alert in val or test: its 1 alert (1 object) is in train"), "{message}");
    assert!(store.join("splits/train").exists(), "the split is written");

    // No test split asked for: a class missing from it is no news.
    let output = run(&["split", s, "--train", "0.8", "--val", "0.2", "--test", "0", "--seed", "1"]);
    let message = stderr(&output);
    assert!(message.contains("class `RRL` has no alert in val:") && !message.contains("QSO"), "{message}");
}

/// The row indices of a split's only chunk (a split array of this night is one chunk).
fn split_chunk(store: &Path, name: &str) -> Vec<i64> {
    let raw = zstd::decode_all(&std::fs::read(store.join(format!("splits/{name}/0"))).unwrap()[..]).unwrap();
    raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
}

/// `name`'s chunk written anew, soundly compressed, holding `rows`.
fn write_split_chunk(store: &Path, name: &str, rows: &[i64]) {
    let raw: Vec<u8> = rows.iter().flat_map(|r| r.to_le_bytes()).collect();
    std::fs::write(store.join(format!("splits/{name}/0")), zstd::encode_all(&raw[..], 1).unwrap()).unwrap();
}

#[test]
fn verify_finds_split_indices_outside_the_catalog_repeated_or_in_two_splits() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    let s = store.to_str().unwrap();
    ztf2zarr_ok(["build", night().to_str().unwrap(), "-o", s, "--no-progress"]);
    ztf2zarr_ok(["split", s, "--train", "0.5", "--val", "0.25", "--test", "0.25", "--seed", "1"]);
    let sound = ztf2zarr_ok(["verify", s]);
    assert!(sound.contains("ok       splits: 12 indices ascending, unique, in one split each, and all catalog rows"), "{sound}");
    let (train, val) = (split_chunk(&store, "train"), split_chunk(&store, "val"));
    assert!(train.len() >= 3 && !val.is_empty() && val.len() <= train.len(), "train {train:?}, val {val:?}");

    let last = train.len() - 1;
    let mut outside = train.clone();
    outside[last] = 12;
    let mut repeated = train.clone();
    repeated[1] = repeated[0];
    let cases = [
        ("train", outside, "PROBLEM  splits/train: 1 index is not a catalog row (the catalog has 12 rows), the first 12".to_string()),
        ("train", repeated, format!("PROBLEM  splits/train: row {} is listed twice", train[0])),
        ("val", train[..val.len()].to_vec(), format!("PROBLEM  splits/val: row {} is in splits/train too", train[0])),
    ];
    for (name, rows, problem) in cases {
        let original = split_chunk(&store, name);
        write_split_chunk(&store, name, &rows);
        let output = ztf2zarr(["verify", s]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(stdout.lines().any(|l| l.starts_with(&problem)), "no `{problem}` in:\n{stdout}");
        write_split_chunk(&store, name, &original);
    }
    ztf2zarr_ok(["verify", s]);
}
