//! What a new user meets first: splits made before labels or before an append (and how `info`
//! and `verify` say they are stale), the labelling summary of `build --labels`, error messages
//! (each cause once, the options to use, plurals), and the `stamp_flags` values in docs and attrs.

use std::path::{Path, PathBuf};
use std::process::Output;

use ztf2zarr::store::{read_json, StoreReader};
use ztf2zarr::survey::ztf::cutout::STAMP_FLAGS;
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{real_alerts, tree_bytes, ztf2zarr, ztf2zarr_ok};

/// 12 real alerts of one night folder (kowalski-20200202).
fn night() -> PathBuf {
    real_alerts().join("kowalski-20200202")
}

fn build(store: &Path, inputs: &[PathBuf], extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".to_string(), store.display().to_string(), "--no-progress".into()]);
    args.extend(extra.iter().map(|s| (*s).to_string()));
    ztf2zarr_ok(args)
}

fn objects(store: &Path) -> Vec<String> {
    let layout = tables::catalog();
    let index = layout.index_of("objectId").unwrap();
    StoreReader::open(store, &TABLES).unwrap().catalog_rows().unwrap().iter().map(|r| layout.read_str(r, index).unwrap()).collect()
}

/// A CSV giving every object but the first a class (the first object stays unlabeled).
fn write_csv(path: &Path, objects: &[String], classes: &[&str]) {
    let mut distinct: Vec<&String> = objects.iter().collect();
    distinct.sort();
    distinct.dedup();
    let mut text = String::from("oid,predicted_class,probability\n");
    for (i, object) in distinct.iter().enumerate().skip(1) {
        text += &format!("{object},{},0.9\n", classes[i % classes.len()]);
    }
    std::fs::write(path, text).unwrap();
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run(args: &[&str]) -> Output {
    ztf2zarr(args)
}

fn info_json(store: &Path) -> serde_json::Value {
    serde_json::from_str(&ztf2zarr_ok(["info", store.to_str().unwrap(), "--json"])).unwrap()
}

/// `verify` output and exit status.
fn verify(store: &Path) -> (Option<i32>, String) {
    let output = run(&["verify", store.to_str().unwrap()]);
    (output.status.code(), stdout(&output))
}

#[test]
fn a_split_before_label_warns_and_is_stale_once_labeled_until_split_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &[night()], &[]);
    let s = store.to_str().unwrap();

    let output = run(&["split", s, "--seed", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let warning = stderr(&output);
    assert!(warning.contains("warning") && warning.contains("unlabeled") && warning.contains("split` again"), "{warning}");
    assert_eq!(info_json(&store)["splits_stale"], serde_json::json!([]));
    let (code, text) = verify(&store);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok       splits: made from all 12 rows") && !text.contains("WARNING"), "{text}");

    let csv = dir.path().join("labels.csv");
    write_csv(&csv, &objects(&store), &["QSO", "YSO"]);
    let output = run(&["label", s, "--labels", csv.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("splits are stale"), "{}", stderr(&output));

    let stale = info_json(&store)["splits_stale"].clone();
    assert!(stale.as_array().is_some_and(|r| r.len() == 1 && r[0].as_str().unwrap().contains("unlabeled")), "{stale}");
    let text = ztf2zarr_ok(["info", s]);
    assert!(text.contains("stale: labels given since the split"), "{text}");
    let (code, text) = verify(&store);
    assert_eq!(code, Some(0), "stale splits are a warning, not damage: {text}");
    assert!(text.contains("WARNING  splits: stale") && text.contains("sound (1 warning)"), "{text}");

    // A relabel with other classes changes the labels again; a new split makes them match.
    ztf2zarr_ok(["split", s, "--seed", "1"]);
    assert!(!verify(&store).1.contains("WARNING"));
    write_csv(&csv, &objects(&store), &["AGN", "SNIa", "RRL"]);
    ztf2zarr_ok(["label", s, "--labels", csv.to_str().unwrap()]);
    let stale = info_json(&store)["splits_stale"].clone();
    assert!(stale[0].as_str().is_some_and(|r| r.contains("labels changed since the split")), "{stale}");
    let output = run(&["split", s, "--seed", "1"]);
    assert!(!stderr(&output).contains("unlabeled"), "a labeled store splits without a warning: {}", stderr(&output));
    assert_eq!(info_json(&store)["splits_stale"], serde_json::json!([]));
    let (code, text) = verify(&store);
    assert!(code == Some(0) && !text.contains("WARNING"), "{text}");
}

#[test]
fn an_append_after_split_leaves_rows_in_no_split_and_info_and_verify_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &[night()], &[]);
    let s = store.to_str().unwrap();
    ztf2zarr_ok(["split", s]);
    let summary = build(&store, &[real_alerts().join("boom")], &[]);
    assert!(summary.contains("written     1 alert ("), "{summary}");
    let stale = info_json(&store)["splits_stale"].clone();
    assert_eq!(stale, serde_json::json!(["1 row added since the split is in no split"]));
    let (code, text) = verify(&store);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("WARNING  splits: stale, 1 row added"), "{text}");
    let attrs = read_json(&store.join("splits/.zattrs")).unwrap();
    assert_eq!(attrs["rows_at_split"], 12);
    assert_eq!(attrs["labels_fingerprint"].as_str().map(str::len), Some(64));
}

