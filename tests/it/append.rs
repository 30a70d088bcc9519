//! Appending nights to a store: equal to a one-shot build, idempotent, crash-safe at every commit
//! step, one writer at a time; and `verify` / `info` on the result.

use std::path::{Path, PathBuf};

use ztf2zarr::store::{StoreLock, StoreReader};
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{assert_sound, real_alerts, tree_bytes, ztf2zarr, ztf2zarr_ok};

/// Two "nights" of real alerts: 16 and 13 alerts, several schema versions, one rejected file.
fn nights() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let root = real_alerts();
    (
        vec![root.join("kowalski-20200202"), root.join("ztf-avro-alert")],
        vec![root.join("fink-alert-schemas"), root.join("ampel/tests"), root.join("boom"), root.join("ampel/ztf_public_20180601")],
    )
}

fn build(store: &Path, inputs: &[PathBuf], extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".to_string(), store.display().to_string(), "--chunk-rows".into(), "7".into()]);
    args.extend(extra.iter().map(|s| (*s).to_string()));
    ztf2zarr_ok(args)
}

fn contents(store: &Path) -> (Vec<Vec<u8>>, Vec<Vec<f32>>) {
    let reader = StoreReader::open(store, &TABLES).unwrap();
    (reader.catalog_rows().unwrap(), reader.stamps().unwrap())
}

#[test]
fn two_appended_nights_equal_a_one_shot_build() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let one_shot = dir.path().join("one.zarr");
    let appended = dir.path().join("two.zarr");
    build(&one_shot, &[a.clone(), b.clone()].concat(), &[]);
    build(&appended, &a, &[]);
    let rows_a = StoreReader::open(&appended, &TABLES).unwrap().rows();
    let summary = build(&appended, &b, &[]);
    assert!(summary.contains(&format!("store rows {rows_a} → ")), "{summary}");
    assert_eq!(contents(&one_shot), contents(&appended));
    // the duplicate pair (schema 3.2 and 3.3 of one alert) sits across the two nights
    assert!(summary.contains("duplicates  1 "), "{summary}");
    assert_eq!(crate::util::rejects_text(&one_shot), crate::util::rejects_text(&appended));
    assert_sound(&appended);
}

#[test]
fn rerunning_the_same_inputs_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = nights();
    let store = dir.path().join("s.zarr");
    build(&store, &a, &[]);
    let before = tree_bytes(&store);
    let summary = build(&store, &a, &[]);
    assert!(summary.contains("nothing new, the store is unchanged"), "{summary}");
    assert_eq!(tree_bytes(&store), before);
}

#[test]
fn layout_options_of_an_existing_store_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let store = dir.path().join("s.zarr");
    build(&store, &a, &[]);
    let before = tree_bytes(&store);
    for (flag, value) in [("--stamp-size", "63"), ("--chunk-rows", "100"), ("--keep-nan", ""), ("--keep-masked", ""), ("--zstd-level", "9")]
    {
        let mut args = vec!["build".to_string(), b[0].display().to_string(), "-o".into(), store.display().to_string(), flag.into()];
        if !value.is_empty() {
            args.push(value.into());
        }
        let output = ztf2zarr(&args);
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag) && stderr.contains("s.zarr"), "{flag}: {stderr}");
    }
    assert_eq!(tree_bytes(&store), before);
}

