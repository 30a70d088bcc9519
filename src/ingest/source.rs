//! Inputs: finding alert files (`.avro` and `.avro.gz` files, folders walked recursively in sorted order, nightly
//! `.tar.gz` archives) and reading them, in order, as named byte buffers. Archives are streamed
//! member by member, never extracted to disk. This module never parses Avro.
//!
//! Discovery follows symbolic links but reads each file and walks each folder once, by (device,
//! inode), and lists, with the reason, every path it does not read (other files, FIFOs, sockets,
//! devices, link loops, repeats); nothing but a regular file is ever opened.
//!
//! A reader thread hands items over a bounded channel, in input order: a loose file as its path
//! (read later by [`Item::load`] on a worker, so files are read in parallel), an archive member
//! as its bytes (the archive is inflated here while the workers decode, see `source/archive.rs`),
//! and, between them, [`Mark`]s that say which archive alerts a gzip checksum has verified.

mod archive;
mod remote;

use std::collections::HashMap;
use std::fs::{FileType, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use thiserror::Error;

use crate::store::StoreTarget;
use crate::survey::{Reject, RejectKind};

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
    /// The path does not exist or cannot be inspected (e.g. longer than the system allows).
    #[error("input `{path}`: {source}")]
    Inaccessible { path: PathBuf, source: std::io::Error },
    /// A folder that cannot be listed.
    #[error("cannot list folder `{path}`: {source}")]
    Unlistable { path: PathBuf, source: std::io::Error },
}

/// Why a path found in a folder (or given) is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A file whose name is not `.avro`, `.avro.gz`, `.tar.gz`, `.tgz` or `.tar`.
    NotAlert,
    /// A named pipe: opening it would wait for a writer.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character or block device.
    Device,
    /// A symbolic link that leads back into a folder being walked, or to itself.
    SymlinkLoop,
    /// A symbolic link to nothing.
    BrokenLink,
    /// The same file (hard or symbolic link) as one already in the plan: read once.
    SameFile(PathBuf),
    /// The same folder (through a symbolic link) as one already walked: walked once.
    SameFolder(PathBuf),
}

impl Skip {
    /// A short name for the summary's counts.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Skip::NotAlert => "not an alert file",
            Skip::Fifo => "FIFO",
            Skip::Socket => "socket",
            Skip::Device => "device",
            Skip::SymlinkLoop => "symlink loop",
            Skip::BrokenLink => "broken symlink",
            Skip::SameFile(_) => "same file",
            Skip::SameFolder(_) => "same folder",
        }
    }

    /// [`Skip::kind`] for more than one: "2 not alert files".
    #[must_use]
    pub fn kinds(&self) -> &'static str {
        match self {
            Skip::NotAlert => "not alert files",
            Skip::Fifo => "FIFOs",
            Skip::Socket => "sockets",
            Skip::Device => "devices",
            Skip::SymlinkLoop => "symlink loops",
            Skip::BrokenLink => "broken symlinks",
            Skip::SameFile(_) => "same files",
            Skip::SameFolder(_) => "same folders",
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotAlert => f.write_str("not an alert file (.avro, .avro.gz, .tar.gz, .tgz, .tar)"),
            Skip::Fifo => f.write_str("a FIFO (named pipe), not a file: never opened"),
            Skip::Socket => f.write_str("a socket, not a file: never opened"),
            Skip::Device => f.write_str("a device, not a file: never opened"),
            Skip::SymlinkLoop => f.write_str("a symbolic link loop (leads back to a folder being walked)"),
            Skip::BrokenLink => f.write_str("a symbolic link to nothing"),
            Skip::SameFile(first) => write!(f, "the same file as `{}` (read once)", first.display()),
            Skip::SameFolder(first) => write!(f, "the same folder as `{}` (walked once)", first.display()),
        }
    }
}

/// A path that discovery found and will not read, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The path, as the walk reached it.
    pub path: PathBuf,
    /// Why it is not read.
    pub reason: Skip,
}

