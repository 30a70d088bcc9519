//! The store's own robustness: symlinked stores, paths that cannot or will not be written, a
//! tidy-up that fails after the publish, damaged metadata and candid index, `--wait`, and the
//! switch that turns the syncs off for the durability benchmark.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ztf2zarr::store::{StoreLock, StoreReader};
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{real_alerts, tree_bytes, ztf2zarr, ztf2zarr_ok};

/// Two small "nights" of real alerts.
fn night(n: usize) -> PathBuf {
    real_alerts().join(["kowalski-20200202", "ztf-avro-alert"][n])
}

fn build_args(store: &Path, input: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["build".to_string(), input.display().to_string(), "-o".into(), store.display().to_string()];
    args.extend(["--chunk-rows".into(), "5".into(), "--no-progress".into()]);
    args.extend(extra.iter().map(|s| (*s).to_string()));
    args
}

fn build(store: &Path, input: &Path) -> String {
    ztf2zarr_ok(build_args(store, input, &[]))
}

fn rows(store: &Path) -> usize {
    StoreReader::open(store, &TABLES).unwrap().rows()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Rows of a one-shot build of both nights, the reference for appends.
fn both_nights_rows(dir: &Path) -> usize {
    let reference = dir.join("reference.zarr");
    ztf2zarr_ok(["build", night(0).to_str().unwrap(), night(1).to_str().unwrap(), "-o", reference.to_str().unwrap()]);
    rows(&reference)
}

#[test]
fn a_store_behind_a_symlink_is_appended_where_it_lives_and_the_link_stays() {
    let dir = tempfile::tempdir().unwrap();
    let expected = both_nights_rows(dir.path());
    std::fs::create_dir(dir.path().join("disk")).unwrap();
    let real = dir.path().join("disk/real.zarr");
    let link = dir.path().join("s.zarr");
    // The link is made before the store: the first build creates the store at the link's target.
    std::os::unix::fs::symlink("disk/real.zarr", &link).unwrap();
    build(&link, &night(0));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert!(real.join(".zgroup").is_file());
    let first = rows(&real);
    let summary = build(&link, &night(1));
    assert!(summary.contains(&format!("store rows {first} → {expected}")), "{summary}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced by the append");
    assert_eq!(rows(&real), expected);
    // Appending through the target sees the same store: nothing new.
    let again = build(&real, &night(1));
    assert!(again.contains("nothing new, the store is unchanged"), "{again}");
    // The lock lives beside the real store; nothing is left beside the link.
    assert_eq!(names_in(dir.path()), [".reference.zarr.lock", "disk", "reference.zarr", "s.zarr"]);
    assert_eq!(names_in(&dir.path().join("disk")), [".real.zarr.lock", "real.zarr"]);
    let verify = ztf2zarr(["verify", link.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}

#[test]
fn two_writers_through_a_link_and_its_target_are_excluded() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.zarr");
    let link = dir.path().join("link.zarr");
    build(&real, &night(0));
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let before = tree_bytes(&real);
    for (held, written) in [(&real, &link), (&link, &real)] {
        let lock = StoreLock::acquire(held).unwrap();
        let output = ztf2zarr(build_args(written, &night(1), &[]));
        assert_eq!(output.status.code(), Some(2), "writing {} while {} is locked", written.display(), held.display());
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("being written by another ztf2zarr") && stderr.contains(&format!("pid {}", std::process::id())),
            "{stderr}"
        );
        drop(lock);
    }
    assert_eq!(tree_bytes(&real), before);
}

#[test]
fn an_output_inside_a_regular_file_is_refused_before_any_work_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"mine").unwrap();
    for store in [file.join("s.zarr"), file.join("sub/s.zarr")] {
        let output = ztf2zarr(build_args(&store, &night(0), &[]));
        assert_eq!(output.status.code(), Some(2));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("cannot write the store") && stderr.contains("not a writable folder") && stderr.contains("notes.txt"),
            "{stderr}"
        );
        assert!(!stderr.contains("written"), "no alert should have been read: {stderr}");
        assert_eq!(names_in(dir.path()), ["notes.txt"]);
        assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    }
}

