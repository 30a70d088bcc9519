//! The generator's schema 4.02 with measured history depths (`ztf2zarr generate --schema 4.02
//! --history measured`): its alerts decode through the project's own decoder with their forced
//! photometry, a night of them builds into a sound store, and the options are deterministic.

use std::collections::BTreeSet;

use apache_avro::types::Value;
use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;
use ztf2zarr::survey::ztf::{Decoder, StampSpec};
use ztf2zarr::synth::{synth_alert, synth_record, AlertSchema, HistoryDepth, SynthConfig};
use ztf2zarr::table::Layout;

use crate::util::{assert_sound, tree_bytes, ztf2zarr_ok};

fn deep(count: usize) -> SynthConfig {
    SynthConfig { count, seed: 5, schema: AlertSchema::V4_02, history: HistoryDepth::Measured, ..SynthConfig::default() }
}

/// Field `name` of a record, looking through its union.
fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
    let Value::Record(fields) = record else { panic!("not a record") };
    match &fields.iter().find(|(key, _)| key == name).unwrap_or_else(|| panic!("no field {name}")).1 {
        Value::Union(_, inner) => inner,
        plain => plain,
    }
}

fn items<'v>(record: &'v Value, name: &str) -> &'v [Value] {
    let Value::Array(items) = field(record, name) else { panic!("{name} is not an array") };
    items
}

/// (pid, jd, fid) of an fp_hist or prv_candidate record.
fn exposure(record: &Value) -> (i64, f64, i32) {
    let (Value::Long(pid), Value::Double(jd), Value::Int(fid)) = (field(record, "pid"), field(record, "jd"), field(record, "fid")) else {
        panic!("pid, jd, fid of unexpected types")
    };
    (*pid, *jd, *fid)
}

fn object_id(record: &Value) -> String {
    let Value::String(id) = field(record, "objectId") else { panic!("objectId is not a string") };
    id.clone()
}

#[test]
fn generated_4_02_alerts_decode_with_their_forced_photometry() {
    let cfg = deep(30);
    let decoder = Decoder::new(StampSpec { size: 21, keep_nan: false, keep_masked: false });
    let (catalog, forced) = (tables::catalog(), tables::forced());
    let column = |layout: &Layout, name: &str| layout.index_of(name).unwrap_or_else(|| panic!("no column {name}"));
    for index in 0..cfg.count {
        let record = synth_record(&cfg, index);
        let results = decoder.decode_file(&format!("{index}.avro"), &synth_alert(&cfg, index));
        assert_eq!(results.len(), 1);
        let alert = results.into_iter().next().unwrap().unwrap_or_else(|reject| panic!("alert {index} rejected: {reject:?}"));
        let (prv, fp) = (items(&record, "prv_candidates"), items(&record, "fp_hists"));
        assert_eq!(catalog.read_i64(&alert.row, column(catalog, "n_prv_candidates")), Some(prv.len() as i64));
        assert_eq!(catalog.read_i64(&alert.row, column(catalog, "n_fp_hists")), Some(fp.len() as i64));
        assert_eq!(catalog.read_str(&alert.row, column(catalog, "schemavsn")).as_deref(), Some("4.02"));
        let history = alert.history.expect("light curves are read");
        assert_eq!(history.epochs.len(), (prv.len() + 1) * tables::epochs().itemsize(), "prv_candidates and the candidate");
        let rows: Vec<&[u8]> = history.forced.chunks_exact(forced.itemsize()).collect();
        assert_eq!(rows.len(), fp.len(), "alert {index}: one forced row per fp_hists entry");
        for (row, entry) in rows.iter().zip(fp) {
            let (pid, jd, fid) = exposure(entry);
            assert_eq!(forced.read_i64(row, column(forced, "pid")), Some(pid));
            assert_eq!(forced.read_f64(row, column(forced, "jd")), Some(jd));
            assert_eq!(forced.read_i64(row, column(forced, "fid")), Some(i64::from(fid)));
            assert_eq!(forced.read_str(row, column(forced, "objectId")), Some(object_id(&record)));
        }
    }
}

#[test]
fn a_generated_4_02_night_with_measured_depths_builds_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = deep(150);
    let out = dir.path().join("night");
    ztf2zarr_ok([
        "generate",
        "-o",
        out.to_str().unwrap(),
        "--count",
        "150",
        "--seed",
        "5",
        "--schema",
        "4.02",
        "--history",
        "measured",
        "--tarball",
        "ztf_public_20250101.tar.gz",
    ]);
    let store = dir.path().join("deep.zarr");
    let archive = out.join("ztf_public_20250101.tar.gz");
    let summary = ztf2zarr_ok(["build", archive.to_str().unwrap(), "-o", store.to_str().unwrap(), "--no-progress"]);
    assert!(summary.contains("written     150 alerts") && summary.contains("rejected    0"), "{summary}");
    assert!(summary.contains("4.02 ×150"), "{summary}");
    assert_sound(&store);

    // Each forced-photometry epoch once: the alerts of an object carry the same values for it.
    let epochs: BTreeSet<(String, i64)> = (0..cfg.count)
        .flat_map(|index| {
            let record = synth_record(&cfg, index);
            items(&record, "fp_hists").iter().map(|entry| (object_id(&record), exposure(entry).0)).collect::<Vec<_>>()
        })
        .collect();
    let reader = StoreReader::open(&store, &TABLES).unwrap();
    let rows = reader.table_rows(&TABLES.lightcurve_table("lightcurves/forced").unwrap()).unwrap();
    assert_eq!(rows.len() / tables::forced().itemsize(), epochs.len());
    assert!(epochs.len() > 150, "measured depths: about 17 epochs per object, {} in all", epochs.len());
}

#[test]
fn generate_schema_and_history_options_are_deterministic_and_default_to_3_3_short() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["generate", "-o", out.to_str().unwrap(), "--count", "12"];
        args.extend(extra);
        ztf2zarr_ok(args);
        tree_bytes(&out)
    };
    let deep = ["--schema", "4.02", "--history", "measured"];
    assert!(run("a", &deep) == run("b", &deep), "same options, same bytes");
    assert!(run("plain", &[]) == run("spelled", &["--schema", "3.3", "--history", "short"]), "the defaults are 3.3, short");
    assert!(run("c", &deep) != run("d", &[]));
    let help = ztf2zarr_ok(["generate", "--help"]);
    assert!(help.contains("--schema 4.02 --history measured"), "an example in --help: {help}");
}