/// Kill the append at each step of the commit protocol (SIGKILL, as from outside): the store
/// must read as before (or, once published, as after), verify clean, and a re-run must complete
/// it exactly.
#[test]
fn an_append_killed_at_any_step_leaves_a_sound_store_and_reruns_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let expected_store = dir.path().join("expected.zarr");
    build(&expected_store, &[a.clone(), b.clone()].concat(), &[]);
    let expected = contents(&expected_store);
    for point in ["after-chunk", "before-metadata", "before-publish", "after-publish"] {
        let store = dir.path().join(format!("{point}.zarr"));
        build(&store, &a, &[]);
        let committed = contents(&store);
        let mut args: Vec<String> = vec!["build".into()];
        args.extend(b.iter().map(|p| p.display().to_string()));
        args.extend(["-o".to_string(), store.display().to_string(), "--no-progress".into()]);
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_ztf2zarr")).args(&args).env("ZTF2ZARR_FAULT", point).status().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{point}: the build should have been killed");
        let after_kill = contents(&store);
        if point == "after-publish" {
            assert_eq!(after_kill, expected, "{point}: published state");
        } else {
            assert_eq!(after_kill, committed, "{point}: the store must still be the committed one");
        }
        assert_sound(&store);
        build(&store, &b, &[]);
        assert_eq!(contents(&store), expected, "{point}: re-run must complete the append exactly");
        assert_sound(&store);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(point) && (n.ends_with(".staging") || n.ends_with(".previous")))
            .collect();
        assert!(leftovers.is_empty(), "{point}: left {leftovers:?}");
    }
}

#[test]
fn a_second_writer_is_refused_and_a_dead_writers_lock_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let store = dir.path().join("s.zarr");
    build(&store, &a, &[]);
    let held = StoreLock::acquire(&store).unwrap();
    let output = ztf2zarr(["build", b[0].to_str().unwrap(), "-o", store.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("being written by another ztf2zarr") && stderr.contains(&format!("pid {}", std::process::id())), "{stderr}");
    drop(held);
    // A lock file left by a killed writer (its content says so) does not block: the kernel lock died with it.
    std::fs::write(ztf2zarr::store::lock_path(&store), "pid 999999 since 2026-01-01T00:00:00Z\n").unwrap();
    build(&store, &b, &[]);
}

#[test]
fn verify_finds_a_damaged_chunk_and_a_bad_index() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = nights();
    let store = dir.path().join("s.zarr");
    build(&store, &a, &[]);
    assert_sound(&store);
    let chunk = store.join("stamps/1.0.0.0");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&chunk, bytes).unwrap();
    std::fs::write(store.join(".ztf2zarr/candids/000001"), [0u8; 8]).unwrap();
    let output = ztf2zarr(["verify", store.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PROBLEM  chunks") && stdout.contains("stamps/1.0.0.0"), "{stdout}");
    assert!(stdout.contains("PROBLEM  candid index"), "{stdout}");
}

#[test]
fn info_reports_rows_nights_versions_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let store = dir.path().join("s.zarr");
    build(&store, &a, &[]);
    build(&store, &b, &[]);
    let json: serde_json::Value = serde_json::from_str(&ztf2zarr_ok(["info", store.to_str().unwrap(), "--json"])).unwrap();
    let rows = StoreReader::open(&store, &TABLES).unwrap().rows();
    assert_eq!(json["rows"], rows);
    assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    assert_eq!(json["runs"][1]["rows_before"], json["runs"][0]["rows_after"]);
    assert!(json["nights"]["2020-02-02"].as_u64().unwrap() > 0, "{}", json["nights"]);
    assert!(json["schema_versions"]["4.02"] == 1, "{}", json["schema_versions"]);
    let nights_total: u64 = json["nights"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(nights_total as usize, rows);
    let text = ztf2zarr_ok(["info", store.to_str().unwrap()]);
    assert!(text.contains(&format!("rows         {rows}")) && text.contains("builds       2"), "{text}");
}

/// Turn a store into the layout of earlier versions: every row's candid in `.candids`, one
/// `rejects.jsonl`, and no candid runs or per-build logs in the files or the root attrs.
fn to_earlier_layout(store: &Path) {
    let candids = StoreReader::open(store, &TABLES).unwrap().catalog_candids().unwrap();
    std::fs::write(store.join(".candids"), candids.iter().flat_map(|c| c.to_le_bytes()).collect::<Vec<_>>()).unwrap();
    std::fs::write(store.join("rejects.jsonl"), crate::util::rejects_text(store)).unwrap();
    std::fs::remove_dir_all(store.join(".ztf2zarr")).unwrap();
    let _ = std::fs::remove_dir_all(store.join("rejects"));
    let without_new_attrs = |attrs: &mut serde_json::Value| {
        let ours = attrs["ztf2zarr"].as_object_mut().unwrap();
        ours.remove("candid_index");
        for run in ours["runs"].as_array_mut().unwrap() {
            run.as_object_mut().unwrap().remove("rejects_log");
        }
    };
    let mut attrs: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join(".zattrs")).unwrap()).unwrap();
    without_new_attrs(&mut attrs);
    std::fs::write(store.join(".zattrs"), serde_json::to_vec_pretty(&attrs).unwrap()).unwrap();
    let mut consolidated: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join(".zmetadata")).unwrap()).unwrap();
    without_new_attrs(&mut consolidated["metadata"][".zattrs"]);
    std::fs::write(store.join(".zmetadata"), serde_json::to_vec_pretty(&consolidated).unwrap()).unwrap();
}

