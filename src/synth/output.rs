//! Putting synthetic alerts on disk: one `<candid>.avro` file per alert in a folder, or all of
//! them streamed into one gzip'd tar like a ZTF nightly archive, with fixed member headers so
//! the archive's bytes depend on the configuration only.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use rayon::prelude::*;

use super::{synth_alert, SynthConfig, SynthError};

/// Alerts made in parallel per step before being appended in order: bounds memory (an alert is
/// ~75 kB) while keeping every core busy. Small in tests, so that a few dozen alerts span batches.
const BATCH: usize = if cfg!(test) { 8 } else { 256 };
/// Modification time of every archive member: 2025-01-01T00:00:00Z, the night of the alerts.
const MEMBER_MTIME: u64 = 1_735_689_600;
/// Permissions of every archive member: rw-r--r--.
const MEMBER_MODE: u32 = 0o644;

/// Writes alert i of `cfg` to `dir/<candid>.avro` for every i, creating `dir` if needed.
/// Returns the paths in index order. Alerts are made and written in parallel, one at a time per
/// thread, so memory stays small whatever `cfg.count` is.
///
/// # Errors
/// [`SynthError::BadCandids`] for an invalid `cfg`; [`SynthError::Io`] naming the folder or file
/// that could not be created or written.
pub fn write_files(dir: &Path, cfg: &SynthConfig) -> Result<Vec<PathBuf>, SynthError> {
    cfg.validate()?;
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    (0..cfg.count)
        .into_par_iter()
        .map(|index| {
            let path = dir.join(format!("{}.avro", cfg.candid(index)));
            fs::write(&path, synth_alert(cfg, index)).map_err(|source| io_error(&path, source))?;
            Ok(path)
        })
        .collect()
}

/// Writes all alerts of `cfg` into the gzip'd tar `path`, as members `<stem>/<candid>.avro` in
/// index order, where `<stem>` is the file name without `.tar.gz` (or `.tgz`).
///
/// Streamed: alerts are made in batches of a few hundred (in parallel, while the previous batch
/// is compressed) and never all held in memory. Members have mode 0644, uid/gid 0 and a fixed
/// mtime; the gzip header has mtime 0: equal configurations give byte-identical archives.
///
/// # Errors
/// [`SynthError::BadCandids`] for an invalid `cfg`, [`SynthError::NoArchiveName`] if `path` has
/// no file name, [`SynthError::Io`] naming `path` if it cannot be created or written.
pub fn write_tarball(path: &Path, cfg: &SynthConfig) -> Result<(), SynthError> {
    cfg.validate()?;
    let folder = archive_folder(path)?;
    let file = File::create(path).map_err(|source| io_error(path, source))?;
    let gzip = GzBuilder::new()
        .mtime(0)
        // The members are mostly gzip'd cutouts already: harder compression gains little.
        .write(BufWriter::new(file), Compression::fast());
    let mut archive = tar::Builder::new(gzip);
    append_alerts(&mut archive, &folder, cfg).map_err(|source| io_error(path, source))?;
    finish_archive(archive).map_err(|source| io_error(path, source))
}

type Archive = tar::Builder<GzEncoder<BufWriter<File>>>;

/// Appends every alert, making batch k + 1 while batch k is being compressed.
fn append_alerts(archive: &mut Archive, folder: &str, cfg: &SynthConfig) -> io::Result<()> {
    let mut start = 0;
    let mut pending = make_batch(cfg, batch_range(start, cfg.count));
    while !pending.is_empty() {
        let next = batch_range(start + pending.len(), cfg.count);
        let (made, appended) = rayon::join(|| make_batch(cfg, next), || append_batch(archive, folder, cfg, start, &pending));
        appended?;
        start += pending.len();
        pending = made;
    }
    Ok(())
}

fn batch_range(start: usize, count: usize) -> Range<usize> {
    start..(start + BATCH).min(count)
}

fn make_batch(cfg: &SynthConfig, indices: Range<usize>) -> Vec<Vec<u8>> {
    indices.into_par_iter().map(|index| synth_alert(cfg, index)).collect()
}