/// What discovery found: inputs in order, plus paths that will not be read and why.
#[derive(Debug, Default)]
pub struct Plan {
    /// Inputs in the order they will be read.
    pub inputs: Vec<Input>,
    /// For each input, the index of the path the user gave that it came from.
    pub origins: Vec<usize>,
    /// Paths found (or given) that are not read, with the reason.
    pub ignored: Vec<Ignored>,
    /// Bytes of all inputs as discovery found them (archives compressed), for the progress bar.
    pub bytes: u64,
}

/// Resolve the user's paths into inputs, checking every path before anything is read.
///
/// Symbolic links are followed, but every file and folder is identified by its (device, inode):
/// a folder is walked once and a file read once however many links lead to it, and a link back
/// into a folder being walked is a loop, listed and not followed. FIFOs, sockets and devices are
/// listed and never opened.
///
/// # Errors
/// A path that does not exist or cannot be inspected (e.g. too long), or a folder that cannot be
/// listed: the build must not go on without part of what was asked for.
///
/// The folder of `output`, the store being built, is never walked, and not listed either: a store
/// built inside its input folder is not an input (its files would be so many paths not read).
pub fn discover(paths: &[PathBuf], output: &StoreTarget) -> Result<Plan, InputError> {
    let mut walk = Walk { output: output.local().map(output_ids).unwrap_or_default(), ..Walk::default() };
    for (origin, path) in paths.iter().enumerate() {
        if crate::store::object::is_url(&path.to_string_lossy()) {
            walk.add_remote(path)?;
            walk.plan.origins.resize(walk.plan.inputs.len(), origin);
            continue;
        }
        // A path the user gave is taken for what it points to; a broken or looping link is an error.
        let meta = std::fs::metadata(path).map_err(|source| InputError::Inaccessible { path: path.clone(), source })?;
        walk.add(path.clone(), &meta, true)?;
        walk.plan.origins.resize(walk.plan.inputs.len(), origin);
    }
    Ok(walk.plan)
}

impl Walk {
    /// An input on object storage: one archive or one alert file (a prefix is not listed).
    fn add_remote(&mut self, url: &Path) -> Result<(), InputError> {
        let inaccessible = |reason: String| InputError::Inaccessible { path: url.to_path_buf(), source: std::io::Error::other(reason) };
        let Some(input) = classify(url) else {
            return Err(inaccessible(
                "an input on object storage must name one archive (.tar.gz, .tgz, .tar) or one .avro or .avro.gz file; folders (prefixes) are not listed".into(),
            ));
        };
        let object = remote::RemoteObject::open(&url.to_string_lossy()).map_err(|e| inaccessible(e.to_string()))?;
        let object = object.ok_or_else(|| inaccessible("no such object".into()))?;
        self.plan.bytes += object.size();
        self.plan.inputs.push(input);
        Ok(())
    }
}

fn is_archive(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")
}

fn classify(path: &Path) -> Option<Input> {
    if is_archive(path) {
        Some(Input::Archive(path.to_path_buf()))
    } else if path.extension().is_some_and(|e| e == "avro") || path.to_string_lossy().ends_with(".avro.gz") {
        // `.avro.gz`: a gzip'd alert file, as Rubin's alert archive stores them.
        Some(Input::File(path.to_path_buf()))
    } else {
        None
    }
}

/// What is neither a folder nor a regular file, and so is never opened.
fn special(file_type: FileType) -> Option<Skip> {
    if file_type.is_fifo() {
        Some(Skip::Fifo)
    } else if file_type.is_socket() {
        Some(Skip::Socket)
    } else if file_type.is_char_device() || file_type.is_block_device() {
        Some(Skip::Device)
    } else {
        None
    }
}

/// (device, inode): what makes two paths the same file or folder.
type FileId = (u64, u64);