#[test]
fn a_refused_write_leaves_no_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"mine").unwrap();
    let folder = dir.path().join("photos");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.jpg"), b"jpeg").unwrap();
    for target in [&file, &folder] {
        let output = ztf2zarr(build_args(target, &night(0), &[]));
        assert_eq!(output.status.code(), Some(2));
        assert!(text(&output.stderr).contains("is not a ztf2zarr store"), "{}", text(&output.stderr));
    }
    let missing = dir.path().join("none.zarr");
    let csv = dir.path().join("labels.csv");
    std::fs::write(&csv, "oid,predicted_class\nZTF20aaaaaaa,QSO\n").unwrap();
    for args in [vec!["label", missing.to_str().unwrap(), "--labels", csv.to_str().unwrap()], vec!["split", missing.to_str().unwrap()]] {
        let output = ztf2zarr(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("no store at") && stderr.contains("none.zarr"), "{stderr}");
    }
    assert_eq!(names_in(dir.path()), ["labels.csv", "notes.txt", "photos"]);
    assert_eq!(names_in(&folder), ["a.jpg"]);
}

#[test]
fn a_failed_tidy_up_after_the_publish_is_a_warning_and_the_next_build_tidies() {
    let dir = tempfile::tempdir().unwrap();
    let expected = both_nights_rows(dir.path());
    let store = dir.path().join("s.zarr");
    build(&store, &night(0));
    let output = Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
        .args(build_args(&store, &night(1), &[]))
        .env("ZTF2ZARR_FAULT", "tidy")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning") && stderr.contains("pending.json") && stderr.contains("the next build finishes"), "{stderr}");
    assert_eq!(rows(&store), expected, "the append is committed");
    let marker = store.join(".ztf2zarr/pending.json");
    assert!(marker.is_file(), "the failed tidy-up leaves the pending marker");
    let verify = ztf2zarr(["verify", store.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    // The next build succeeds and removes it.
    let again = build(&store, &night(1));
    assert!(again.contains("nothing new"), "{again}");
    assert!(!marker.exists());
}

/// Damage the store by setting `field` in both arrays' `.zarray`, and in their copies in
/// `.zmetadata` (which holds the committed state).
fn damage_zarrays(store: &Path, field: &str, stamps: serde_json::Value, catalog: serde_json::Value) {
    let consolidated_path = store.join(".zmetadata");
    let mut consolidated: serde_json::Value = serde_json::from_slice(&std::fs::read(&consolidated_path).unwrap()).unwrap();
    for (array, value) in [("stamps", stamps), ("catalog", catalog)] {
        let path = store.join(array).join(".zarray");
        let mut zarray: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        zarray[field] = value.clone();
        std::fs::write(&path, serde_json::to_vec_pretty(&zarray).unwrap()).unwrap();
        consolidated["metadata"][format!("{array}/.zarray")][field] = value;
    }
    std::fs::write(&consolidated_path, serde_json::to_vec_pretty(&consolidated).unwrap()).unwrap();
}

/// `info` and `build` stop with exit 2, `verify` reports with exit 1; each says `words`.
fn assert_every_command_refuses(store: &Path, words: &[&str]) -> [Output; 3] {
    let before = tree_bytes(store);
    let info = ztf2zarr(["info", store.to_str().unwrap()]);
    let build = ztf2zarr(build_args(store, &night(1), &[]));
    let verify = ztf2zarr(["verify", store.to_str().unwrap()]);
    for (name, output, code, said) in
        [("info", &info, 2, text(&info.stderr)), ("build", &build, 2, text(&build.stderr)), ("verify", &verify, 1, text(&verify.stdout))]
    {
        assert_eq!(output.status.code(), Some(code), "{name}: {said}");
        for word in words {
            assert!(said.contains(word), "{name} should say {word:?}: {said}");
        }
    }
    assert!(text(&verify.stdout).contains("PROBLEM"));
    assert_eq!(tree_bytes(store), before, "a refused build must not change the store");
    [info, build, verify]
}

#[test]
fn a_damaged_zarray_is_a_clear_error_for_info_build_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, serde_json::Value, serde_json::Value, &[&str]); 4] = [
        (
            "shape",
            serde_json::json!([1_000_000_000_000_000u64, 3, 21, 21]),
            serde_json::json!([1_000_000_000_000_000u64]),
            &["stamps/.zarray", "1000000000000000 rows", "last chunk", "missing"],
        ),
        ("chunks", serde_json::json!([0, 3, 21, 21]), serde_json::json!([0]), &["stamps/.zarray", "chunks of 0 rows"]),
        ("chunks", serde_json::json!([1_000_000_000, 3, 21, 21]), serde_json::json!([1_000_000_000]), &["stamps/.zarray", "exceed"]),
        ("dtype", serde_json::json!("<f8"), serde_json::Value::Null, &["stamps/.zarray", "dtype"]),
    ];
    for (index, (field, stamps, catalog, words)) in cases.into_iter().enumerate() {
        let store = dir.path().join(format!("s{index}.zarr"));
        build(&store, &night(0));
        let catalog = if catalog.is_null() {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(store.join("catalog/.zarray")).unwrap()).unwrap()[field].clone()
        } else {
            catalog
        };
        damage_zarrays(&store, field, stamps, catalog);
        assert_every_command_refuses(&store, words);
    }
}

