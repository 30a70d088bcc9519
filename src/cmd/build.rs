//! `ztf2zarr build`: check the options and inputs, run the pipeline (new store or append),
//! print the summary.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::ExitStatus;
use crate::cli::BuildArgs;
use crate::ingest::pipeline::{self, BuildConfig};
use crate::ingest::report::{self, Progress};
use crate::ingest::source;
use crate::store::{chunk_fits, Requested, Wait, DEFAULT_STAMP_SIZE, MAX_CHUNK_BYTES};
use crate::survey::ztf::Ztf;
use crate::survey::Survey;

/// Run `build`.
///
/// # Errors
/// Invalid options, a missing input path, or a store that cannot be read or written.
pub fn run(args: &BuildArgs) -> anyhow::Result<ExitStatus> {
    validate(args)?;
    let plan = source::discover(&args.inputs, &args.output)?;
    if plan.inputs.is_empty() {
        bail!("no .avro files or .tar.gz archives found in {}", list(&args.inputs));
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| yield_to_the_reader())
        .build()
        .context("cannot start worker threads")?;
    let progress = Progress::new(!args.no_progress && std::io::stderr().is_terminal());
    let config = BuildConfig {
        survey: &Ztf,
        given: args.inputs.clone(),
        plan: Arc::new(plan),
        output: args.output.clone(),
        requested: Requested {
            wait: Wait::from_option(args.wait.wait),
            stamp_size: args.stamp_size,
            keep_nan: args.keep_nan,
            keep_masked: args.keep_masked,
            chunk_rows: args.chunk_rows,
            zstd_level: args.zstd_level,
            no_lightcurves: args.no_lightcurves,
            single_writer: args.wait.single_writer,
        },
        strict: args.strict,
        labels: super::label::load(&args.labels)?.map(Arc::new),
    };
    let result = pipeline::build(&config, &pool, &progress);
    progress.finish();
    let stats = result?;
    crate::out!("{}", report::build_summary(&stats, &args.output, threads, &config.plan.ignored));
    if let Some(labels) = &config.labels {
        let counts = if stats.committed { None } else { Some(super::label::Counts::default()) };
        crate::out!("{}", super::label::summary_of_new_rows(&args.output, stats.rows_before, labels, counts)?);
    }
    Ok(ExitStatus::Success)
}

fn validate(args: &BuildArgs) -> anyhow::Result<()> {
    let frame = Ztf.tables().stamps.frame;
    if let Some(size) = args.stamp_size.filter(|s| *s == 0 || *s > frame || s % 2 == 0) {
        bail!("--stamp-size {size} is not an odd number from 1 to {frame}");
    }
    if args.chunk_rows == Some(0) {
        bail!("--chunk-rows must be at least 1");
    }
    if let Some(rows) = args.chunk_rows {
        let side = args.stamp_size.unwrap_or(DEFAULT_STAMP_SIZE);
        if !chunk_fits(rows, side, Ztf.tables().catalog.itemsize()) {
            bail!("--chunk-rows {rows} makes stamp chunks larger than {} MiB; choose fewer rows", MAX_CHUNK_BYTES >> 20);
        }
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if let Some(level) = args.zstd_level.filter(|l| !(1..=22).contains(l)) {
        bail!("--zstd-level {level} is outside 1..=22");
    }
    Ok(())
}

fn list(paths: &[std::path::PathBuf]) -> String {
    paths.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
}

/// Lower the calling worker thread's scheduling priority a little (nice +5). Inflating a nightly
/// archive is one serial stream on the reader thread while the workers decode; when the cores are
/// all busy, the reader must not wait for a core, or every worker soon waits for it.
fn yield_to_the_reader() {
    // SAFETY: gettid and setpriority on the calling thread only; failure just keeps the priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // a thread id is a positive pid_t
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5);
    }
}
