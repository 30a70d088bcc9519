//! ZTF's masked-pixel value (−3.4028235e38) on the two real alerts whose 21×21 stamps hold it:
//! stored as a missing pixel by default (0, or NaN with `--keep-nan`), as it is with
//! `--keep-masked`, flagged either way; one policy per store, enforced on append.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use ztf2zarr::store::{read_json, StoreReader};
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{real_alerts, tree_bytes, ztf2zarr, ztf2zarr_ok};

/// The real alerts whose template cutout holds masked pixels inside the central 21×21 crop
/// (33 and 36 of them); three more alerts have masked pixels outside it only.
const MASKED_ALERTS: [&str; 2] = ["697251921615015003.avro", "697252384215015000.avro"];
const MASKED_IN_CROPS: usize = 33 + 36;
const SIDE: usize = 21;
const FLAG_MASKED: i64 = 8;

fn inputs() -> Vec<PathBuf> {
    MASKED_ALERTS.iter().map(|name| real_alerts().join("fink-alert-simulator-20181129").join(name)).collect()
}

fn build(store: &Path, inputs: &[PathBuf], extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".to_string(), store.display().to_string(), "--no-progress".into()]);
    args.extend(extra.iter().map(|s| (*s).to_string()));
    ztf2zarr(args)
}

fn build_ok(store: &Path, inputs: &[PathBuf], extra: &[&str]) {
    let output = build(store, inputs, extra);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The central 21×21 pixels of each cutout of `path`, read without ztf2zarr's decoder:
/// apache-avro for the packet, flate2 for the gzip, and the FITS data block (BITPIX −32,
/// big-endian, after the 2880-byte header blocks) by hand.
fn reference_crop(path: &Path) -> Vec<f32> {
    let record = apache_avro::Reader::new(std::fs::File::open(path).unwrap()).unwrap().next().unwrap().unwrap();
    let Value::Record(top) = record else { panic!("{}: not a record", path.display()) };
    let top: HashMap<_, _> = top.into_iter().collect();
    let mut pixels = Vec::new();
    for name in ["cutoutScience", "cutoutTemplate", "cutoutDifference"] {
        let Value::Union(_, cutout) = &top[name] else { panic!("{name}: not a union") };
        let Value::Record(fields) = cutout.as_ref() else { panic!("{name}: null") };
        let Some((_, Value::Bytes(gz))) = fields.iter().find(|(n, _)| n == "stampData") else { panic!("{name}: no stampData") };
        let mut fits = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut fits).unwrap();
        let end = fits.chunks(80).position(|card| card.starts_with(b"END ")).expect("END card") * 80;
        let data = &fits[end.div_ceil(2880) * 2880..];
        let image: Vec<f32> = data.chunks_exact(4).take(63 * 63).map(|b| f32::from_be_bytes(b.try_into().unwrap())).collect();
        assert_eq!(image.len(), 63 * 63, "{name}: a full 63x63 cutout");
        for row in 21..42 {
            pixels.extend_from_slice(&image[row * 63 + 21..row * 63 + 42]);
        }
    }
    pixels
}

/// Each row's stamps and `stamp_flags`, with the reference crop of the alert it came from.
fn rows(store: &Path) -> Vec<(Vec<f32>, i64, Vec<f32>)> {
    let reader = StoreReader::open(store, &TABLES).unwrap();
    let layout = tables::catalog();
    let (flags, source) = (layout.index_of("stamp_flags").unwrap(), layout.index_of("source").unwrap());
    let catalog = reader.catalog_rows().unwrap();
    reader
        .stamps()
        .unwrap()
        .into_iter()
        .zip(&catalog)
        .map(|(stamp, row)| {
            let reference = reference_crop(Path::new(&layout.read_str(row, source).unwrap()));
            (stamp, layout.read_i64(row, flags).unwrap(), reference)
        })
        .collect()
}

/// Every pixel equals the reference, except the masked ones, which `masked` must accept;
/// returns how many pixels were masked.
fn check(store: &Path, masked: impl Fn(f32) -> bool) -> usize {
    let mut count = 0;
    let rows = rows(store);
    assert_eq!(rows.len(), 2);
    for (stamp, flags, reference) in rows {
        assert_eq!(stamp.len(), 3 * SIDE * SIDE);
        assert_ne!(flags & FLAG_MASKED, 0, "the masked-pixels flag (8) is set");
        for (got, want) in stamp.iter().zip(&reference) {
            if *want <= -1e30 {
                count += 1;
                assert!(masked(*got), "masked pixel stored as {got}");
            } else if want.is_nan() {
                continue; // NaN policy, tested elsewhere
            } else {
                assert_eq!(got.to_bits(), want.to_bits());
            }
        }
    }
    count
}

