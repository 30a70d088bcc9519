//! Light curves across builds: an append of a later night gives the light curves of a one-shot
//! build (each epoch once, each alert's history the epochs its packet carried), and a store
//! without them stays without.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{assert_sound, real_alerts, ztf2zarr, ztf2zarr_ok};

fn nights() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let root = real_alerts();
    (
        vec![root.join("kowalski-20200202"), root.join("ztf-avro-alert"), root.join("fink-alert-simulator-20181129")],
        vec![root.join("fink-alert-schemas"), root.join("ampel/tests"), root.join("boom"), root.join("ampel/ztf_public_20180601")],
    )
}

fn build(store: &Path, inputs: &[PathBuf], extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".to_string(), store.display().to_string(), "--chunk-rows".into(), "50".into(), "--no-progress".into()]);
    args.extend(extra.iter().map(|s| (*s).to_string()));
    ztf2zarr_ok(args)
}

/// A light-curve table's rows, packed (its columns put side by side), or a plain array's bytes.
fn table(reader: &StoreReader, name: &str) -> Vec<u8> {
    if let Some(table) = TABLES.lightcurve_table(name) {
        return reader.table_rows(&table).unwrap();
    }
    let spec = reader.arrays().into_iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no {name}"));
    reader.table_bytes(&spec).unwrap()
}

/// A packed row without the carrying alert's `alert_candid` and `alert_jd` (its last 16 bytes):
/// the values a packet carried.
fn values(row: &[u8]) -> Vec<u8> {
    row[..row.len() - 16].to_vec()
}

/// One alert's candid with the epochs and forced-photometry rows (sorted bytes) its history names.
type History = (i64, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Every table row (as bytes), and per alert (by candid) the rows its history names.
struct Curves {
    epochs: BTreeSet<Vec<u8>>,
    forced: BTreeSet<Vec<u8>>,
    histories: BTreeSet<History>,
}

fn curves(store: &Path) -> Curves {
    let reader = StoreReader::open(store, &TABLES).unwrap();
    let rows = |name: &str, itemsize: usize| -> Vec<Vec<u8>> { table(&reader, name).chunks_exact(itemsize).map(<[u8]>::to_vec).collect() };
    let epochs = rows("lightcurves/epochs", tables::epochs().itemsize());
    let forced = rows("lightcurves/forced", tables::forced().itemsize());
    let entries = |name: &str| -> Vec<usize> {
        table(&reader, name).chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize).collect()
    };
    let (carried_epochs, carried_forced) = (entries("lightcurves/history_epochs"), entries("lightcurves/history_forced"));
    let alerts = ztf2zarr::survey::ztf::tables::alerts_layout();
    let candids = reader.catalog_candids().unwrap();
    let histories = table(&reader, "lightcurves/alerts")
        .chunks_exact(alerts.itemsize())
        .zip(candids)
        .map(|(row, candid)| {
            let n = |name: &str| alerts.read_i64(row, alerts.index_of(name).unwrap()).unwrap() as usize;
            let pick = |entries: &[usize], rows: &[Vec<u8>], start: usize, count: usize| -> Vec<Vec<u8>> {
                let mut picked: Vec<Vec<u8>> = entries[start..start + count].iter().map(|r| rows[*r].clone()).collect();
                picked.sort();
                picked
            };
            (
                candid,
                pick(&carried_epochs, &epochs, n("history_start"), n("history_count")),
                pick(&carried_forced, &forced, n("forced_start"), n("forced_count")),
            )
        })
        .collect();
    let epochs_set: BTreeSet<Vec<u8>> = epochs.iter().cloned().collect();
    assert_eq!(epochs_set.len(), epochs.len(), "{}: an epochs row stored twice", store.display());
    Curves { epochs: epochs_set, forced: forced.into_iter().collect(), histories }
}