#[test]
fn labeled_only_on_an_unlabeled_store_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &[night()], &[]);
    let before = tree_bytes(&store);
    let output = run(&["split", store.to_str().unwrap(), "--labeled-only"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("--labeled-only") && message.contains("none of the 12 alerts has a label"), "{message}");
    assert!(message.contains("ztf2zarr label"), "says what to do: {message}");
    assert_eq!(tree_bytes(&store), before, "no empty splits written");
}

#[test]
fn build_with_labels_prints_the_summary_label_prints() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.zarr");
    build(&plain, &[night()], &[]);
    let csv = dir.path().join("labels.csv");
    write_csv(&csv, &objects(&plain), &["QSO", "YSO"]);
    let label = ztf2zarr_ok(["label", plain.to_str().unwrap(), "--labels", csv.to_str().unwrap()]);
    let labeled = dir.path().join("labeled.zarr");
    let built = build(&labeled, &[night()], &["--labels", csv.to_str().unwrap()]);
    let line = |text: &str, key: &str| text.lines().find(|l| l.trim_start().starts_with(key)).map(str::to_string);
    let (from_label, from_build) = (line(&label, "labeled").unwrap(), line(&built, "labeled").expect("build prints a labeled line"));
    assert!(from_label.contains(" of 12 alerts (") && from_build.contains(" of 12 new alerts ("), "{from_label}\n{from_build}");
    assert_eq!(from_label.replace(" alerts", ""), from_build.replace(" new alerts", ""), "same counts");
    assert!(!from_build.contains("labeled     12 of") && !from_build.contains("labeled     0 of"), "one object is left out: {from_build}");
    assert_eq!(line(&label, "classes"), line(&built, "classes"));
    assert!(line(&built, "classes").unwrap().contains("0=QSO, 1=YSO (2 classes)"), "{built}");

    // An append labels only its new rows, and the summary counts those.
    let appended = build(&labeled, &[real_alerts().join("boom")], &["--labels", csv.to_str().unwrap()]);
    assert!(line(&appended, "labeled").unwrap().contains(" of 1 new alerts (0 of 1 object found"), "{appended}");
}

