//! The decode floor of a Rubin build: how fast can a folder of Rubin alerts be read and the
//! pixels of their cutouts' images turned into float32, doing nothing else? Rubin cutouts are
//! plain FITS (no gzip), so there is no inflate to bound a build by, as there is for ZTF
//! (`inflate_floor`): the floor is reading the files and converting every `PRIMARY` and `UNCERT`
//! pixel from big-endian to native float32, which any reader of the stamps and their variance
//! must do. A build does that plus the Avro datum walk, the catalog row, the window crop, the
//! light curves, compression and writing; `scripts/bench_rubin` compares the two.
//!
//! ```text
//! cargo run --release --example rubin_floor -- FOLDER [--threads N] [--json OUT.json]
//! ```
//!
//! Each file under FOLDER (recursively, `*.avro`) is read whole; its cutouts are found by their
//! FITS signature (`SIMPLE  =` at the start of a 2880-byte header) and parsed with
//! `ztf2zarr::formats::fits::hdus`; the `PRIMARY` and `UNCERT` images are converted and summed
//! (so the work cannot be optimised away). An alert has at most three cutouts (a null one has
//! none to read, as in a build); more is not a Rubin alert, and the run fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use rayon::prelude::*;
use serde_json::json;
use ztf2zarr::formats::fits;

#[derive(Parser)]
struct Args {
    /// Folder of Rubin alert files (`*.avro`, searched recursively).
    folder: PathBuf,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the result as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut files = Vec::new();
    collect(&args.folder, &mut files)?;
    files.sort();
    ensure!(!files.is_empty(), "no .avro files under {}", args.folder.display());
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let started = Instant::now();
    let per_file: Vec<(usize, usize, f64)> = pool.install(|| files.par_iter().map(|path| decode(path)).collect::<Result<_>>())?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes: usize = per_file.iter().map(|(b, _, _)| b).sum();
    let pixels: usize = per_file.iter().map(|(_, p, _)| p).sum();
    let checksum: f64 = per_file.iter().map(|(_, _, s)| s).sum();
    #[allow(clippy::cast_precision_loss)] // counts for display
    let rate = files.len() as f64 / seconds;
    let result = json!({
        "alerts": files.len(), "seconds": seconds, "alerts_per_s": rate, "bytes": bytes,
        "pixels": pixels, "threads": threads, "checksum": checksum,
    });
    println!("rubin_floor: {} alerts, {pixels} pixels, {:.3} s, {rate:.0} alerts/s on {threads} threads", files.len(), seconds);
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_vec_pretty(&result)?)?;
    }
    Ok(())
}

fn collect(folder: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(folder).with_context(|| format!("cannot list {}", folder.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "avro") {
            files.push(path);
        }
    }
    Ok(())
}

/// One alert file: its bytes, the pixels converted and their sum.
fn decode(path: &Path) -> Result<(usize, usize, f64)> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut pixels, mut sum, mut cutouts) = (0usize, 0f64, 0usize);
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], b"SIMPLE  =") {
        let start = at + found;
        let mut end = start;
        for (index, hdu) in fits::hdus(&bytes[start..]).enumerate() {
            // The cutout's bytes are followed by the rest of the Avro datum, which is no HDU.
            let Ok(hdu) = hdu else {
                ensure!(index > 0, "{}: the cutout at byte {start} is not FITS", path.display());
                break;
            };
            if let Some(image) = hdu.image() {
                let bytes_per_pixel = usize::try_from(hdu.bitpix.unsigned_abs() / 8).unwrap_or(4);
                end = end.max(start + hdu.data_offset + image.width * image.height * bytes_per_pixel);
                if hdu.name == "PRIMARY" || hdu.name == "UNCERT" {
                    let values = image.pixels();
                    pixels += values.len();
                    sum += values.iter().map(|v| f64::from(*v)).filter(|v| v.is_finite()).sum::<f64>();
                }
            }
        }
        cutouts += 1;
        at = end.max(start + 1);
    }
    if cutouts > 3 {
        bail!("{}: {cutouts} cutouts, expected at most 3", path.display());
    }
    Ok((bytes.len(), pixels, sum))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
