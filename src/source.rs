//! Inputs: finding alert files (`.avro` files, folders walked recursively in sorted order, nightly
//! `.tar.gz` archives) and reading them, in order, as named byte buffers. Archives are streamed
//! member by member, never extracted to disk. This module never parses Avro.
//!
//! A reader thread hands items over a bounded channel, in input order: a loose file as its path
//! (read later by [`Item::load`] on a worker, so files are read in parallel), an archive member
//! as its bytes (the archive is inflated here while the workers decode, see `source/archive.rs`),
//! and, between them, [`Mark`]s that say which archive alerts a gzip checksum has verified.

mod archive;
mod gzip;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use thiserror::Error;

use crate::decode::Reject;
pub use archive::MAX_MEMBER_BYTES;

/// One input as the user named it or as a folder walk found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One Avro container file.
    File(PathBuf),
    /// A tar archive of Avro files, gzip'd (`.tar.gz`, `.tgz`) or plain (`.tar`).
    Archive(PathBuf),
}

impl Input {
    /// The path of this input.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Input::File(p) | Input::Archive(p) => p,
        }
    }
}

/// An input path that cannot be used at all (nothing has been read yet).
#[derive(Debug, Error)]
pub enum InputError {
    /// The path does not exist or cannot be inspected.
    #[error("input `{path}`: {source}")]
    Inaccessible { path: PathBuf, source: std::io::Error },
    /// A folder that cannot be listed.
    #[error("cannot list folder `{path}`: {source}")]
    Unlistable { path: PathBuf, source: std::io::Error },
}

/// What discovery found: inputs in order, plus files in folders that are not alerts.
#[derive(Debug, Default)]
pub struct Plan {
    /// Inputs in the order they will be read.
    pub inputs: Vec<Input>,
    /// For each input, the index of the path the user gave that it came from.
    pub origins: Vec<usize>,
    /// Files inside given folders that were not `.avro` or `.tar.gz` (not read).
    pub ignored: Vec<PathBuf>,
}

/// Resolve the user's paths into inputs, checking every path before anything is read.
///
/// # Errors
/// A path that does not exist, or a folder that cannot be listed.
pub fn discover(paths: &[PathBuf]) -> Result<Plan, InputError> {
    let mut plan = Plan::default();
    for (origin, path) in paths.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|source| InputError::Inaccessible { path: path.clone(), source })?;
        if meta.is_dir() {
            walk(path, &mut plan)?;
        } else {
            plan.inputs.push(classify(path).unwrap_or_else(|| Input::File(path.clone())));
        }
        plan.origins.resize(plan.inputs.len(), origin);
    }
    Ok(plan)
}

fn is_archive(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")
}

fn classify(path: &Path) -> Option<Input> {
    if is_archive(path) {
        Some(Input::Archive(path.to_path_buf()))
    } else if path.extension().is_some_and(|e| e == "avro") {
        Some(Input::File(path.to_path_buf()))
    } else {
        None
    }
}

fn walk(folder: &Path, plan: &mut Plan) -> Result<(), InputError> {
    let unlistable = |source| InputError::Unlistable { path: folder.to_path_buf(), source };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(unlistable)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(unlistable)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, plan)?;
        } else if let Some(input) = classify(&path) {
            plan.inputs.push(input);
        } else {
            plan.ignored.push(path);
        }
    }
    Ok(())
}

/// What an item holds: an archive member's bytes (already read from the stream), a file still
/// to be read, why it cannot be read, or a mark about the archive being read.
#[derive(Debug)]
pub enum Payload {
    /// The bytes, read.
    Bytes(Vec<u8>),
    /// A file to read with [`Item::load`] — on a worker thread, so that files are read in parallel.
    File(PathBuf),
    /// Why it could not be read (one alert file lost).
    Unreadable(String),
    /// An archive member rejected without being read (e.g. too large).
    Rejected(Reject),
    /// Not an alert: news about the archive being streamed.
    Mark(Mark),
}

/// What the archive reader tells the ordering stage between members, in stream order.
#[derive(Debug)]
pub enum Mark {
    /// Every alert sent before this comes from verified bytes: keep a rollback point here.
    Verified,
    /// The bytes since the last `Verified` failed their check: drop (and reject) every alert
    /// taken from them since then.
    Failed {
        /// `archive-checksum` or `archive-corrupt`.
        kind: &'static str,
        /// What failed, where, and how reading went on.
        reason: String,
        /// Alert files lost that were never sent: 1 if the break came inside one, else 0.
        unsent: usize,
    },
    /// A problem with the archive itself (truncated, unreadable tail), rejected as it stands.
    Problem(Reject),
    /// The item's member is not read as an alert, for this reason.
    Ignored {
        /// Why (a link, a folder, not `.avro`, …).
        reason: String,
    },
    /// The archive ended: no rollback point is needed any more.
    Closed,
}

/// One alert file (or archive member), in input order.
#[derive(Debug)]
pub struct Item {
    /// Index of the input (in the plan) this item was read from.
    pub input: usize,
    /// `path` for files, `archive:member` for archive members.
    pub name: String,
    /// Its content, or where to read it from.
    pub payload: Payload,
    /// Compressed archive bytes consumed since the previous item (0 for loose files), for progress.
    pub consumed: u64,
}

impl Item {
    /// The item's bytes (reading the file now if need be), or why they cannot be had.
    ///
    /// # Errors
    /// The file cannot be read, or the archive broke before this member.
    pub fn load(&self) -> Result<std::borrow::Cow<'_, [u8]>, String> {
        match &self.payload {
            Payload::Bytes(bytes) => Ok(bytes.as_slice().into()),
            Payload::File(path) => std::fs::read(path).map(Into::into).map_err(|e| format!("cannot read file: {e}")),
            Payload::Unreadable(reason) => Err(reason.clone()),
            Payload::Rejected(reject) => Err(reject.reason.clone()),
            Payload::Mark(_) => Ok((&[][..]).into()),
        }
    }
}

/// Start reading `inputs` on a background thread; at most `capacity` items wait in memory.
#[must_use]
pub fn stream(inputs: Vec<Input>, capacity: usize) -> (Receiver<Item>, JoinHandle<()>) {
    let (sender, receiver) = sync_channel(capacity);
    let handle = std::thread::spawn(move || {
        for (index, input) in inputs.iter().enumerate() {
            let keep_going = match input {
                Input::File(path) => sender.send(read_file(index, path)).is_ok(),
                Input::Archive(path) => archive::read_archive(index, path, &mut |item| sender.send(item).is_ok()),
            };
            if !keep_going {
                return; // the consumer stopped (e.g. --strict hit a reject)
            }
        }
    });
    (receiver, handle)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn read_file(input: usize, path: &Path) -> Item {
    Item { input, name: display(path), payload: Payload::File(path.to_path_buf()), consumed: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_walk_sorted_and_sort_out_non_alerts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        for name in ["b/2.avro", "1.avro", "notes.md", "night.tar.gz"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let plan = discover(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = plan.inputs.iter().map(|i| i.path().strip_prefix(dir.path()).unwrap().to_path_buf()).collect();
        assert_eq!(names, [PathBuf::from("1.avro"), "b/2.avro".into(), "night.tar.gz".into()]);
        assert!(matches!(plan.inputs[2], Input::Archive(_)));
        assert_eq!(plan.ignored.len(), 1);
    }

    #[test]
    fn missing_path_names_the_path() {
        let err = discover(&[PathBuf::from("/no/such/night.tar.gz")]).unwrap_err();
        assert!(err.to_string().contains("/no/such/night.tar.gz"), "{err}");
    }
}