#[test]
fn a_missing_input_names_the_path_and_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.avro");
    let store = dir.path().join("s.zarr");
    let output = run(&["build", missing.to_str().unwrap(), "-o", store.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    let os_error = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
    assert!(message.contains("nope.avro"), "{message}");
    assert_eq!(message.matches(&os_error).count(), 1, "{message}");

    let absent = dir.path().join("absent.zarr");
    let a = absent.to_str().unwrap();
    let csv = dir.path().join("l.csv");
    std::fs::write(&csv, "oid,predicted_class\nZTF1,QSO\n").unwrap();
    for args in [vec!["info", a], vec!["verify", a], vec!["split", a], vec!["label", a, "--labels", csv.to_str().unwrap()]] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains("no store at") && message.contains("absent.zarr"), "{args:?}: {message}");
        assert!(!message.contains("exists"), "{args:?}: {message}");
    }
    let beside: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(beside.iter().all(|name| !name.contains("absent")), "nothing created for a missing store: {beside:?}");

    let output = run(&["label", store.to_str().unwrap(), "--labels", dir.path().join("none.csv").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("none.csv") && message.matches(&os_error).count() == 1, "{message}");

    let output = run(&["verify", csv.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is a file, not a store"), "{}", stderr(&output));
}

#[test]
fn a_labels_csv_without_its_columns_names_the_option_and_an_empty_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &[night()], &[]);
    let before = tree_bytes(&store);
    let csv = dir.path().join("l.csv");
    let label = |text: &str| {
        std::fs::write(&csv, text).unwrap();
        let output = run(&["label", store.to_str().unwrap(), "--labels", csv.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{text:?}");
        stderr(&output)
    };
    let message = label("objectId,predicted_class\nZTF1,QSO\n");
    assert!(message.contains("--id-column") && message.contains("columns: objectId, predicted_class"), "{message}");
    let message = label("oid\tpredicted_class\nZTF1\tQSO\n");
    assert!(message.contains("looks tab-separated") && message.contains("must be CSV"), "{message}");
    let message = label("oid,class\nZTF1,QSO\n");
    assert!(message.contains("--class-column") && message.contains("columns: oid, class"), "{message}");
    assert!(label("").contains("is empty"));
    assert!(label("oid,predicted_class\n").contains("no rows"));
    assert_eq!(tree_bytes(&store), before);
    // The build names the same options.
    std::fs::write(&csv, "id,cls\nZTF1,QSO\n").unwrap();
    let output =
        run(&["build", night().to_str().unwrap(), "-o", dir.path().join("b.zarr").to_str().unwrap(), "--labels", csv.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--id-column"), "{}", stderr(&output));
}

#[test]
fn info_and_verify_count_in_words_that_agree_with_the_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &[real_alerts().join("boom")], &[]);
    let text = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    assert!(text.contains("nights       1 night, ") && !text.contains("1 nights"), "{text}");
    assert!(text.contains("rejected     0 inputs"), "{text}");
    assert!(text.contains("labels       (unlabeled) 1"), "{text}");
    assert!(text.contains("(1 written, 0 duplicates, 0 rejected)"), "{text}");
    std::fs::remove_file(store.join("catalog/0")).unwrap();
    let (code, text) = verify(&store);
    assert_eq!(code, Some(1));
    assert!(text.lines().last().is_some_and(|l| l.ends_with(" problem found") || l.contains(" problems found")), "{text}");
    let problems = text.lines().filter(|l| l.starts_with("PROBLEM")).count();
    assert!(text.contains(&format!("{problems} problem{} found", if problems == 1 { "" } else { "s" })), "{text}");
}

#[test]
fn stamp_flags_are_numbered_by_value_in_docs_attrs_and_info() {
    let values: Vec<u8> = STAMP_FLAGS.iter().map(|(value, _)| *value).collect();
    assert_eq!(values, [1, 2, 4, 8]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    build(&store, &[real_alerts().join("boom")], &[]);
    let attrs = read_json(&store.join(".zattrs")).unwrap();
    let keys: Vec<&String> = attrs["ztf2zarr"]["stamp_flags"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["1", "2", "4", "8"]);
    let column = read_json(&store.join("catalog/.zattrs")).unwrap()["stamp_flags"].as_str().unwrap().to_string();
    for value in &values {
        assert!(column.contains(&format!("{value} = ")), "catalog description names value {value}: {column}");
    }
    let text = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    assert!(text.contains("1=edge_placed") && text.contains("8=masked_pixels"), "{text}");
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/store-format.md")).unwrap();
    for word in ["bit 0", "bit 1", "bit 2", "bit 3", "bit 4", "| bit |"] {
        assert!(!doc.contains(word), "docs/store-format.md still numbers flags by bit position: `{word}`");
    }
    for value in &values {
        assert!(doc.contains(&format!("value {value}")) || doc.contains(&format!("| {value} |")), "docs name value {value}");
    }
}

#[test]
fn split_help_says_what_stale_splits_mean_for_verify() {
    let help = ztf2zarr_ok(["split", "--help"]);
    for word in ["unlabeled", "--labeled-only", "stale", "WARNING", "splits_stale"] {
        assert!(help.contains(word), "split --help lacks `{word}`:\n{help}");
    }
}

#[test]
fn ignored_paths_are_counted_in_a_plain_sentence_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let alert = real_alerts().join("boom");
    let first = std::fs::read_dir(&alert).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "avro")).unwrap();
    std::fs::copy(&first, inputs.join("a.avro")).unwrap();
    std::fs::write(inputs.join("notes.txt"), "x").unwrap();
    std::fs::write(inputs.join("README.md"), "x").unwrap();
    let summary = build(&dir.path().join("s.zarr"), &[inputs], &[]);
    assert!(summary.contains("ignored     2 paths (2 not alert files)\n"), "{summary}");
    assert!(summary.contains("notes.txt: not an alert file") && summary.contains("README.md: not an alert file"), "{summary}");
}

#[test]
fn the_build_summary_counts_one_thread_in_the_singular() {
    let dir = tempfile::tempdir().unwrap();
    let one = build(&dir.path().join("one.zarr"), &[real_alerts().join("boom")], &["--threads", "1"]);
    let time = one.lines().find(|l| l.trim_start().starts_with("time")).unwrap();
    assert!(time.ends_with(", 1 thread"), "{one}");
    let two = build(&dir.path().join("two.zarr"), &[real_alerts().join("boom")], &["--threads", "2"]);
    assert!(two.contains(", 2 threads\n"), "{two}");
}