fn file_id(meta: &Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// The state of one discovery: the plan so far, and every file and folder already reached.
#[derive(Default)]
struct Walk {
    plan: Plan,
    files: HashMap<FileId, PathBuf>,
    folders: HashMap<FileId, PathBuf>,
    /// The folders from the given path down to the one being listed.
    open: Vec<FileId>,
    /// The output store's folder and the hidden files beside it (its lock), when they exist: skipped.
    output: Vec<FileId>,
}

/// The folder of the store `output` and its hidden files beside it (`.NAME.lock`, …).
fn output_ids(output: &Path) -> Vec<FileId> {
    let store = crate::store::resolve(output).unwrap_or_else(|_| output.to_path_buf());
    let mut ids: Vec<FileId> = std::fs::metadata(&store).ok().filter(Metadata::is_dir).map(|m| file_id(&m)).into_iter().collect();
    let (Some(parent), Some(name)) = (store.parent(), store.file_name()) else { return ids };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else { return ids };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            ids.extend(entry.metadata().ok().map(|m| file_id(&m)));
        }
    }
    ids
}

impl Walk {
    /// List `path` as not read; the walk goes on.
    fn ignore(&mut self, path: PathBuf, reason: Skip) -> Result<(), InputError> {
        self.plan.ignored.push(Ignored { path, reason });
        Ok(())
    }

    /// One entry of a folder: what it is, without opening it (links are followed by `metadata`).
    fn visit(&mut self, path: PathBuf) -> Result<(), InputError> {
        let inaccessible = |path: &Path, source| InputError::Inaccessible { path: path.to_path_buf(), source };
        let own = std::fs::symlink_metadata(&path).map_err(|source| inaccessible(&path, source))?;
        if !own.file_type().is_symlink() {
            return self.add(path, &own, false);
        }
        match std::fs::metadata(&path) {
            Ok(target) => self.add(path, &target, false),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => self.ignore(path, Skip::SymlinkLoop),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.ignore(path, Skip::BrokenLink),
            Err(source) => Err(inaccessible(&path, source)),
        }
    }

    /// A path whose type is known. A file the user named is read whatever its name; one found in
    /// a folder only when its name says it is an alert file or an archive.
    fn add(&mut self, path: PathBuf, meta: &Metadata, given: bool) -> Result<(), InputError> {
        if meta.is_dir() {
            return self.folder(path, meta);
        }
        if let Some(reason) = special(meta.file_type()) {
            return self.ignore(path, reason);
        }
        if !given && self.output.contains(&file_id(meta)) {
            return Ok(());
        }
        let input = match classify(&path) {
            Some(input) => input,
            None if given => Input::File(path.clone()),
            None => return self.ignore(path, Skip::NotAlert),
        };
        if let Some(first) = self.files.get(&file_id(meta)) {
            let reason = Skip::SameFile(first.clone());
            return self.ignore(path, reason);
        }
        self.files.insert(file_id(meta), path);
        self.plan.inputs.push(input);
        self.plan.bytes += meta.len();
        Ok(())
    }

    /// Walk a folder in sorted order, unless it is already open (a loop) or already walked.
    fn folder(&mut self, path: PathBuf, meta: &Metadata) -> Result<(), InputError> {
        let id = file_id(meta);
        if self.output.contains(&id) {
            return Ok(());
        }
        if self.open.contains(&id) {
            return self.ignore(path, Skip::SymlinkLoop);
        }
        if let Some(first) = self.folders.get(&id) {
            let reason = Skip::SameFolder(first.clone());
            return self.ignore(path, reason);
        }
        self.folders.insert(id, path.clone());
        let unlistable = |source| InputError::Unlistable { path: path.clone(), source };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(unlistable)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(unlistable)?;
        entries.sort();
        self.open.push(id);
        for entry in entries {
            self.visit(entry)?;
        }
        self.open.pop();
        Ok(())
    }
}

