//! `ztf2zarr generate --survey lsst`: synthetic Rubin alerts of every bundled schema, framed as
//! Kafka messages (Confluent header) or in one container file, with three-HDU FITS cutouts that
//! hold the source where the cutout rule puts it, and the same bytes for the same seed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use ztf2zarr::formats::fits;
use ztf2zarr::synth::LsstSchema;

use crate::util::{tree_bytes, ztf2zarr, ztf2zarr_ok};

fn generate(dir: &Path, extra: &[&str]) -> Vec<PathBuf> {
    let mut args = vec!["generate", "--survey", "lsst", "-o", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    ztf2zarr_ok(args);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
}

/// Field `name` of a record, looking through its union.
fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
    let Value::Record(fields) = record else { panic!("not a record") };
    match &fields.iter().find(|(key, _)| key == name).unwrap_or_else(|| panic!("no field {name}")).1 {
        Value::Union(_, inner) => inner,
        plain => plain,
    }
}

fn float(value: &Value) -> f64 {
    match value {
        Value::Float(v) => f64::from(*v),
        Value::Double(v) => *v,
        other => panic!("not a float: {other:?}"),
    }
}

fn long(value: &Value) -> i64 {
    match value {
        Value::Long(v) => *v,
        Value::Int(v) => i64::from(*v),
        other => panic!("not an integer: {other:?}"),
    }
}

/// Decodes one Confluent-framed message against the bundled schema its id names.
fn decode(message: &[u8]) -> (i32, Value) {
    assert_eq!(message[0], 0, "magic byte");
    let id = i32::from_be_bytes(message[1..5].try_into().unwrap());
    let schema = LsstSchema::ALL.into_iter().find(|schema| schema.confluent_id() == id).unwrap_or_else(|| panic!("schema id {id}"));
    let mut rest = &message[5..];
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema.schema()).build().expect("reader");
    let value = reader.read_value(&mut rest).expect("datum decodes");
    assert!(rest.is_empty(), "{} bytes after the datum", rest.len());
    (id, value)
}

#[test]
fn every_version_writes_framed_messages_that_decode() {
    let dir = tempfile::tempdir().unwrap();
    for schema in LsstSchema::ALL {
        let out = dir.path().join(schema.as_str());
        let files = generate(&out, &["--count", "13", "--seed", "4", "--schema", &schema.as_str()]);
        assert_eq!(files.len(), 13, "{}", schema.as_str());
        let mut ids = HashSet::new();
        for path in &files {
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(&bytes[..5], &[&[0u8][..], &schema.confluent_id().to_be_bytes()].concat()[..]);
            let (id, alert) = decode(&bytes);
            assert_eq!(id, schema.confluent_id());
            let top = if schema.version().0 == 7 { "alertId" } else { "diaSourceId" };
            let dia_source_id = long(field(&alert, top));
            assert_eq!(long(field(field(&alert, "diaSource"), "diaSourceId")), dia_source_id);
            assert_eq!(path.file_name().unwrap().to_str().unwrap(), format!("{dia_source_id}.avro"));
            assert_eq!(dia_source_id.to_string().len(), 18);
            assert!(ids.insert(dia_source_id), "repeated id {dia_source_id}");
        }
    }
    // The ids of the doc: 9.0 → 900, 10.0 → 1000, 11.1 → 1101, 7.1 → 701.
    let ids: Vec<i32> = ["9.0", "10.0", "11.1", "7.1"].iter().map(|v| v.parse::<LsstSchema>().unwrap().confluent_id()).collect();
    assert_eq!(ids, [900, 1000, 1101, 701]);
}