/// Set the root attribute `survey` (None: remove it) in `.zattrs` and in `.zmetadata`.
fn set_survey(store: &Path, survey: Option<&str>) {
    for (path, pointer) in [(store.join(".zattrs"), ""), (store.join(".zmetadata"), "/metadata/.zattrs")] {
        let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let attrs = doc.pointer_mut(pointer).and_then(serde_json::Value::as_object_mut).unwrap();
        match survey {
            Some(name) => attrs.insert("survey".into(), name.into()),
            None => attrs.remove("survey"),
        };
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }
}

#[test]
fn a_store_names_its_survey_and_one_of_another_survey_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &night(0));
    let attrs: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join(".zattrs")).unwrap()).unwrap();
    assert_eq!(attrs["survey"], "ztf", "a new store records its survey");
    // A store of a survey this version does not read: every command refuses it, naming the
    // survey and those it reads, and changes nothing.
    set_survey(&store, Some("panstarrs"));
    assert_every_command_refuses(&store, &[".zattrs", "holds panstarrs alerts", "reads ztf"]);
    // A store written before the survey was recorded holds ZTF alerts: it reads, and takes appends.
    set_survey(&store, None);
    let again = build(&store, &night(1));
    assert!(again.contains("written"), "{again}");
    let attrs: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join(".zattrs")).unwrap()).unwrap();
    assert_eq!(attrs["survey"], "ztf", "the append records it");
    crate::util::assert_sound(&store);
}