#[test]
fn an_appended_night_gives_the_light_curves_of_a_one_shot_build() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let one_shot = dir.path().join("one.zarr");
    let appended = dir.path().join("two.zarr");
    build(&one_shot, &[a.clone(), b.clone()].concat(), &[]);
    build(&appended, &a, &[]);
    build(&appended, &b, &[]);
    let (one, two) = (curves(&one_shot), curves(&appended));
    assert!(one.epochs.len() > 1000 && !one.forced.is_empty(), "real alerts give epochs and (schema 4.x) forced photometry");
    assert!(one.epochs == two.epochs, "epochs differ: {} vs {} rows", one.epochs.len(), two.epochs.len());
    assert!(one.forced == two.forced, "forced photometry differs");
    assert!(one.histories == two.histories, "some alert's history differs");
    // Appending a night again adds nothing.
    let again = build(&appended, &b, &[]);
    assert!(again.contains("written     0 alerts"), "{again}");
    assert!(curves(&appended).epochs == one.epochs);
    assert_sound(&appended);
}

#[test]
fn an_older_night_appended_after_a_newer_one_gives_each_alert_exactly_its_own_values() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let one_shot = dir.path().join("one.zarr");
    let reversed = dir.path().join("reversed.zarr");
    build(&one_shot, &[a.clone(), b.clone()].concat(), &[]);
    build(&reversed, &b, &[]);
    build(&reversed, &a, &[]);
    // Whatever order the nights came in, an alert's history holds the values its own packet
    // carried: only which alert first carried a version (alert_candid, alert_jd) may differ.
    let own_values = |curves: &Curves| -> BTreeSet<History> {
        let strip = |rows: &[Vec<u8>]| -> Vec<Vec<u8>> {
            let mut rows: Vec<Vec<u8>> = rows.iter().map(|r| values(r)).collect();
            rows.sort();
            rows
        };
        curves.histories.iter().map(|(candid, epochs, forced)| (*candid, strip(epochs), strip(forced))).collect()
    };
    let (one, two) = (curves(&one_shot), curves(&reversed));
    assert_eq!(one.histories.len(), two.histories.len());
    assert!(own_values(&one) == own_values(&two), "some alert's history holds values its packet did not carry");
    let versions = |rows: &BTreeSet<Vec<u8>>| -> BTreeSet<Vec<u8>> { rows.iter().map(|r| values(r)).collect() };
    assert!(versions(&one.epochs) == versions(&two.epochs), "the same versions whatever the order");
    assert_sound(&reversed);
}

#[test]
fn a_store_without_light_curves_stays_without_and_refuses_to_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let plain = dir.path().join("plain.zarr");
    build(&plain, &a, &["--no-lightcurves"]);
    build(&plain, &b, &[]);
    assert!(!plain.join("lightcurves").exists(), "an append keeps a store without light curves so");
    let info = String::from_utf8_lossy(&ztf2zarr(["info", plain.to_str().unwrap()]).stdout).into_owned();
    assert!(info.contains("light curves -"), "{info}");
    let with = dir.path().join("with.zarr");
    build(&with, &a, &[]);
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(b.iter().map(|p| p.display().to_string()));
    args.extend(["-o".into(), with.display().to_string(), "--no-lightcurves".into()]);
    let refused = ztf2zarr(&args);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--no-lightcurves"), "{refused:?}");
    let info = String::from_utf8_lossy(&ztf2zarr(["info", with.to_str().unwrap()]).stdout).into_owned();
    assert!(info.contains("light curves ") && info.contains("objects:") && info.contains("upper limits"), "{info}");
}

