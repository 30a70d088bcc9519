//! The inflate-only floor of a build: how fast can the alerts of a folder be read, their three
//! cutouts found, and the cutouts' gzip data inflated, doing nothing else? A build does all of
//! that plus FITS parsing, cropping, the catalog row, compression and writing, so its rate is
//! bounded by this one; `scripts/bench` compares the two (see `docs/performance.md`).
//!
//! ```text
//! cargo run --release --example inflate_floor -- FOLDER [ARCHIVE.tar.gz ...] [--threads N] [--repeat R] [--json OUT.json]
//! ```
//!
//! For each folder (searched recursively for `*.avro`), on N threads (default: all cores), passes:
//! 1. read + locate: read every file, parse the Avro container and walk each alert with its
//!    writer schema (`ztf2zarr::formats::avro`) to the three cutouts' `stampData`; no inflate.
//!    Run first, so it also brings the files into the page cache.
//! 2. flate2 GzDecoder: the same, plus each cutout inflated by `flate2::bufread::GzDecoder`
//!    (zlib-rs backend, the crate's own), a new decoder per cutout; CRC-32 and ISIZE checked.
//! 3. flate2 Decompress: one raw inflater per thread, reset per cutout, inflating into a buffer
//!    sized from the gzip trailer's ISIZE; CRC-32 checked with `flate2::Crc`.
//! 4. libdeflater: the whole gzip member in one call into a buffer sized from ISIZE (libdeflate
//!    checks the CRC-32 and ISIZE itself).
//!
//! Each pass also reports the cores it kept busy: the process's CPU time (user + system, from
//! `getrusage`) over its wall time.
//!
//! Every alert must have exactly three cutouts and every inflated cutout must start with
//! `SIMPLE` (a FITS file), or the run fails. For each `.tar.gz`: the single-stream inflate time of
//! the whole archive (flate2 `MultiGzDecoder`, one thread, every member read to its trailer and
//! its CRC-32 checked, up to the end of the file, into a reused 1 MiB buffer), the ceiling for
//! building from that archive. Each pass runs `--repeat` times and the median time is reported;
//! `scripts/bench` runs it with `--repeat 1`, alternating with the builds it is compared with.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::ops::Add;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use rayon::prelude::*;
use serde_json::json;
use ztf2zarr::formats::avro::{Container, Cursor, Node, Schema};
use ztf2zarr::survey::ztf::CUTOUTS;

/// A cutout larger than this inflated is not a ZTF cutout.
const MAX_INFLATED: usize = 64 << 20;

/// Read, locate and inflate the cutouts of every alert, and nothing else.
#[derive(Debug, Parser)]
#[command(name = "inflate_floor")]
struct Args {
    /// Folders of .avro alert files (searched recursively) and .tar.gz archives.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,

    /// Worker threads for the per-alert passes (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Run each pass this many times and report the median time.
    #[arg(long, default_value_t = 1, value_name = "R")]
    repeat: usize,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Locate,
    Flate2Gz,
    Flate2Raw,
    Libdeflate,
}

impl Pass {
    const ALL: [Pass; 4] = [Pass::Locate, Pass::Flate2Gz, Pass::Flate2Raw, Pass::Libdeflate];

    fn key(self) -> &'static str {
        match self {
            Pass::Locate => "locate",
            Pass::Flate2Gz => "flate2_gzdecoder",
            Pass::Flate2Raw => "flate2_decompress",
            Pass::Libdeflate => "libdeflater",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Pass::Locate => "read + locate cutouts (no inflate)",
            Pass::Flate2Gz => "flate2 GzDecoder (zlib-rs)",
            Pass::Flate2Raw => "flate2 Decompress, reused (zlib-rs)",
            Pass::Libdeflate => "libdeflater (whole member)",
        }
    }
}

/// What one pass saw; added up over files.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    files: usize,
    alerts: usize,
    cutouts: usize,
    /// Bytes of the .avro files.
    input: usize,
    /// Bytes of the cutouts' gzip data.
    gz: usize,
    /// Bytes of the inflated cutouts (0 for the locate pass).
    inflated: usize,
}

impl Add for Tally {
    type Output = Tally;

    fn add(self, o: Tally) -> Tally {
        Tally {
            files: self.files + o.files,
            alerts: self.alerts + o.alerts,
            cutouts: self.cutouts + o.cutouts,
            input: self.input + o.input,
            gz: self.gz + o.gz,
            inflated: self.inflated + o.inflated,
        }
    }
}