#[test]
fn histories_are_consistent_and_objects_recur() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate(dir.path(), &["--count", "120", "--seed", "8"]);
    let mut per_object = std::collections::HashMap::<i64, usize>::new();
    let (mut solar, mut null_history, mut deep) = (0, 0, 0);
    for path in &files {
        let (_, alert) = decode(&std::fs::read(path).unwrap());
        let source = field(&alert, "diaSource");
        let time = float(field(source, "midpointMjdTai"));
        assert!((61_041.0..61_042.0).contains(&time), "{time}");
        let band = field(source, "band");
        assert!(matches!(band, Value::String(b) if "ugrizy".contains(b.as_str()) && b.len() == 1), "{band:?}");
        let Value::Record(_) = field(&alert, "diaObject") else {
            solar += 1;
            assert_eq!(long(field(source, "diaObjectId")), 0);
            assert_eq!(long(field(field(&alert, "ssSource"), "diaSourceId")), long(field(&alert, "diaSourceId")));
            continue;
        };
        let object_id = long(field(field(&alert, "diaObject"), "diaObjectId"));
        *per_object.entry(object_id).or_default() += 1;
        let history = match field(&alert, "prvDiaSources") {
            Value::Null => {
                null_history += 1;
                Vec::new()
            }
            Value::Array(items) => {
                assert!(!items.is_empty(), "an empty history is null");
                items.clone()
            }
            other => panic!("{other:?}"),
        };
        deep += usize::from(history.len() >= 5);
        let Value::Array(forced) = field(&alert, "prvDiaForcedSources") else { panic!("forced sources not an array") };
        let mut seen = HashSet::new();
        for entry in history.iter().chain(forced) {
            assert_eq!(long(field(entry, "diaObjectId")), object_id);
            assert!(float(field(entry, "midpointMjdTai")) < time);
        }
        for entry in &history {
            assert!(seen.insert(long(field(entry, "diaSourceId"))), "repeated history id");
        }
        assert_eq!(long(field(field(&alert, "diaObject"), "nDiaSources")), history.len() as i64 + 1);
    }
    let recurring = per_object.values().filter(|&&n| n > 1).count();
    assert!(recurring >= 10, "{recurring} objects with several alerts");
    assert!((4..=25).contains(&solar), "{solar} Solar System alerts");
    assert!(null_history > 30 && deep > 10, "null histories {null_history}, deep ones {deep}");
}

#[test]
fn cutouts_are_three_hdu_fits_with_the_source_where_the_rule_says() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate(dir.path(), &["--count", "60", "--seed", "2", "--schema", "9.0"]);
    let (mut checked, mut sides, mut nulls) = (0, HashSet::new(), 0);
    for path in &files {
        let (_, alert) = decode(&std::fs::read(path).unwrap());
        let source = field(&alert, "diaSource");
        let (x, y) = (float(field(source, "x")), float(field(source, "y")));
        let snr = float(field(source, "psfFlux")) / float(field(source, "psfFluxErr"));
        let mut alert_sides = HashSet::new();
        for name in ["cutoutScience", "cutoutTemplate", "cutoutDifference"] {
            let Value::Bytes(file) = field(&alert, name) else {
                nulls += 1;
                continue;
            };
            let hdus: Vec<fits::Hdu> = fits::hdus(file).collect::<Result<_, _>>().expect("FITS reads");
            let names: Vec<&str> = hdus.iter().map(|hdu| hdu.name.as_str()).collect();
            assert_eq!(names, ["PRIMARY", "UNCERT", "PSFIMAGE"]);
            assert_eq!((hdus[0].bitpix, hdus[1].bitpix, hdus[2].bitpix), (-32, -32, -64));
            assert_eq!(hdus[0].card("BUNIT").as_deref(), Some("nJy"));
            assert_eq!(hdus[1].card("UTYPE").as_deref(), Some("VarianceUncertainty"));
            let image = hdus[0].image().expect("image");
            let variance = hdus[1].image().expect("variance");
            assert_eq!((image.width, image.height), (variance.width, variance.height));
            assert_eq!(image.width, image.height);
            assert!((30..=102).contains(&image.width), "{}", image.width);
            alert_sides.insert(image.width);
            let col = x - hdus[0].float("CUTMINX").unwrap() - 1.0;
            let row = y - hdus[0].float("CUTMINY").unwrap() - 1.0;
            assert!((col - (hdus[0].float("CRPIX1").unwrap() - 1.0)).abs() < 1e-3);
            assert!((row - (hdus[0].float("CRPIX2").unwrap() - 1.0)).abs() < 1e-3);
            let middle = (image.width as f64 - 1.0) / 2.0;
            assert!((col - middle).abs() <= 0.5 + 1e-9 && (row - middle).abs() <= 0.5 + 1e-9, "source at {col}, {row}");
            let psf = hdus[2].image().expect("psf").pixels();
            assert!((psf.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() < 1e-3);
            if name == "cutoutDifference" && snr > 8.0 {
                // The brightest 3×3 block lies on the source.
                let pixels = image.pixels();
                let side = image.width as isize;
                let block = |r: isize, c: isize| -> f32 {
                    let mut sum = 0.0;
                    for dr in -1..=1 {
                        for dc in -1..=1 {
                            let (rr, cc) = (r + dr, c + dc);
                            if (0..side).contains(&rr) && (0..side).contains(&cc) {
                                sum += pixels[(rr * side + cc) as usize];
                            }
                        }
                    }
                    sum
                };
                let best = (0..side * side).max_by(|&a, &b| block(a / side, a % side).total_cmp(&block(b / side, b % side))).unwrap();
                let (best_row, best_col) = ((best / side) as f64, (best % side) as f64);
                assert!((best_row - row).hypot(best_col - col) < 1.5, "peak at {best_col}, {best_row}; source at {col}, {row}");
                checked += 1;
            }
        }
        assert!(alert_sides.len() <= 1, "one size per alert: {alert_sides:?}");
        sides.extend(alert_sides);
    }
    assert!(checked >= 10, "only {checked} bright difference images");
    assert!(sides.contains(&30) && sides.len() >= 5, "sides {sides:?}");
    assert!(nulls < 20, "{nulls} null cutouts");
}

