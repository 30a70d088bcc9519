//! `ztf2zarr build` on the real ZTF alerts: accounting, decoding against an independent Avro
//! reader, edge placement, archives, determinism, and the error paths.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use apache_avro::types::Value;
use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;
use ztf2zarr::table::{Dtype, Layout};

use crate::util::{real_alerts, tree_bytes, ztf2zarr, ztf2zarr_ok};

fn build_real(store: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build".to_string(), real_alerts().display().to_string(), "-o".into(), store.display().to_string()];
    args.extend(extra.iter().map(|s| (*s).to_string()));
    ztf2zarr_ok(args)
}

fn column_str(layout: &Layout, row: &[u8], name: &str) -> String {
    layout.read_str(row, layout.index_of(name).unwrap()).unwrap()
}

#[test]
fn real_alerts_are_all_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("real.zarr");
    let summary = build_real(&store, &["--no-progress"]);
    let reader = StoreReader::open(&store, &TABLES).unwrap();
    assert_eq!(reader.rows(), 529, "{summary}");
    assert!(summary.contains("duplicates  1 "), "{summary}");

    let rejects: Vec<serde_json::Value> = crate::util::rejects_text(&store).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rejects.len(), 18);
    let reason_of = |needle: &str| -> Vec<String> {
        rejects
            .iter()
            .filter(|r| r["source"].as_str().unwrap().contains(needle))
            .map(|r| r["reason"].as_str().unwrap().to_string())
            .collect()
    };
    let jpeg = reason_of("ipac-2016-jpeg-cutouts/");
    assert_eq!(jpeg.len(), 10);
    assert!(jpeg.iter().all(|r| r.contains("JPEG")), "{jpeg:?}");
    let corrupt: Vec<String> = reason_of("-corrupt/");
    assert_eq!(corrupt.len(), 7);
    assert!(corrupt.iter().all(|r| r.starts_with("corrupt Avro") && r.contains("sync marker")), "{corrupt:?}");
    assert_eq!(reason_of("ZTF20abyfpze"), ["cutoutScience is null"]);

    // Every written candid is unique, and every non-rejected file is a row (or the one duplicate).
    let layout = tables::catalog();
    let rows = reader.catalog_rows().unwrap();
    let mut candids: Vec<i64> = rows.iter().map(|r| layout.read_i64(r, 0).unwrap()).collect();
    candids.sort_unstable();
    candids.dedup();
    assert_eq!(candids.len(), 529);
}

/// Compare every candidate field in the store with what apache-avro (an independent decoder)
/// reads from the same file: value-first (3.x) and null-first (4.x) unions, 1.8's fewer fields.
#[test]
fn catalog_equals_an_independent_avro_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("real.zarr");
    build_real(&store, &["--no-progress"]);
    let layout = tables::catalog();
    let rows = StoreReader::open(&store, &TABLES).unwrap().catalog_rows().unwrap();
    let mut seen_versions = HashMap::new();
    for row in &rows {
        let source = column_str(layout, row, "source");
        let file = std::fs::File::open(&source).unwrap();
        let record = apache_avro::Reader::new(file).unwrap().next().unwrap().unwrap();
        let Value::Record(top) = record else { panic!("{source}: not a record") };
        let top: HashMap<_, _> = top.into_iter().collect();
        *seen_versions.entry(format!("{:?}", top.get("schemavsn"))).or_insert(0) += 1;
        let Value::Record(candidate) = unwrap_union(&top["candidate"]) else { panic!("{source}: no candidate") };
        let candidate: HashMap<_, _> = candidate.iter().cloned().collect();
        for column in layout.columns() {
            let Some(field) = column.source.strip_prefix("candidate.") else { continue };
            let expected = candidate.get(field).map_or(&Value::Null, unwrap_union);
            assert_cell(layout, row, column.name.as_str(), expected, &source);
        }
        assert_cell(layout, row, "objectId", &top["objectId"], &source);
        assert_cell(layout, row, "candid", &top["candid"], &source);
    }
    assert!(seen_versions.len() >= 5, "expected several schema versions, got {seen_versions:?}");
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn assert_cell(layout: &Layout, row: &[u8], name: &str, expected: &Value, source: &str) {
    let index = layout.index_of(name).unwrap();
    let column = &layout.columns()[index];
    let cell = &row[column.offset..column.offset + column.dtype.size()];
    let context = || format!("{source}: column {name}: expected {expected:?}");
    match (column.dtype, expected) {
        (Dtype::F4, Value::Float(v)) => assert_eq!(f32::from_le_bytes(cell.try_into().unwrap()).to_bits(), v.to_bits(), "{}", context()),
        (Dtype::F4, Value::Null) => assert!(f32::from_le_bytes(cell.try_into().unwrap()).is_nan(), "{}", context()),
        (Dtype::F8, Value::Double(v)) => assert_eq!(f64::from_le_bytes(cell.try_into().unwrap()).to_bits(), v.to_bits(), "{}", context()),
        (Dtype::F8, Value::Null) => assert!(f64::from_le_bytes(cell.try_into().unwrap()).is_nan(), "{}", context()),
        (Dtype::I4, Value::Int(v)) => assert_eq!(i32::from_le_bytes(cell.try_into().unwrap()), *v, "{}", context()),
        (Dtype::I4, Value::Null) => assert_eq!(i32::from_le_bytes(cell.try_into().unwrap()), i32::MIN, "{}", context()),
        (Dtype::I8, Value::Long(v)) => assert_eq!(i64::from_le_bytes(cell.try_into().unwrap()), *v, "{}", context()),
        (Dtype::I8, Value::Null) => assert_eq!(i64::from_le_bytes(cell.try_into().unwrap()), i64::MIN, "{}", context()),
        (Dtype::Unicode(_), Value::String(v)) => assert_eq!(&layout.read_str(row, index).unwrap(), v, "{}", context()),
        (Dtype::Unicode(_), Value::Null) => assert_eq!(layout.read_str(row, index).unwrap(), "", "{}", context()),
        (dtype, value) => panic!("{}: unexpected pairing {dtype:?} / {value:?}", context()),
    }
}