/// One thread's reusable state.
struct Worker {
    schemas: HashMap<Vec<u8>, Schema>,
    raw: flate2::Decompress,
    libdeflate: libdeflater::Decompressor,
    out: Vec<u8>,
}

impl Worker {
    fn new() -> Self {
        Worker {
            schemas: HashMap::new(),
            raw: flate2::Decompress::new(false),
            libdeflate: libdeflater::Decompressor::new(),
            out: Vec::new(),
        }
    }

    fn file(&mut self, path: &Path, pass: Pass) -> Result<Tally> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.alerts(&bytes, pass).with_context(|| format!("in {}", path.display()))
    }

    fn alerts(&mut self, bytes: &[u8], pass: Pass) -> Result<Tally> {
        let container = Container::parse(bytes)?;
        if !self.schemas.contains_key(container.schema_json) {
            self.schemas.insert(container.schema_json.to_vec(), Schema::parse(container.schema_json)?);
        }
        let Worker { schemas, raw, libdeflate, out } = self;
        let schema = &schemas[container.schema_json];
        let mut tally = Tally { files: 1, input: bytes.len(), ..Tally::default() };
        for (index, block) in container.blocks.iter().enumerate() {
            let mut cursor = Cursor::new(&block.data);
            for _ in 0..block.count {
                let cutouts = locate_cutouts(schema, &mut cursor)?;
                ensure!(cutouts.len() == 3, "alert {} has {} cutouts, not 3", tally.alerts, cutouts.len());
                for gz in cutouts {
                    tally.gz += gz.len();
                    tally.inflated += match pass {
                        Pass::Locate => 0,
                        Pass::Flate2Gz => inflate_gzdecoder(gz, out)?,
                        Pass::Flate2Raw => inflate_reused(gz, raw, out)?,
                        Pass::Libdeflate => inflate_libdeflate(gz, libdeflate, out)?,
                    };
                    tally.cutouts += 1;
                }
                tally.alerts += 1;
            }
            ensure!(cursor.rest().is_empty(), "block {index} has {} bytes after its records", cursor.rest().len());
        }
        Ok(tally)
    }
}

/// Walks one alert with its writer schema, returning the `stampData` bytes of every non-null
/// cutout field (`cutoutScience`, `cutoutTemplate`, `cutoutDifference`).
fn locate_cutouts<'a>(schema: &Schema, cursor: &mut Cursor<'a>) -> Result<Vec<&'a [u8]>> {
    let Node::Record { fields, .. } = schema.node(schema.root) else { bail!("the writer schema's top level is not a record") };
    let mut found = Vec::with_capacity(3);
    for field in fields {
        if CUTOUTS.contains(&field.name.as_str()) {
            if let Some(gz) = stamp_data(schema, field.node, cursor).with_context(|| format!("field {}", field.name))? {
                found.push(gz);
            }
        } else {
            cursor.skip(schema, field.node)?;
        }
    }
    Ok(found)
}

fn stamp_data<'a>(schema: &Schema, node: usize, cursor: &mut Cursor<'a>) -> Result<Option<&'a [u8]>> {
    match schema.node(node) {
        Node::Null => Ok(None),
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            stamp_data(schema, branches[branch], cursor)
        }
        Node::Record { fields, .. } => {
            let mut data = None;
            for field in fields {
                if field.name == "stampData" && matches!(schema.node(field.node), Node::Bytes) {
                    data = Some(cursor.bytes()?);
                } else {
                    cursor.skip(schema, field.node)?;
                }
            }
            data.map(Some).ok_or_else(|| anyhow!("a cutout record without stampData"))
        }
        other => bail!("a cutout of unexpected type {other:?}"),
    }
}

/// The gzip trailer: (CRC-32, ISIZE), after checking the magic and method.
fn trailer(gz: &[u8]) -> Result<(u32, usize)> {
    ensure!(gz.len() >= 18 && gz[..3] == [0x1f, 0x8b, 8], "a cutout that is not gzip data");
    let tail = &gz[gz.len() - 8..];
    let crc = u32::from_le_bytes(tail[..4].try_into()?);
    let size = u32::from_le_bytes(tail[4..].try_into()?) as usize;
    ensure!(size <= MAX_INFLATED, "a cutout of {size} bytes inflated");
    Ok((crc, size))
}