/// A store built by the release before the light-curve columns (`ztf2zarr build` of 12
/// `data-samples` alerts, `--stamp-size 3`; tests/fixtures/README.md says how it was made).
fn legacy_store(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/structured-lightcurves.zarr");
    let store = dir.join("legacy.zarr");
    copy_tree(&fixture, &store);
    store
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn a_store_of_the_structured_layout_reads_and_refuses_writes_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = legacy_store(dir.path());
    assert!(store.join("lightcurves/epochs/.zarray").is_file(), "the fixture has the structured layout");
    let before = crate::util::tree_bytes(&store);
    let info = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    assert!(info.contains("structured layout of an earlier release"), "{info}");
    let verify = ztf2zarr_ok(["verify", store.to_str().unwrap()]);
    assert!(verify.contains("structured layout") && verify.contains("sound"), "{verify}");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples");
    let labels = samples.join("labels.csv");
    for args in [
        vec!["build".to_string(), samples.display().to_string(), "-o".into(), store.display().to_string(), "--no-progress".into()],
        vec!["label".to_string(), store.display().to_string(), "--labels".into(), labels.display().to_string()],
        vec!["split".to_string(), store.display().to_string()],
    ] {
        let refused = ztf2zarr(&args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{}: {stderr}", args[0]);
        assert!(stderr.contains("structured layout") && stderr.contains("build a new store"), "{}: {stderr}", args[0]);
    }
    assert!(crate::util::tree_bytes(&store) == before, "a refused command changed the store");
}

/// A synthetic alert whose `prv_candidates` get one more entry: a copy of its first detection
/// with `change` applied (a conflicting copy of the same candid).
fn with_conflicting_copy(index: usize, change: impl Fn(&mut Vec<(String, apache_avro::types::Value)>)) -> Vec<u8> {
    use apache_avro::types::Value;
    crate::hostile::edited_alert(index, |fields| {
        let (_, prv) = fields.iter_mut().find(|(name, _)| name == "prv_candidates").unwrap();
        let Value::Union(_, list) = prv else { panic!("prv_candidates is a union: {prv:?}") };
        let Value::Array(entries) = list.as_mut() else { panic!("prv_candidates holds an array") };
        let is_detection = |entry: &Value| {
            let Value::Record(entry) = entry else { return false };
            entry.iter().any(|(name, value)| name == "candid" && matches!(value, Value::Union(_, v) if !matches!(**v, Value::Null)))
        };
        let Some(Value::Record(mut copy)) = entries.iter().find(|e| is_detection(e)).cloned() else { panic!("a detection in the history") };
        change(&mut copy);
        entries.push(Value::Record(copy));
    })
}

#[test]
fn a_candid_carried_with_conflicting_values_is_another_version_and_verify_agrees() {
    use apache_avro::types::Value;
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let shift_jd = |entry: &mut Vec<(String, Value)>| {
        for (name, value) in entry.iter_mut() {
            if name == "jd" {
                if let Value::Double(jd) = value {
                    *jd += 1e-4;
                }
            }
        }
    };
    std::fs::write(inputs.join("a.avro"), with_conflicting_copy(3, shift_jd)).unwrap();
    std::fs::write(inputs.join("b.avro"), with_conflicting_copy(40, |_| {})).unwrap();
    let store = dir.path().join("s.zarr");
    let summary = build(&store, std::slice::from_ref(&inputs), &[]);
    assert!(summary.contains("written     2 alerts"), "{summary}");
    assert_sound(&store);
    let reader = StoreReader::open(&store, &TABLES).unwrap();
    let layout = tables::epochs();
    let rows = table(&reader, "lightcurves/epochs");
    let candid = layout.index_of("candid").unwrap();
    let mut per_candid = std::collections::BTreeMap::<i64, usize>::new();
    for row in rows.chunks_exact(layout.itemsize()) {
        if let Some(c) = layout.read_i64(row, candid).filter(|c| *c != i64::MIN) {
            *per_candid.entry(c).or_default() += 1;
        }
    }
    assert!(per_candid.values().any(|n| *n == 2), "the copy with another jd is a second version: {per_candid:?}");
    assert!(per_candid.values().all(|n| *n <= 2), "an identical copy adds nothing: {per_candid:?}");
    // The same inputs appended again add nothing, and the store stays sound.
    let again = build(&store, std::slice::from_ref(&inputs), &[]);
    assert!(again.contains("written     0 alerts"), "{again}");
    assert_sound(&store);
}