#[test]
fn edge_cutouts_are_placed_by_position_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("full.zarr");
    build_real(&store, &["--no-progress", "--stamp-size", "63", "--keep-nan"]);
    let layout = tables::catalog();
    let reader = StoreReader::open(&store, &TABLES).unwrap();
    let rows = reader.catalog_rows().unwrap();
    let stamps = reader.stamps().unwrap();
    let flags = layout.index_of("stamp_flags").unwrap();
    let find = |candid: i64| rows.iter().position(|r| layout.read_i64(r, 0) == Some(candid)).unwrap();
    let edge_rows: Vec<usize> = (0..rows.len()).filter(|i| layout.read_i64(&rows[*i], flags).unwrap() & 1 != 0).collect();
    assert_eq!(edge_rows.len(), 7);

    // 63 rows x 44 columns, xpos 3059.9 (high-x edge): the image fills columns 0..44, the rest is fill (NaN).
    let stamp = &stamps[find(697_252_382_115_010_005)];
    for channel in 0..3 {
        let image = &stamp[channel * 63 * 63..(channel + 1) * 63 * 63];
        assert!(image.chunks(63).all(|row| row[44..].iter().all(|p| p.is_nan())), "channel {channel}: columns 44.. must be fill");
        // The clipped image itself has some real NaN pixels, but most are values.
        let values = image.chunks(63).map(|row| row[..44].iter().filter(|p| !p.is_nan()).count()).sum::<usize>();
        assert!(values > 63 * 44 * 3 / 4, "channel {channel}: only {values} values in columns 0..44");
    }
    // 53 rows x 63 columns, ypos 3058.6 (high-y edge): rows 53.. are fill.
    let stamp = &stamps[find(697_251_920_715_010_005)];
    assert!(stamp[53 * 63..63 * 63].iter().all(|p| p.is_nan()));
    assert!(stamp[..53 * 63].iter().filter(|p| !p.is_nan()).count() > 53 * 60);
}

#[test]
fn default_stamps_have_no_nan_and_flag_those_that_had() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build_real(&store, &["--no-progress"]);
    let reader = StoreReader::open(&store, &TABLES).unwrap();
    assert_eq!(reader.stamp_size(), 21);
    let stamps = reader.stamps().unwrap();
    assert!(stamps.iter().flatten().all(|p| !p.is_nan()));
    let layout = tables::catalog();
    let flags = layout.index_of("stamp_flags").unwrap();
    let had_nan = reader.catalog_rows().unwrap().iter().filter(|r| layout.read_i64(r, flags).unwrap() & 2 != 0).count();
    assert!(had_nan > 0, "the real data has NaN pixels inside some 21x21 crops");
}