/// The deflate data of a one-member gzip file: between the header (RFC 1952, with its optional
/// fields) and the 8-byte trailer.
fn deflate_body(gz: &[u8]) -> Result<&[u8]> {
    let flags = gz[3];
    let mut pos = 10;
    if flags & 0x04 != 0 {
        let xlen = gz.get(pos..pos + 2).ok_or_else(|| anyhow!("truncated gzip header"))?;
        pos += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [0x08, 0x10] {
        if flags & flag != 0 {
            let end = gz.get(pos..).and_then(|r| r.iter().position(|b| *b == 0)).ok_or_else(|| anyhow!("truncated gzip header"))?;
            pos += end + 1;
        }
    }
    if flags & 0x02 != 0 {
        pos += 2;
    }
    ensure!(pos + 8 <= gz.len(), "truncated gzip header");
    Ok(&gz[pos..gz.len() - 8])
}

fn check_fits(image: &[u8], size: usize) -> Result<usize> {
    ensure!(image.len() == size, "a cutout inflated to {} bytes, the trailer says {size}", image.len());
    ensure!(image.starts_with(b"SIMPLE"), "an inflated cutout that is not a FITS file");
    Ok(size)
}

fn inflate_gzdecoder(gz: &[u8], out: &mut Vec<u8>) -> Result<usize> {
    let (_, size) = trailer(gz)?;
    out.clear();
    out.reserve(size);
    flate2::bufread::GzDecoder::new(gz).read_to_end(out).context("gzip data that does not inflate")?;
    check_fits(out, size)
}

fn inflate_reused(gz: &[u8], raw: &mut flate2::Decompress, out: &mut Vec<u8>) -> Result<usize> {
    let (crc, size) = trailer(gz)?;
    let body = deflate_body(gz)?;
    raw.reset(false);
    out.clear();
    out.reserve_exact(size);
    let status = raw.decompress_vec(body, out, flate2::FlushDecompress::Finish).context("gzip data that does not inflate")?;
    ensure!(status == flate2::Status::StreamEnd, "a cutout's deflate stream does not end where ISIZE says ({status:?})");
    let mut check = flate2::Crc::new();
    check.update(out);
    ensure!(check.sum() == crc, "a cutout whose CRC-32 does not match");
    check_fits(out, size)
}

fn inflate_libdeflate(gz: &[u8], decompressor: &mut libdeflater::Decompressor, out: &mut Vec<u8>) -> Result<usize> {
    let (_, size) = trailer(gz)?;
    if out.len() < size {
        out.resize(size, 0);
    }
    let written = decompressor.gzip_decompress(gz, &mut out[..size]).map_err(|e| anyhow!("gzip data that does not inflate: {e}"))?;
    check_fits(&out[..written], size)
}

/// Every `*.avro` under `dir`, in sorted order.
fn avro_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            avro_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "avro") {
            files.push(path);
        }
    }
    Ok(())
}

/// User and system CPU seconds of this process so far (all its threads), from `getrusage`.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    let mid = seconds.len() / 2;
    if seconds.len() % 2 == 1 {
        seconds[mid]
    } else {
        (seconds[mid - 1] + seconds[mid]) / 2.0
    }
}

const MB: f64 = 1e6;

fn folder(dir: &Path, args: &Args, pool: &rayon::ThreadPool) -> Result<serde_json::Value> {
    let mut files = Vec::new();
    avro_files(dir, &mut files)?;
    ensure!(!files.is_empty(), "no .avro files under {}", dir.display());
    println!("{}: {} .avro files, {} threads, median of {}", dir.display(), files.len(), pool.current_num_threads(), args.repeat);
    println!(
        "  {:<38} {:>8} {:>10} {:>11} {:>10} {:>13} {:>6}",
        "pass", "seconds", "alerts/s", "input MB/s", "gzip MB/s", "inflated MB/s", "cores"
    );
    let mut passes = serde_json::Map::new();
    let mut first: Option<Tally> = None;
    let mut inflated = 0;
    for pass in Pass::ALL {
        let mut times = Vec::new();
        let mut busy = Vec::new();
        let mut tally = Tally::default();
        for _ in 0..args.repeat {
            let (started, cpu_before) = (Instant::now(), cpu_seconds());
            tally = pool.install(|| {
                files.par_iter().map_init(Worker::new, |worker, path| worker.file(path, pass)).try_reduce(Tally::default, |a, b| Ok(a + b))
            })?;
            let wall = started.elapsed().as_secs_f64();
            times.push(wall);
            busy.push((cpu_seconds() - cpu_before) / wall.max(1e-9));
        }
        let seconds = median(times).max(1e-9);
        let cores_busy = median(busy);
        if let Some(first) = first {
            ensure!(tally.alerts == first.alerts && tally.gz == first.gz, "pass {} saw other alerts than the first pass", pass.key());
        }
        ensure!(tally.cutouts == 3 * tally.alerts, "{} cutouts for {} alerts", tally.cutouts, tally.alerts);
        if pass != Pass::Locate {
            ensure!(inflated == 0 || inflated == tally.inflated, "pass {} inflated other bytes than the pass before", pass.key());
            inflated = tally.inflated;
        }
        let rate = tally.alerts as f64 / seconds;
        let inflated = if pass == Pass::Locate { "-".to_string() } else { format!("{:.1}", tally.inflated as f64 / MB / seconds) };
        println!(
            "  {:<38} {:>8.3} {:>10.0} {:>11.1} {:>10.1} {:>13} {:>6.2}",
            pass.label(),
            seconds,
            rate,
            tally.input as f64 / MB / seconds,
            tally.gz as f64 / MB / seconds,
            inflated,
            cores_busy
        );
        passes.insert(
            pass.key().into(),
            json!({"label": pass.label(), "seconds": seconds, "alerts_per_s": rate, "input_mb_per_s": tally.input as f64 / MB / seconds, "cores_busy": cores_busy}),
        );
        first.get_or_insert(tally);
    }
    let tally = first.unwrap_or_default();
    println!(
        "  {} alerts, {:.1} MB of .avro; cutouts {:.1} MB gzip → {:.1} MB inflated",
        tally.alerts,
        tally.input as f64 / MB,
        tally.gz as f64 / MB,
        inflated as f64 / MB
    );
    Ok(json!({
        "folder": dir.display().to_string(), "threads": pool.current_num_threads(), "files": tally.files, "alerts": tally.alerts,
        "input_bytes": tally.input, "gzip_bytes": tally.gz, "inflated_bytes": inflated, "passes": passes,
    }))
}