#[test]
fn container_gzip_and_tarball_framings() {
    let dir = tempfile::tempdir().unwrap();
    let files = generate(&dir.path().join("container"), &["--count", "9", "--framing", "container", "--schema", "11.1"]);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].file_name().unwrap(), "alerts.avro");
    let reader = apache_avro::Reader::new(std::fs::File::open(&files[0]).unwrap()).expect("container");
    let records: Vec<Value> = reader.map(|record| record.expect("record")).collect();
    assert_eq!(records.len(), 9);
    let zipped_container =
        generate(&dir.path().join("container-gz"), &["--count", "9", "--framing", "container", "--schema", "11.1", "--gzip"]);
    assert_eq!(zipped_container[0].file_name().unwrap(), "alerts.avro.gz");
    let mut unzipped = Vec::new();
    let compressed = std::fs::read(&zipped_container[0]).unwrap();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed.as_slice()), &mut unzipped).expect("gunzip");
    assert!(unzipped == std::fs::read(&files[0]).unwrap(), "the gzip'd container holds the container");

    let loose = generate(&dir.path().join("loose"), &["--count", "9", "--schema", "11.1"]);
    let zipped = generate(&dir.path().join("gz"), &["--count", "9", "--schema", "11.1", "--gzip"]);
    for (plain, gz) in loose.iter().zip(&zipped) {
        assert_eq!(gz.file_name().unwrap().to_str().unwrap(), format!("{}.gz", plain.file_name().unwrap().to_str().unwrap()));
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::read(gz).unwrap().as_slice()), &mut unzipped)
            .expect("gunzip");
        assert!(unzipped == std::fs::read(plain).unwrap());
        // The container holds the same records as the messages (compared as text: NaN != NaN).
        let (_, alert) = decode(&unzipped);
        assert!(records.iter().any(|record| format!("{record:?}") == format!("{alert:?}")));
    }

    let archive = generate(&dir.path().join("tar"), &["--count", "9", "--schema", "11.1", "--tarball", "lsst_20260101.tar.gz"]);
    assert_eq!(archive.len(), 1);
    let bytes = std::fs::read(&archive[0]).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let members: Vec<String> = tar.entries().unwrap().map(|entry| entry.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    let expected: Vec<String> = loose.iter().map(|p| format!("lsst_20260101/{}", p.file_name().unwrap().to_str().unwrap())).collect();
    let mut sorted = members.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir.path().join("a"), &["--count", "25", "--seed", "11"]);
    generate(&dir.path().join("b"), &["--count", "25", "--seed", "11"]);
    generate(&dir.path().join("c"), &["--count", "25", "--seed", "12"]);
    let a = tree_bytes(&dir.path().join("a"));
    assert_eq!(a.len(), 25);
    assert!(a == tree_bytes(&dir.path().join("b")), "same seed, other bytes");
    assert!(a != tree_bytes(&dir.path().join("c")), "other seed, same bytes");
}

#[test]
fn options_of_the_other_survey_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for args in [
        vec!["generate", "--survey", "lsst", "-o", out, "--schema", "4.02"],
        vec!["generate", "--survey", "lsst", "-o", out, "--history", "measured"],
        vec!["generate", "--survey", "lsst", "-o", out, "--labels", "l.csv"],
        vec!["generate", "-o", out, "--schema", "10.0"],
        vec!["generate", "-o", out, "--gzip"],
        vec!["generate", "-o", out, "--framing", "container"],
    ] {
        let output = ztf2zarr(&args);
        assert!(!output.status.success(), "{args:?} was accepted");
    }
}