/// A store of the earlier layout keeps working: `verify` checks its row-ordered index, and the
/// next append upgrades the index to a run once (saying so), deletes `.candids`, keeps the old
/// rejects readable after the new ones' log, and equals a one-shot build.
#[test]
fn a_store_of_the_earlier_layout_is_upgraded_by_its_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    // The earlier layout had no light curves.
    let one_shot = dir.path().join("one.zarr");
    build(&one_shot, &[a.clone(), b.clone()].concat(), &["--no-lightcurves"]);
    let store = dir.path().join("old.zarr");
    build(&store, &a, &["--no-lightcurves"]);
    to_earlier_layout(&store);
    let verify = ztf2zarr(["verify", store.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("matches the catalog, row by row"), "{verify:?}");
    assert_sound(&store);
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(b.iter().map(|p| p.display().to_string()));
    args.extend(["-o".to_string(), store.display().to_string(), "--no-progress".into()]);
    let output = ztf2zarr(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("upgrading the candid index") && stderr.contains("old.zarr"), "{stderr}");
    assert!(!store.join(".candids").exists(), "the legacy index is deleted once upgraded");
    assert_eq!(contents(&store), contents(&one_shot));
    assert_eq!(crate::util::rejects_text(&store), crate::util::rejects_text(&one_shot));
    assert_sound(&store);
    // A second append finds the upgraded index as any store's: every alert a duplicate, no second upgrade.
    let again = ztf2zarr(&args);
    assert!(again.status.success() && !String::from_utf8_lossy(&again.stderr).contains("upgrading"));
    assert_eq!(contents(&store), contents(&one_shot));
}

/// A local store named by its path and by a `file://` URL is one store with one lock: a writer
/// holding the path's lock stops a build given the URL, which then writes the same store.
#[test]
fn a_store_named_by_its_path_and_by_a_file_url_takes_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    let url = format!("file://{}", store.display());
    let input = real_alerts().join("kowalski-20200202");
    let held = StoreLock::acquire(&store).unwrap();
    let refused = ztf2zarr(["build", input.to_str().unwrap(), "-o", &url, "--no-progress"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("being written by another ztf2zarr") && stderr.contains(&format!("pid {}", std::process::id())), "{stderr}");
    drop(held);
    ztf2zarr_ok(["build", input.to_str().unwrap(), "-o", &url, "--no-progress"]);
    assert!(!store.join(".ztf2zarr/lock").exists(), "a file:// store was locked with a lock object, not with its path's lock");
    assert_sound(&store);
    let info = ztf2zarr_ok(["info", &url]);
    assert!(info.contains(&format!("store        {}", store.display())), "{info}");
}