/// The first bytes (at most `limit`) of the first alert file of the plan: a loose file's own,
/// or an archive's first `.avro`/`.avro.gz` member's. None when the first input is on object
/// storage or cannot be read as a regular file (the build then reports it as it reads it).
#[must_use]
pub fn first_head(plan: &Plan, limit: usize) -> Option<Vec<u8>> {
    let input = plan.inputs.first()?;
    let path = input.path();
    if crate::store::object::is_url(&path.to_string_lossy()) {
        return None;
    }
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = Vec::new();
    match input {
        Input::File(_) => {
            file.take(limit as u64).read_to_end(&mut head).ok()?;
        }
        Input::Archive(_) => {
            let mut buffered = std::io::BufReader::new(file);
            let gzip = std::io::BufRead::fill_buf(&mut buffered).ok()?.starts_with(&[0x1f, 0x8b]);
            let stream: Box<dyn Read> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
            let mut archive = tar::Archive::new(stream);
            let member = archive.entries().ok()?.filter_map(Result::ok).find(|member| {
                member.path().is_ok_and(|p| {
                    let name = p.to_string_lossy();
                    name.ends_with(".avro") || name.ends_with(".avro.gz")
                })
            })?;
            member.take(limit as u64).read_to_end(&mut head).ok()?;
        }
    }
    Some(head)
}

/// Read a loose alert file, refusing anything but a regular file: the path is checked at
/// discovery, but may have been replaced since (by a FIFO, which would block a plain open, or
/// a folder). `O_NONBLOCK` makes opening a FIFO return at once; the type is then checked on
/// the open file itself, so nothing can change between the check and the read.
///
/// # Errors
/// The file cannot be opened or read, or is no longer a regular file.
pub fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder".to_string()
        } else {
            special(meta.file_type()).map_or("not a regular file".into(), |s| s.kind().to_string())
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no longer a regular file ({what})")));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Panic on the reader thread when `ZTF2ZARR_FAULT=reader-panic` (after the first input has
/// been handed over): lets the tests check that a reader that fails fails the build. Only with
/// the `fault-injection` feature (the tests' build); in any other it is nothing.
fn reader_fault_point() {
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("ZTF2ZARR_FAULT").is_some_and(|v| v == "reader-panic") {
        panic!("fault point reader-panic");
    }
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
        /// `ArchiveChecksum` or `ArchiveCorrupt`.
        kind: RejectKind,
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
            Payload::File(path) => read_regular_file(path).map(Into::into).map_err(|e| format!("cannot read file: {e}")),
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
            reader_fault_point();
        }
    });
    (receiver, handle)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn read_file(input: usize, path: &Path) -> Item {
    let text = path.to_string_lossy();
    if crate::store::object::is_url(&text) {
        // On the reader thread: an alert file is small, and object reads gain nothing from the pool.
        let payload = match remote::RemoteObject::open(&text) {
            Ok(Some(object)) => match object.read_all() {
                Ok(bytes) => Payload::Bytes(bytes),
                Err(e) => Payload::Unreadable(e.to_string()),
            },
            Ok(None) => Payload::Unreadable("no such object".into()),
            Err(e) => Payload::Unreadable(e.to_string()),
        };
        return Item { input, name: display(path), payload, consumed: 0 };
    }
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
        let plan = discover(&[dir.path().to_path_buf()], &StoreTarget::Local("/no/such/out.zarr".into())).unwrap();
        let names: Vec<_> = plan.inputs.iter().map(|i| i.path().strip_prefix(dir.path()).unwrap().to_path_buf()).collect();
        assert_eq!(names, [PathBuf::from("1.avro"), "b/2.avro".into(), "night.tar.gz".into()]);
        assert!(matches!(plan.inputs[2], Input::Archive(_)));
        assert_eq!(plan.ignored.len(), 1);
    }

    #[test]
    fn a_path_that_is_no_longer_a_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.avro");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
        let err = read_regular_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("no longer a regular file (FIFO)"), "{err}");
        let err = read_regular_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("(a folder)"), "{err}");
        std::fs::write(dir.path().join("a.avro"), b"bytes").unwrap();
        assert_eq!(read_regular_file(&dir.path().join("a.avro")).unwrap(), b"bytes");
    }

    #[test]
    fn missing_path_names_the_path() {
        let err = discover(&[PathBuf::from("/no/such/night.tar.gz")], &StoreTarget::Local("/no/such/out.zarr".into())).unwrap_err();
        assert!(err.to_string().contains("/no/such/night.tar.gz"), "{err}");
    }
}