fn append_batch(archive: &mut Archive, folder: &str, cfg: &SynthConfig, first_index: usize, alerts: &[Vec<u8>]) -> io::Result<()> {
    for (offset, alert) in alerts.iter().enumerate() {
        let member = format!("{folder}/{}.avro", cfg.candid(first_index + offset));
        archive.append_data(&mut member_header(alert.len()), member, alert.as_slice())?;
    }
    Ok(())
}

/// Ends the tar (two zero blocks), the gzip stream (trailer) and flushes the file.
fn finish_archive(archive: Archive) -> io::Result<()> {
    let gzip = archive.into_inner()?;
    let mut buffered = gzip.finish()?;
    buffered.flush()?;
    buffered.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(())
}

/// A regular-file tar header with fixed owner, mode and time (path and checksum are set by
/// `append_data`).
fn member_header(size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size as u64);
    header.set_mode(MEMBER_MODE);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MEMBER_MTIME);
    header
}

/// The archive's top folder: its file name without `.tar.gz` / `.tgz`.
fn archive_folder(path: &Path) -> Result<String, SynthError> {
    let name = path.file_name().ok_or_else(|| SynthError::NoArchiveName { path: path.to_path_buf() })?.to_string_lossy();
    let stem = name.strip_suffix(".tar.gz").or_else(|| name.strip_suffix(".tgz")).unwrap_or(&name);
    Ok(stem.to_string())
}

fn io_error(path: &Path, source: io::Error) -> SynthError {
    SynthError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn cfg(count: usize) -> SynthConfig {
        SynthConfig { count, seed: 21, first_candid: 1_100_000_000_015_000_000, ..SynthConfig::default() }
    }

    #[test]
    fn files_are_named_by_candid_and_hold_the_alerts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("new/sub");
        let cfg = cfg(12);
        let paths = write_files(&out, &cfg).expect("written");
        assert_eq!(paths.len(), 12);
        for (index, path) in paths.iter().enumerate() {
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            assert_eq!(name, format!("{}.avro", cfg.candid(index)));
            assert!(fs::read(path).expect("readable") == synth_alert(&cfg, index));
        }
    }

    #[test]
    fn archive_is_deterministic_ordered_and_well_formed() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Several batches, the last one partial.
        let cfg = cfg(2 * BATCH + 3);
        let name = "ztf_public_20250101.tar.gz";
        let first = dir.path().join(name);
        fs::create_dir(dir.path().join("again")).expect("second folder");
        let second = dir.path().join("again").join(name);
        write_tarball(&first, &cfg).expect("written");
        write_tarball(&second, &cfg).expect("written");
        let bytes = fs::read(&first).expect("readable");
        assert!(bytes == fs::read(&second).expect("readable"), "same bytes");
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "gzip mtime 0");

        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut seen = 0;
        for (index, entry) in archive.entries().expect("tar").enumerate() {
            let mut entry = entry.expect("entry");
            let header = entry.header();
            assert_eq!(header.mode().expect("mode"), 0o644);
            assert_eq!(header.uid().expect("uid"), 0);
            assert_eq!(header.mtime().expect("mtime"), MEMBER_MTIME);
            let member = entry.path().expect("path").to_string_lossy().into_owned();
            assert_eq!(member, format!("ztf_public_20250101/{}.avro", cfg.candid(index)));
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("content");
            if index % 4 == 0 || index == cfg.count - 1 {
                assert!(content == synth_alert(&cfg, index), "member {index}");
            }
            seen += 1;
        }
        assert_eq!(seen, cfg.count);
    }

    #[test]
    fn empty_archive_is_valid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("empty.tar.gz");
        write_tarball(&path, &cfg(0)).expect("written");
        let bytes = fs::read(&path).expect("readable");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        assert_eq!(archive.entries().expect("tar").count(), 0);
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing/night.tar.gz");
        let error = write_tarball(&path, &cfg(1)).expect_err("no such folder");
        assert!(error.to_string().contains("missing/night.tar.gz"), "{error}");
    }

    #[test]
    fn archive_folder_drops_the_extension() {
        let folder = |p: &str| archive_folder(Path::new(p)).expect("named");
        assert_eq!(folder("/x/ztf_public_20250101.tar.gz"), "ztf_public_20250101");
        assert_eq!(folder("night.tgz"), "night");
        assert_eq!(folder("plain"), "plain");
        assert!(archive_folder(Path::new("/")).is_err());
    }
}