/// A nightly archive gives the same rows as the loose files it holds.
#[test]
fn tarball_input_equals_loose_files() {
    let dir = tempfile::tempdir().unwrap();
    let night = real_alerts().join("kowalski-20200202");
    let archive = dir.path().join("ztf_public_20200202.tar.gz");
    let mut names: Vec<_> = std::fs::read_dir(&night).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    {
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for path in &names {
            tar.append_path_with_name(path, Path::new("ztf_public_20200202").join(path.file_name().unwrap())).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
    }
    let from_tar = dir.path().join("tar.zarr");
    let from_files = dir.path().join("files.zarr");
    ztf2zarr_ok(["build", archive.to_str().unwrap(), "-o", from_tar.to_str().unwrap()]);
    ztf2zarr_ok(["build", night.to_str().unwrap(), "-o", from_files.to_str().unwrap()]);
    let (a, b) = (StoreReader::open(&from_tar, &TABLES).unwrap(), StoreReader::open(&from_files, &TABLES).unwrap());
    assert_eq!(a.rows(), names.len());
    assert_eq!(a.stamps().unwrap(), b.stamps().unwrap());
    let layout = tables::catalog();
    let source = layout.index_of("source").unwrap();
    for (row_a, row_b) in a.catalog_rows().unwrap().iter().zip(b.catalog_rows().unwrap()) {
        let mut row_a = row_a.clone();
        let mut row_b = row_b.clone();
        let name_a = layout.read_str(&row_a, source).unwrap();
        assert!(name_a.contains("ztf_public_20200202.tar.gz:ztf_public_20200202/"), "{name_a}");
        let column = &layout.columns()[source];
        row_a[column.offset..column.offset + column.dtype.size()].fill(0);
        row_b[column.offset..column.offset + column.dtype.size()].fill(0);
        assert_eq!(row_a, row_b);
    }
}

#[test]
fn thread_count_and_chunking_do_not_change_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.zarr");
    let two = dir.path().join("two.zarr");
    let big = dir.path().join("big.zarr");
    build_real(&one, &["--threads", "1", "--chunk-rows", "100"]);
    build_real(&two, &["--threads", "2", "--chunk-rows", "100"]);
    assert_eq!(tree_bytes(&one), tree_bytes(&two), "store bytes differ between 1 and 2 threads");
    assert!(one.join("catalog/5").is_file() && !one.join("catalog/6").exists(), "529 rows in chunks of 100 make 6 chunks");
    build_real(&big, &["--chunk-rows", "1000"]);
    let (a, b) = (StoreReader::open(&one, &TABLES).unwrap(), StoreReader::open(&big, &TABLES).unwrap());
    assert_eq!(a.catalog_rows().unwrap(), b.catalog_rows().unwrap());
    assert_eq!(a.stamps().unwrap(), b.stamps().unwrap());
}

#[test]
fn strict_refuses_rejects_and_leaves_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("strict.zarr");
    let output = ztf2zarr(["build", real_alerts().join("ampel").to_str().unwrap(), "-o", store.to_str().unwrap(), "--strict"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--strict") && stderr.contains(".avro"), "{stderr}");
    assert!(!store.exists());
}

#[test]
fn bad_paths_and_options_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("x.zarr");
    let output = ztf2zarr(["build", "/no/such/night.tar.gz", "-o", store.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/night.tar.gz"));
    assert!(!store.exists());

    let not_a_store = dir.path().join("notes");
    std::fs::create_dir(&not_a_store).unwrap();
    std::fs::write(not_a_store.join("keep.txt"), b"mine").unwrap();
    let output = ztf2zarr(["build", real_alerts().join("boom").to_str().unwrap(), "-o", not_a_store.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a ztf2zarr store"));
    assert_eq!(std::fs::read(not_a_store.join("keep.txt")).unwrap(), b"mine");

    let output = ztf2zarr(["build", real_alerts().to_str().unwrap(), "-o", store.to_str().unwrap(), "--stamp-size", "20"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--stamp-size 20"));

    let unwritable = Path::new("/proc/ztf2zarr-test.zarr");
    let output = ztf2zarr(["build", real_alerts().join("boom").to_str().unwrap(), "-o", unwritable.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/proc/ztf2zarr-test.zarr"));
}