#[test]
fn the_rejects_folder_is_named_only_when_something_was_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    let summary = build(&store, &[real_alerts().join("boom")], &[]);
    assert!(summary.contains("  rejected    0\n") && !summary.contains("rejects/"), "{summary}");
    assert!(!store.join("rejects").exists());
    let text = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    assert!(text.contains("rejected     0 inputs\n") && !text.contains("rejects/"), "{text}");

    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("bad.avro"), b"not avro").unwrap();
    let summary = build(&store, &[broken], &[]);
    assert!(summary.contains("(all reasons: ") && summary.contains("rejects/"), "{summary}");
    let text = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    assert!(text.contains("rejected     1 input (logs in rejects/)"), "{text}");
}

#[test]
fn info_names_the_schema_versions_as_the_build_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    // Schema 1.8 packets (no schemavsn) and 3.x ones.
    let summary = build(&store, &[real_alerts().join("ampel/ztf_public_20180601"), real_alerts().join("kowalski-20200202")], &[]);
    let built = summary.lines().find(|l| l.trim_start().starts_with("schemas")).unwrap().to_string();
    let text = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    let shown = text.lines().find(|l| l.starts_with("schemas")).unwrap().to_string();
    assert!(built.contains("(none: before 3.x; writer schema 1.8) ×10"), "{built}");
    assert!(shown.contains("(none: before 3.x) "), "{shown}");
    // The same versions with the same counts: the build adds the writer schema, which the store does not keep.
    let versions = |line: &str| -> Vec<(String, String)> {
        let list = line.trim_start().trim_start_matches("schemas").trim();
        let mut pairs: Vec<(String, String)> = list
            .replace("; writer schema 1.8", "")
            .split(", ")
            .map(|part| {
                let (name, n) = part.rsplit_once(' ').unwrap();
                (name.to_string(), n.trim_start_matches('×').to_string())
            })
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(versions(&built), versions(&shown), "{built}\n{shown}");
}

#[test]
fn label_help_shows_labels_as_required() {
    let help = ztf2zarr_ok(["label", "--help"]);
    let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(usage.contains("--labels <FILE.csv>") && !usage.contains("[--labels"), "{usage}");
    let (options, required) = help.split_once("\nRequired:\n").expect("a Required heading");
    assert!(required.lines().next().is_some_and(|l| l.trim_start().starts_with("--labels <FILE.csv>")), "{help}");
    assert!(!options.split_once("\nOptions:").unwrap().1.contains("--labels <"), "not among the options: {help}");
    // build still takes it as an option.
    let help = ztf2zarr_ok(["build", "--help"]);
    assert!(!help.contains("Required:"), "{help}");
    let output = run(&["label", "s.zarr"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--labels <FILE.csv>"), "{}", stderr(&output));
}

#[test]
fn verify_and_info_say_the_same_of_a_folder_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "x").unwrap();
    let p = plain.to_str().unwrap();
    let (info, verified) = (run(&["info", p]), run(&["verify", p]));
    assert_eq!((info.status.code(), verified.status.code()), (Some(2), Some(2)));
    assert!(stderr(&info).contains("is not a ztf2zarr store"), "{}", stderr(&info));
    assert_eq!(stderr(&info), stderr(&verified));
    assert!(stdout(&verified).is_empty(), "{}", stdout(&verified));

    // A store that lost its .zgroup is still a damaged store to verify.
    let store = dir.path().join("s.zarr");
    build(&store, &[real_alerts().join("boom")], &[]);
    std::fs::remove_file(store.join(".zgroup")).unwrap();
    let (code, text) = verify(&store);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("PROBLEM"), "{text}");
}

#[test]
fn a_store_built_inside_its_input_folder_is_not_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for entry in std::fs::read_dir(night()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, data.join(path.file_name().unwrap())).unwrap();
    }
    let store = data.join("s.zarr");
    let first = build(&store, std::slice::from_ref(&data), &[]);
    // Again: the store now exists inside the folder, and none of its files is listed.
    let again = build(&store, std::slice::from_ref(&data), &[]);
    let ignored = |text: &str| {
        text.lines().filter(|l| l.contains("ignored") || l.contains("not an alert file")).map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(ignored(&first), ignored(&again), "{again}");
    assert!(!again.contains("s.zarr/"), "{again}");
    assert!(again.contains("written     0 alerts"), "{again}");
}
