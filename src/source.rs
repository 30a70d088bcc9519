//! Inputs: finding alert files (`.avro` files, folders walked recursively in sorted order, nightly
//! `.tar.gz` archives) and reading them, in order, as named byte buffers. Archives are streamed
//! member by member, never extracted to disk. This module never parses Avro.
//!
//! A reader thread hands items over a bounded channel, in input order: a loose file as its path
//! (read later by [`Item::load`] on a worker, so files are read in parallel), an archive member
//! as its bytes (the archive is one gzip stream, inflated here while the workers decode).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use thiserror::Error;

/// One input as the user named it or as a folder walk found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One Avro container file.
    File(PathBuf),
    /// A gzip'd tar archive of Avro files.
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
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
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
/// to be read, or why it cannot be read.
#[derive(Debug)]
pub enum Payload {
    /// The bytes, read.
    Bytes(Vec<u8>),
    /// A file to read with [`Item::load`] — on a worker thread, so that files are read in parallel.
    File(PathBuf),
    /// Why it could not be read.
    Unreadable(String),
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
                Input::Archive(path) => read_archive(index, path, &mut |item| sender.send(item).is_ok()),
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
    Item { input, name: display(path), payload: Payload::File(path.to_path_buf()) }
}

/// Send every `.avro` member of an archive; an archive that breaks part-way is reported as one
/// item carrying the error, after the members read before it. Returns false if the consumer stopped.
fn read_archive(input: usize, path: &Path, send: &mut dyn FnMut(Item) -> bool) -> bool {
    let name = display(path);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return send(Item { input, name, payload: Payload::Unreadable(format!("cannot open archive: {e}")) }),
    };
    let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let mut archive = tar::Archive::new(gz);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return send(Item { input, name, payload: Payload::Unreadable(format!("not a readable .tar.gz: {e}")) }),
    };
    let mut members = 0usize;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => return send(Item { input, name, payload: Payload::Unreadable(archive_break(members, &e)) }),
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry.path().map(|p| display(&p)).unwrap_or_else(|_| "<unnamed member>".into());
        if !member.ends_with(".avro") {
            continue;
        }
        members += 1;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        let item_name = format!("{name}:{member}");
        let item = match entry.read_to_end(&mut bytes) {
            Ok(_) => Item { input, name: item_name, payload: Payload::Bytes(bytes) },
            Err(e) => Item { input, name: item_name, payload: Payload::Unreadable(archive_break(members - 1, &e)) },
        };
        let broken = matches!(item.payload, Payload::Unreadable(_));
        if !send(item) {
            return false;
        }
        if broken {
            return true; // the rest of this archive cannot be reached; go on with the next input
        }
    }
    true
}

fn archive_break(members_read: usize, error: &std::io::Error) -> String {
    format!("archive unreadable after {members_read} alert members (truncated or corrupt .tar.gz?): {error}")
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
