//! Helpers shared by the integration tests: the real alert folder, a temp dir per test, and
//! running the `ztf2zarr` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real ZTF alerts (548 files): `$ZTF_ALERTS`, else `../shared/data/ztf-alerts` beside the repo.
pub fn real_alerts() -> PathBuf {
    let path = std::env::var_os("ZTF_ALERTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ztf-alerts"));
    assert!(path.join("MANIFEST.md").is_file(), "real alert data not found at {} (set ZTF_ALERTS)", path.display());
    path
}

/// Run `ztf2zarr ARGS...`.
pub fn ztf2zarr<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    // A fixed provenance time makes stores from equal inputs byte-identical.
    Command::new(env!("CARGO_BIN_EXE_ztf2zarr")).args(args).env("SOURCE_DATE_EPOCH", "1767225600").output().expect("run ztf2zarr")
}

/// Run `ztf2zarr ARGS...` and insist it succeeds; returns stdout.
pub fn ztf2zarr_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = ztf2zarr(args);
    assert!(
        output.status.success(),
        "ztf2zarr failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// `ztf2zarr verify` finds `store` sound.
pub fn assert_sound(store: &Path) {
    let output = ztf2zarr(["verify", store.to_str().unwrap()]);
    assert!(output.status.success(), "verify: {}", String::from_utf8_lossy(&output.stdout));
}

/// Every file under `root`, relative path → bytes, sorted.
pub fn tree_bytes(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Every rejects log of a store (one per build that rejected something), oldest first, as one text.
pub fn rejects_text(store: &Path) -> String {
    ztf2zarr::store::inspect::rejects_text(&ztf2zarr::store::LocalStorage::new(store)).expect("read the rejects logs")
}
