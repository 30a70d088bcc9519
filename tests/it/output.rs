//! Printing never breaks the work: every subcommand run with its standard output a pipe nobody
//! reads, with standard output `/dev/full`, and with its standard error a pipe nobody reads. A
//! closed pipe is not an error (the reader has what it wanted, as `… | head -1` means); a full
//! device is exit 2 naming standard output, after the work; no panic ever reaches the user, and
//! the store stays sound.

use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{assert_sound, ztf2zarr_ok};

/// Where a stream of the command goes.
#[derive(Clone, Copy, Debug)]
enum Sink {
    /// A pipe whose reading end is already closed: every write fails with a broken pipe.
    ClosedPipe,
    /// `/dev/full`: every write fails with "no space left on device".
    Full,
    /// Captured, to be read.
    Captured,
}

impl Sink {
    fn stdio(self) -> Stdio {
        match self {
            Sink::ClosedPipe => {
                let mut ends = [0; 2];
                // SAFETY: `pipe` fills the two descriptors, each then owned once: the reading end
                // closed at once, the writing end by the Stdio it becomes.
                let (reader, writer) = unsafe {
                    assert_eq!(libc::pipe(ends.as_mut_ptr()), 0, "pipe(2)");
                    (std::os::fd::OwnedFd::from_raw_fd(ends[0]), std::os::fd::OwnedFd::from_raw_fd(ends[1]))
                };
                drop(reader);
                writer.into()
            }
            Sink::Full => std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap().into(),
            Sink::Captured => Stdio::piped(),
        }
    }
}

/// Run `ztf2zarr ARGS` with its standard output and error sent to `stdout` and `stderr`: the exit
/// code and what standard error said (empty unless captured).
fn run(args: &[&str], stdout: Sink, stderr: Sink) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .stdin(Stdio::null())
        .stdout(stdout.stdio())
        .stderr(stderr.stdio())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!said.contains("panicked"), "ztf2zarr {args:?} panicked: {said}");
    assert_ne!(output.status.code(), Some(101), "ztf2zarr {args:?} exited 101 (a panic)");
    (output.status.code(), said)
}

fn samples(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples").join(name).display().to_string()
}

#[test]
fn every_command_finishes_its_work_whatever_happens_to_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.zarr");
    let s = store.to_str().unwrap();
    let (night1, night2, labels) = (samples("ztf_public_20250101"), samples("ztf_public_20250102.tar.gz"), samples("labels.csv"));

    // A build whose summary nobody reads is a build: exit 0, the store committed and sound.
    let (code, said) = run(&["build", &night1, "-o", s, "--no-progress"], Sink::ClosedPipe, Sink::Captured);
    assert_eq!(code, Some(0), "{said}");
    assert_sound(&store);
    // One whose summary cannot be written says so, exit 2, with the night committed.
    let (code, said) = run(&["build", &night2, "-o", s, "--no-progress"], Sink::Full, Sink::Captured);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("could not write to standard output") && said.contains("work is done"), "{said}");
    assert_sound(&store);
    let again = ztf2zarr_ok(["build", &night2, "-o", s, "--no-progress"]);
    assert!(again.contains("written     0 alerts"), "the night was committed: {again}");

    let commands: [&[&str]; 6] = [
        &["info", s],
        &["info", s, "--json"],
        &["verify", s],
        &["label", s, "--labels", &labels, "--classes", "QSO,YSO,RRL"],
        &["split", s, "--seed", "1"],
        &["unlock", s],
    ];
    for args in commands {
        let (code, said) = run(args, Sink::ClosedPipe, Sink::Captured);
        assert_eq!(code, Some(0), "{args:?} with its output closed: {said}");
        let (code, said) = run(args, Sink::Full, Sink::Captured);
        assert_eq!(code, Some(2), "{args:?} with its output full: {said}");
        assert!(said.contains("could not write to standard output"), "{args:?}: {said}");
        // Standard error closed: the warnings of `split` (classes left out of a split) come
        // from inside its transaction, which must still commit.
        let (code, _) = run(args, Sink::Captured, Sink::ClosedPipe);
        assert_eq!(code, Some(0), "{args:?} with its standard error closed");
        assert_sound(&store);
    }
    let pending = ztf2zarr_ok(["build", &night2, "-o", s, "--no-progress"]);
    assert!(pending.contains("written     0 alerts"), "no transaction was left pending: {pending}");

    let generated = dir.path().join("generated");
    let (code, _) = run(&["generate", "-o", generated.to_str().unwrap(), "--count", "3"], Sink::ClosedPipe, Sink::ClosedPipe);
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read_dir(&generated).unwrap().count(), 3, "the alerts were written");
}