/// Counts the compressed bytes the inflater takes from the file.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Inflate the whole archive once: every gzip member to its trailer (flate2 checks each
/// member's CRC-32 and ISIZE), up to the end of the file, as a build that checks the archive's
/// checksums must. The output goes into one reused 1 MiB buffer, larger than any read the
/// build makes (one archive member at a time), so that the inflater is never called more often
/// than in the build: with `io::copy`'s 8 KiB buffer it is called every 8 KiB, which is no
/// ceiling for a build that reads whole members.
fn inflate_archive(path: &Path) -> Result<(u64, f64)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let length = file.metadata()?.len();
    let started = Instant::now();
    let mut gz = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, Counted { inner: file, bytes: 0 }));
    let mut buffer = vec![0u8; 1 << 20];
    let mut inflated = 0u64;
    loop {
        let n = gz.read(&mut buffer).with_context(|| format!("inflating {}", path.display()))?;
        if n == 0 {
            break;
        }
        inflated += n as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    let read = gz.into_inner().into_inner().bytes;
    ensure!(read == length, "{}: inflated {read} of its {length} bytes: the gzip stream ends before the file does", path.display());
    Ok((inflated, seconds))
}

fn archive(path: &Path, args: &Args) -> Result<serde_json::Value> {
    let compressed = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let mut times = Vec::new();
    let mut inflated = 0;
    for _ in 0..args.repeat {
        let (bytes, seconds) = inflate_archive(path)?;
        inflated = bytes;
        times.push(seconds);
    }
    let seconds = median(times).max(1e-9);
    let rate = compressed as f64 / MB / seconds;
    println!(
        "{}: single-stream inflate to the last trailer (flate2 MultiGzDecoder, CRC-32 checked): {:.1} MB → {:.1} MB in {seconds:.3} s, {rate:.1} MB/s compressed, {:.1} MB/s inflated",
        path.display(),
        compressed as f64 / MB,
        inflated as f64 / MB,
        inflated as f64 / MB / seconds
    );
    Ok(json!({
        "archive": path.display().to_string(), "compressed_bytes": compressed, "inflated_bytes": inflated, "seconds": seconds,
        "compressed_mb_per_s": rate, "inflated_mb_per_s": inflated as f64 / MB / seconds,
    }))
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.repeat >= 1, "--repeat must be at least 1");
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    ensure!(threads >= 1, "--threads must be at least 1");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let (mut folders, mut archives) = (Vec::new(), Vec::new());
    for input in &args.inputs {
        let name = input.to_string_lossy();
        if input.is_dir() {
            folders.push(folder(input, &args, &pool)?);
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            archives.push(archive(input, &args)?);
        } else {
            bail!("{name}: neither a folder nor a .tar.gz archive");
        }
    }
    if let Some(path) = &args.json {
        let report = json!({"threads": threads, "repeat": args.repeat, "folders": folders, "archives": archives});
        fs::write(path, serde_json::to_string_pretty(&report)? + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
