//! `data-samples/` is made by `ztf2zarr generate`: regenerate it and compare byte for byte, then
//! build a store from it.

use std::path::Path;

use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{tree_bytes, ztf2zarr_ok};

fn samples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data-samples"))
}

#[test]
fn data_samples_are_exactly_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    let night = dir.path().join("ztf_public_20250101");
    ztf2zarr_ok(["generate", "-o", night.to_str().unwrap(), "--count", "32"]);
    let labels = tempfile::tempdir().unwrap();
    ztf2zarr_ok(["generate", "-o", labels.path().to_str().unwrap(), "--count", "32", "--labels", "labels.csv"]);
    std::fs::copy(labels.path().join("labels.csv"), dir.path().join("labels.csv")).unwrap();
    ztf2zarr_ok([
        "generate",
        "-o",
        dir.path().to_str().unwrap(),
        "--count",
        "12",
        "--first-candid",
        "1100000000016000000",
        "--tarball",
        "ztf_public_20250102.tar.gz",
    ]);
    let shipped: Vec<_> = tree_bytes(samples()).into_iter().filter(|(path, _)| path != Path::new("README.md")).collect();
    assert_eq!(shipped.len(), 34, "32 loose alerts, one archive, one labels CSV");
    assert!(shipped == tree_bytes(dir.path()), "data-samples/ differs from what `ztf2zarr generate` writes");
}

#[test]
fn data_samples_build_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("samples.zarr");
    let summary = ztf2zarr_ok(["build", samples().to_str().unwrap(), "-o", store.to_str().unwrap()]);
    assert!(summary.contains("written     44 alerts") && summary.contains("rejected    0"), "{summary}");
    assert!(summary.contains("edge-placed 2"), "one edge alert in each set: {summary}");
    assert_eq!(StoreReader::open(&store, &TABLES).unwrap().rows(), 44);
}

#[test]
fn generate_help_says_its_defaults_make_the_samples_and_first_candid_keeps_the_dates() {
    let help = ztf2zarr_ok(["generate", "--help"]);
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("The defaults reproduce data-samples/"), "{help}");
    assert!(flat.contains("the first 32 alerts are those 32"), "{help}");
    assert!(!flat.contains("another night"), "--first-candid does not change the dates: {help}");
    assert!(flat.contains("on the same dates"), "{help}");
    // What the help says: --count 40 starts with the samples' 32 alerts.
    let dir = tempfile::tempdir().unwrap();
    ztf2zarr_ok(["generate", "-o", dir.path().to_str().unwrap(), "--count", "40"]);
    let written = tree_bytes(dir.path());
    let shipped = tree_bytes(&samples().join("ztf_public_20250101"));
    assert_eq!((written.len(), shipped.len()), (40, 32));
    assert!(shipped.iter().all(|file| written.contains(file)), "the first 32 of --count 40 are data-samples/'s");
}