/// STORE URLs that do not name one store's objects one for one are refused before anything is
/// read or written, naming the URL and the reason.
#[test]
fn urls_that_do_not_map_one_for_one_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = real_alerts().join("kowalski-20200202");
    for (url, reason) in [
        ("http://example.org/s.zarr", "not a URL of an object store"),
        ("s3://b//y.zarr", "empty path segment"),
        ("s3://b/x//y.zarr", "empty path segment"),
        ("s3://b/x/../y.zarr", "`..`"),
        ("s3://b/x%2Fy.zarr", "percent escape"),
        ("s3://b/y.zarr#1", "query or fragment"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
            .args(["build", input.to_str().unwrap(), "-o", url, "--no-progress"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(&format!("`{url}` cannot be used as a store")) && stderr.contains(reason), "{url}: {stderr}");
        for args in [vec!["info", url], vec!["verify", url], vec!["unlock", url]] {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_ztf2zarr")).args(&args).current_dir(dir.path()).output().unwrap();
            assert_eq!(output.status.code(), Some(2), "{args:?}");
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a refused URL made a local folder");
}

/// SIGINT (as Ctrl-C sends) in the middle of an append onto a local store: the build stops at its
/// next write, deletes what it wrote and says nothing was committed; the store is as it was.
#[test]
fn an_interrupted_append_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    let (first, second) = nights();
    build(&store, &first, &[]);
    let before = tree_bytes(&store);
    let before_contents = contents(&store);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
        .arg("build")
        .args(&second)
        .args(["-o", store.to_str().unwrap(), "--no-progress"])
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .env("ZTF2ZARR_FAULT", "stop-after-chunk")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let stat = format!("/proc/{pid}/stat");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&stat).unwrap().rsplit(')').next().unwrap().split_whitespace().next() != Some("T") {
        assert!(started.elapsed().as_secs() < 60, "the build did not stop after its first chunk");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signals to our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
        libc::kill(pid, libc::SIGCONT);
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "128 + SIGINT, as a shell reports it: {stderr}");
    assert!(stderr.contains("stopped by SIGINT before its commit: nothing of this run was committed"), "{stderr}");
    // Every object of before, and no other; its rows as they were (an incomplete last chunk keeps
    // the rows it was given past the committed shape, where no reader looks).
    let keys = |tree: &[(PathBuf, Vec<u8>)]| tree.iter().map(|(path, _)| path.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&tree_bytes(&store)), keys(&before), "objects left behind");
    assert_eq!(contents(&store), before_contents);
    assert_sound(&store);
}

/// After a killed build, `info` says what was left and the next build says it finished it:
/// a killed first build is "not a store yet" (run it again), a killed append an unfinished build.
#[test]
fn an_interrupted_build_is_named_by_info_and_the_next_build_says_it_finished_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = nights();
    let killed = |store: &std::path::Path, inputs: &[std::path::PathBuf]| {
        let mut args: Vec<String> = vec!["build".into()];
        args.extend(inputs.iter().map(|p| p.display().to_string()));
        args.extend(["-o".to_string(), store.display().to_string(), "--no-progress".into()]);
        let status =
            std::process::Command::new(env!("CARGO_BIN_EXE_ztf2zarr")).args(&args).env("ZTF2ZARR_FAULT", "after-chunk").status().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the build should have been killed");
    };
    let store = dir.path().join("first.zarr");
    killed(&store, &a);
    let info = ztf2zarr(["info", store.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&info.stderr);
    assert_eq!(info.status.code(), Some(2), "{said}");
    assert!(said.contains("is not a store yet") && said.contains("did not finish") && said.contains("run it again"), "{said}");
    let again = ztf2zarr(["build", a[0].to_str().unwrap(), "-o", store.to_str().unwrap(), "--no-progress"]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{said}");
    assert!(said.contains("note: finished what an interrupted `build`") && said.contains("committed nothing"), "{said}");

    let store = dir.path().join("append.zarr");
    build(&store, &a, &[]);
    killed(&store, &b);
    let info = ztf2zarr(["info", store.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&info.stdout);
    assert_eq!(info.status.code(), Some(0), "{said}");
    assert!(said.contains("unfinished   a `build` started") && said.contains("nothing of it was committed"), "{said}");
    let again = ztf2zarr(["build", b[0].to_str().unwrap(), "-o", store.to_str().unwrap(), "--no-progress"]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("the store is as its last commit left it"), "{said}");
    let info = ztf2zarr(["info", store.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&info.stdout).contains("unfinished"), "finished, and said no more");
    assert_sound(&store);
}