/// A way to damage the candid index, and the words the commands must say about it.
type IndexDamage = (&'static str, fn(&mut Vec<u8>), &'static [&'static str]);

#[test]
fn a_damaged_candid_index_is_a_clear_error_for_info_build_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [IndexDamage; 3] = [
        ("not a multiple of 8", |b| b.truncate(b.len() - 3), &["candid index is damaged", "not a whole number of 8-byte candids"]),
        ("fewer", |b| b.truncate(b.len() - 8), &["candid index is damaged", "candids for"]),
        ("more", |b| b.extend_from_slice(&7i64.to_le_bytes()), &["candid index is damaged", "candids for"]),
    ];
    for (index, (case, damage, words)) in cases.into_iter().enumerate() {
        let store = dir.path().join(format!("s{index}.zarr"));
        build(&store, &night(0));
        let n = rows(&store);
        let path = store.join(".ztf2zarr/candids/000001");
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let [info, ..] = assert_every_command_refuses(&store, words);
        let stderr = text(&info.stderr);
        assert!(stderr.contains(".ztf2zarr/candids/000001"), "{case}: {stderr}");
        if case != "not a multiple of 8" {
            assert!(stderr.contains(&format!("for {n} rows")), "{case}: {stderr}");
        }
        // The remedy the message gives works: without the index, the next build rebuilds it.
        std::fs::remove_file(&path).unwrap();
        build(&store, &night(1));
        let verify = ztf2zarr(["verify", store.to_str().unwrap()]);
        assert!(verify.status.success(), "{case}: {}", text(&verify.stdout));
    }
}

#[test]
fn verify_names_the_first_candid_where_the_candid_index_and_the_catalog_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &night(0));
    let candids = StoreReader::open(&store, &TABLES).unwrap().catalog_candids().unwrap();
    let mut index = candids.clone();
    index.sort_unstable();
    let foreign = index[3] + 1;
    assert!(!candids.contains(&foreign));
    let replaced = index[3];
    index[3] = foreign;
    std::fs::write(store.join(".ztf2zarr/candids/000001"), index.iter().flat_map(|c| c.to_le_bytes()).collect::<Vec<_>>()).unwrap();
    let output = ztf2zarr(["verify", store.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("PROBLEM  candid index") && stdout.contains(&format!("rows 0..{}", candids.len())), "{stdout}");
    assert!(stdout.contains(&format!("the run has {foreign} where the catalog has {replaced}")), "{stdout}");
    assert!(stdout.contains("1 problem found"), "{stdout}");
}

#[test]
fn wait_queues_behind_a_held_lock_then_appends() {
    let dir = tempfile::tempdir().unwrap();
    let expected = both_nights_rows(dir.path());
    let store = dir.path().join("s.zarr");
    build(&store, &night(0));
    let first = rows(&store);
    let held = StoreLock::acquire(&store).unwrap();
    // `--wait` before the inputs: it takes no value unless written `--wait=SECONDS`.
    let mut args = vec!["build".to_string(), "--wait".into()];
    args.extend(build_args(&store, &night(1), &[]).into_iter().skip(1));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ztf2zarr")).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for") && line.contains("s.zarr") && line.contains(&format!("pid {}", std::process::id())), "{line}");
    assert_eq!(rows(&store), first, "nothing is written while it waits");
    drop(held);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(!rest.contains("waiting for"), "the wait is announced once: {rest}");
    assert_eq!(rows(&store), expected);
}

#[test]
fn a_bounded_wait_gives_up_for_build_label_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &night(0));
    let before = tree_bytes(&store);
    let csv = dir.path().join("labels.csv");
    std::fs::write(&csv, "oid,predicted_class\nZTF20aaaaaaa,QSO\n").unwrap();
    let _held = StoreLock::acquire(&store).unwrap();
    let s = store.to_str().unwrap();
    for args in [
        build_args(&store, &night(1), &["--wait=1"]),
        ["label", s, "--labels", csv.to_str().unwrap(), "--wait=0"].map(String::from).to_vec(),
        ["split", s, "--wait=0"].map(String::from).to_vec(),
    ] {
        let output = ztf2zarr(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("being written by another ztf2zarr") && stderr.contains("still locked after it waited"), "{stderr}");
    }
    assert_eq!(tree_bytes(&store), before);
}

#[test]
fn the_benchmark_switch_that_skips_syncs_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for (name, no_sync) in [("synced.zarr", false), ("unsynced.zarr", true)] {
        let store = dir.path().join(name);
        for n in 0..2 {
            let mut command = Command::new(env!("CARGO_BIN_EXE_ztf2zarr"));
            command.args(build_args(&store, &night(n), &[])).env("SOURCE_DATE_EPOCH", "1767225600");
            if no_sync {
                command.env("ZTF2ZARR_NO_SYNC", "1");
            }
            let output = command.output().unwrap();
            assert!(output.status.success(), "{}", text(&output.stderr));
        }
        trees.push(tree_bytes(&store));
    }
    assert_eq!(trees[0], trees[1]);
}