/// A store of both alerts built with `extra`.
fn build_both(extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build_ok(&store, &inputs(), extra);
    (dir, store)
}

/// The store names its policy in the root and stamps attrs and in `info`.
fn assert_described(store: &Path, policy: &str, stored_as: &str) {
    assert_eq!(read_json(&store.join(".zattrs")).unwrap()["ztf2zarr"]["masked_policy"], policy);
    let stamp_attrs = read_json(&store.join("stamps/.zattrs")).unwrap();
    assert_eq!(stamp_attrs["masked_policy"], policy);
    let words = stamp_attrs["masked_pixels"].as_str().unwrap();
    assert!(words.contains(stored_as), "{words}");
    let info: serde_json::Value = serde_json::from_str(&ztf2zarr_ok(["info", store.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!((&info["masked_policy"], &info["stamp_flags"]["masked_pixels"]), (&policy.into(), &2.into()));
    let text = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    assert!(text.contains(&format!(", masked pixels {stored_as}")), "{text}");
}

#[test]
fn masked_pixels_are_stored_as_zero_by_default_and_flagged() {
    let (_dir, store) = build_both(&[]);
    assert_eq!(check(&store, |p| p == 0.0), MASKED_IN_CROPS);
    let stamps = StoreReader::open(&store, &TABLES).unwrap().stamps().unwrap();
    assert!(stamps.iter().flatten().all(|p| p.is_finite() && *p > -1e30), "no masked value and no NaN reaches the store");
    assert_described(&store, "missing", "stored as 0");
}

#[test]
fn keep_masked_keeps_the_value_as_it_is() {
    let (_dir, store) = build_both(&["--keep-masked"]);
    assert_eq!(check(&store, |p| p == f32::MIN), MASKED_IN_CROPS);
    assert_described(&store, "keep", "kept as");
}

#[test]
fn keep_nan_stores_masked_pixels_as_nan() {
    let (_dir, store) = build_both(&["--keep-nan"]);
    assert_eq!(check(&store, f32::is_nan), MASKED_IN_CROPS);
    let stamps = StoreReader::open(&store, &TABLES).unwrap().stamps().unwrap();
    assert!(stamps.iter().flatten().all(|p| *p > -1e30 || p.is_nan()));
    assert_described(&store, "missing", "stored as NaN");
}

#[test]
fn an_append_keeps_the_store_s_masked_policy() {
    let dir = tempfile::tempdir().unwrap();
    let [first, second] = <[PathBuf; 2]>::try_from(inputs()).unwrap();
    // A store that stores masked pixels as missing refuses --keep-masked, and changes nothing.
    let store = dir.path().join("s.zarr");
    build_ok(&store, std::slice::from_ref(&first), &[]);
    let before = tree_bytes(&store);
    let output = build(&store, std::slice::from_ref(&second), &["--keep-masked"]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("s.zarr") && message.contains("--keep-masked") && message.contains("masked-pixel policies"), "{message}");
    assert_eq!(tree_bytes(&store), before);

    // A store that keeps them goes on keeping them when an append does not say --keep-masked.
    let kept = dir.path().join("kept.zarr");
    build_ok(&kept, std::slice::from_ref(&first), &["--keep-masked"]);
    build_ok(&kept, std::slice::from_ref(&second), &[]);
    assert_eq!(check(&kept, |p| p == f32::MIN), MASKED_IN_CROPS);

    // A store written before the policy was recorded kept the value, and so do its appends.
    let old = dir.path().join("old.zarr");
    build_ok(&old, std::slice::from_ref(&first), &["--keep-masked"]);
    for key in [".zattrs", ".zmetadata"] {
        let path = old.join(key);
        let mut json = read_json(&path).unwrap();
        let attrs = if key == ".zattrs" { &mut json } else { &mut json["metadata"][".zattrs"] };
        assert!(attrs["ztf2zarr"].as_object_mut().unwrap().remove("masked_policy").is_some());
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
    build_ok(&old, std::slice::from_ref(&second), &[]);
    assert_eq!(check(&old, |p| p == f32::MIN), MASKED_IN_CROPS);
    assert_eq!(read_json(&old.join(".zattrs")).unwrap()["ztf2zarr"]["masked_policy"], "keep");
}
