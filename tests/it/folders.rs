//! Folders as inputs: symbolic link loops, links to files already read, FIFOs, sockets and
//! devices, paths too long to inspect; an append whose every input is rejected; a reader thread
//! that fails. Every case is built here from a few real alerts and hand-made entries.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables::TABLES;

use crate::util::{real_alerts, tree_bytes, ztf2zarr_ok};

/// Longer than any build of a few alerts takes: only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);

/// Run `ztf2zarr ARGS...`, killing it if it hangs (a FIFO opened by mistake would block forever).
fn ztf2zarr_bounded(args: &[&str], fault: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ztf2zarr"));
    command.args(args).env("SOURCE_DATE_EPOCH", "1767225600").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(point) = fault {
        command.env("ZTF2ZARR_FAULT", point);
    }
    let mut child = command.spawn().expect("run ztf2zarr");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > HANG {
            child.kill().unwrap();
            panic!("ztf2zarr {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first `count` real alerts of one night (sorted), copied into `folder`; their names.
fn alerts_into(folder: &Path, count: usize) -> Vec<PathBuf> {
    let night = real_alerts().join("kowalski-20200202");
    let mut names: Vec<PathBuf> = std::fs::read_dir(night).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    std::fs::create_dir_all(folder).unwrap();
    names
        .iter()
        .take(count)
        .map(|path| {
            let copy = folder.join(path.file_name().unwrap());
            std::fs::copy(path, &copy).unwrap();
            copy
        })
        .collect()
}

/// The summary's counts: (written, duplicates, rejected).
fn counts(summary: &str) -> (usize, usize, usize) {
    let number = |label: &str| -> usize {
        let line = summary.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no `{label}` line in\n{summary}"));
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    (number("written"), number("duplicates"), number("rejected"))
}

fn build_ok(inputs: &[&Path], store: &Path) -> String {
    let mut args = vec!["build".to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".into(), store.display().to_string(), "--no-progress".into()]);
    let output = ztf2zarr_bounded(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(output.status.success(), "ztf2zarr failed: {}\n{}", text(&output.stderr), text(&output.stdout));
    text(&output.stdout)
}

fn rejects_lines(store: &Path) -> Vec<serde_json::Value> {
    crate::util::rejects_text(store).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn symlink_loops_are_listed_and_each_file_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let night = dir.path().join("night");
    let alerts = alerts_into(&night, 3);
    symlink(".", night.join("loop")).unwrap();
    std::fs::create_dir(night.join("sub")).unwrap();
    symlink("..", night.join("sub/back")).unwrap();
    symlink("self.avro", night.join("self.avro")).unwrap();
    symlink(alerts[0].file_name().unwrap(), night.join("again.avro")).unwrap();
    std::fs::hard_link(&alerts[1], night.join("sub/hard.avro")).unwrap();
    symlink("gone.avro", night.join("broken.avro")).unwrap();
    let store = dir.path().join("s.zarr");

    let summary = build_ok(&[&night], &store);
    assert_eq!(counts(&summary), (3, 0, 0), "{summary}");
    assert_eq!(StoreReader::open(&store, &TABLES).unwrap().rows(), 3);
    assert!(summary.contains("ignored     6 paths ("), "{summary}");
    assert!(summary.contains("3 symlink loops") && summary.contains("2 same files") && summary.contains("1 broken symlink"), "{summary}");
    for (name, reason) in [
        ("night/loop", "symbolic link loop"),
        ("night/sub/back", "symbolic link loop"),
        ("night/self.avro", "symbolic link loop"),
        ("night/broken.avro", "symbolic link to nothing"),
    ] {
        assert!(summary.contains(&format!("{name}: a {reason}")), "{name}: {summary}");
    }
    // The alerts' names (digits) sort before `again.avro`: the file is read, the link is the repeat.
    assert!(summary.contains(&format!("night/again.avro: the same file as `{}`", alerts[0].display())), "{summary}");
    assert!(summary.contains(&format!("night/sub/hard.avro: the same file as `{}`", alerts[1].display())), "{summary}");
}

#[test]
fn a_folder_reached_twice_through_links_is_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let night = dir.path().join("night");
    alerts_into(&night.join("real"), 2);
    symlink("real", night.join("alias")).unwrap();
    let store = dir.path().join("s.zarr");
    // given twice as well: once as the folder, once through the link inside it
    let summary = build_ok(&[&night, &night.join("real")], &store);
    assert_eq!(counts(&summary), (2, 0, 0), "{summary}");
    assert!(summary.contains("2 same folders"), "{summary}");
    assert!(summary.contains(&format!("night/real: the same folder as `{}`", night.join("alias").display())), "{summary}");
}

#[test]
fn fifos_sockets_and_devices_are_listed_and_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    let night = dir.path().join("night");
    alerts_into(&night, 2);
    let fifo = night.join("x.avro");
    let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
    let _socket = std::os::unix::net::UnixListener::bind(night.join("s.avro")).unwrap();
    symlink("/dev/null", night.join("null.avro")).unwrap();
    let store = dir.path().join("s.zarr");

    // The FIFO is also given by name: a path the user gives is checked the same way.
    let summary = build_ok(&[&night, &fifo], &store);
    assert_eq!(counts(&summary), (2, 0, 0), "{summary}");
    assert!(summary.contains("ignored     4 paths (1 device, 1 socket, 2 FIFOs)"), "{summary}");
    assert!(summary.contains("night/x.avro: a FIFO (named pipe), not a file: never opened"), "{summary}");
    assert!(summary.contains("night/s.avro: a socket, not a file: never opened"), "{summary}");
    assert!(summary.contains("night/null.avro: a device, not a file: never opened"), "{summary}");

    // Nothing but a FIFO: nothing to read is an error naming the path, and no store is made.
    let other = dir.path().join("other.zarr");
    let output = ztf2zarr_bounded(&["build", fifo.to_str().unwrap(), "-o", other.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert!(text(&output.stderr).contains(fifo.to_str().unwrap()), "{}", text(&output.stderr));
    assert!(!other.exists());
}

/// Create `levels` nested folders of 200-character names under `root`, working from open
/// folder descriptors: no path passed to the kernel is long, though the deepest one is.
fn deep_folders(root: &Path, levels: usize) -> PathBuf {
    let segment = "d".repeat(200);
    let name = CString::new(segment.as_bytes()).unwrap();
    let root_c = CString::new(root.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated paths; every descriptor opened here is closed here.
    unsafe {
        let mut fd = libc::open(root_c.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        assert!(fd >= 0, "open {}: {}", root.display(), std::io::Error::last_os_error());
        for _ in 0..levels {
            assert_eq!(libc::mkdirat(fd, name.as_ptr(), 0o755), 0, "mkdirat: {}", std::io::Error::last_os_error());
            let next = libc::openat(fd, name.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            assert!(next >= 0, "openat: {}", std::io::Error::last_os_error());
            libc::close(fd);
            fd = next;
        }
        libc::close(fd);
    }
    (0..levels).fold(root.to_path_buf(), |path, _| path.join(&segment))
}

#[test]
fn a_path_too_long_to_inspect_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let night = dir.path().join("night");
    alerts_into(&night, 2);
    let deepest = deep_folders(&night, 25); // 25 × 201 bytes: past PATH_MAX (4096)
    assert!(deepest.as_os_str().len() > libc::PATH_MAX as usize);
    let store = dir.path().join("s.zarr");
    let output = ztf2zarr_bounded(&["build", night.to_str().unwrap(), "-o", store.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("File name too long") && stderr.contains(&format!("{}/dddd", night.display())), "{stderr}");
    assert!(!text(&output.stdout).contains("ignored"), "{}", text(&output.stdout));
    assert!(!store.exists());
}

#[test]
fn an_append_of_only_rejects_records_them_and_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    alerts_into(&good, 3);
    let store = dir.path().join("s.zarr");
    build_ok(&[&good], &store);
    let rejects_before = rejects_lines(&store).len();

    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for (name, bytes) in [("a.avro", &b"not an avro file"[..]), ("b.avro", b"Obj\x01"), ("c.avro", b"")] {
        std::fs::write(bad.join(name), bytes).unwrap();
    }
    let summary = build_ok(&[&bad], &store);
    assert_eq!(counts(&summary), (0, 0, 3), "{summary}");
    assert!(summary.contains("store rows 3 → 3"), "{summary}");

    let reader = StoreReader::open(&store, &TABLES).unwrap();
    assert_eq!(reader.rows(), 3);
    let new: Vec<String> = rejects_lines(&store)[rejects_before..].iter().map(|l| l["source"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = ["a.avro", "b.avro", "c.avro"].iter().map(|n| bad.join(n).display().to_string()).collect();
    assert_eq!(new, expected);
    let runs = reader.runs();
    assert_eq!(runs.len(), 2);
    let last = &runs[1];
    assert_eq!((last["rows_before"].as_u64(), last["rows_after"].as_u64()), (Some(3), Some(3)), "{last}");
    assert_eq!(last["inputs"][0]["rejected"].as_u64(), Some(3), "{last}");
    drop(reader);
    let verify = crate::util::ztf2zarr(["verify", store.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));

    // Nothing new and nothing rejected (every alert a duplicate): every file stays as it was.
    let before = tree_bytes(&store);
    let summary = ztf2zarr_ok(["build", good.to_str().unwrap(), "-o", store.to_str().unwrap()]);
    assert_eq!(counts(&summary), (0, 3, 0), "{summary}");
    assert!(summary.contains("nothing new, the store is unchanged"), "{summary}");
    assert_eq!(tree_bytes(&store), before);
}

#[test]
fn a_reader_thread_that_panics_fails_the_build_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let night = dir.path().join("night");
    alerts_into(&night, 4);
    let store = dir.path().join("s.zarr");
    let args = ["build", night.to_str().unwrap(), "-o", store.to_str().unwrap(), "--no-progress"];

    let output = ztf2zarr_bounded(&args, Some("reader-panic"));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("reading the inputs failed: the reader thread panicked: fault point reader-panic"), "{stderr}");
    assert!(stderr.contains("the store was not changed"), "{stderr}");
    assert!(!store.exists(), "a failed first build must leave no store");

    // The same on an existing store: not one file changes.
    let more = dir.path().join("more");
    alerts_into(&more, 6);
    build_ok(&[&night], &store);
    let before = tree_bytes(&store);
    let output = ztf2zarr_bounded(&["build", more.to_str().unwrap(), "-o", store.to_str().unwrap(), "--no-progress"], Some("reader-panic"));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert_eq!(tree_bytes(&store), before);
    // and without the fault, the append completes: 2 new, 4 already stored
    let summary = build_ok(&[&more], &store);
    assert_eq!(counts(&summary), (2, 4, 0), "{summary}");
}
