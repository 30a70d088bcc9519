//! `ztf2zarr generate`: checks the options, writes synthetic alerts (loose files or one nightly
//! archive) with `synth`, and says on stderr what it wrote.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

use super::ExitStatus;
use crate::cli::{GenerateArgs, GenerateHistory, GenerateSchema};
use crate::synth::{self, AlertSchema, HistoryDepth, SynthConfig};

/// Run `ztf2zarr generate`.
///
/// # Errors
/// A `--tarball` that is not a plain `NAME.tar.gz` file name, candids that overflow, or any
/// failure to create the folder or write a file (the error names the path).
pub fn run(args: &GenerateArgs) -> anyhow::Result<ExitStatus> {
    let cfg = config(args);
    cfg.validate()?;
    let started = Instant::now();
    let written = match &args.tarball {
        Some(name) => write_archive(&args.output, name, &cfg)?,
        None => write_loose_files(&args.output, &cfg)?,
    };
    if let Some(name) = &args.labels {
        let path = args.output.join(name);
        std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
        std::fs::write(&path, synth::labels_csv(&cfg)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    crate::errln!(
        "generate: wrote {written} (schema {}, {} histories, seed {}, {}) in {:.1} s",
        cfg.schema.as_str(),
        cfg.history.as_str(),
        cfg.seed,
        candid_range(&cfg),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitStatus::Success)
}

/// What `args` ask the generator for.
fn config(args: &GenerateArgs) -> SynthConfig {
    let schema = match args.schema {
        GenerateSchema::V3_3 => AlertSchema::V3_3,
        GenerateSchema::V4_02 => AlertSchema::V4_02,
    };
    let history = match args.history {
        GenerateHistory::Short => HistoryDepth::Short,
        GenerateHistory::Measured => HistoryDepth::Measured,
    };
    SynthConfig { count: args.count, seed: args.seed, first_candid: args.first_candid, schema, history }
}

/// "candids FIRST..=LAST" for the summary line ("no candids" when nothing was asked for).
fn candid_range(cfg: &SynthConfig) -> String {
    match cfg.count.checked_sub(1) {
        Some(last) => format!("candids {}..={}", cfg.first_candid, cfg.candid(last)),
        None => "no candids".to_string(),
    }
}

/// Writes `DIR/<candid>.avro` files; returns what was written, for the summary line.
fn write_loose_files(dir: &Path, cfg: &SynthConfig) -> anyhow::Result<String> {
    let paths = synth::write_files(dir, cfg).with_context(|| format!("writing alerts into {}", dir.display()))?;
    Ok(format!("{} alert files into {}", paths.len(), dir.display()))
}

/// Writes the nightly archive `DIR/NAME`; returns what was written, for the summary line.
fn write_archive(dir: &Path, name: &str, cfg: &SynthConfig) -> anyhow::Result<String> {
    check_archive_name(name)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    synth::write_tarball(&path, cfg).with_context(|| format!("writing the archive {}", path.display()))?;
    Ok(format!("{} alerts into {}", cfg.count, path.display()))
}

/// The archive goes directly into DIR and its members into a folder named after it, so the name
/// must be a bare `NAME.tar.gz`.
fn check_archive_name(name: &str) -> anyhow::Result<()> {
    let stem = name.strip_suffix(".tar.gz").unwrap_or_default();
    if stem.is_empty() || name.contains(['/', '\\']) {
        bail!("--tarball wants a file name like ztf_public_20250101.tar.gz, not {name:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_must_be_bare_tar_gz_names() {
        assert!(check_archive_name("ztf_public_20250101.tar.gz").is_ok());
        assert!(check_archive_name("night.tgz").is_err());
        assert!(check_archive_name(".tar.gz").is_err());
        assert!(check_archive_name("sub/night.tar.gz").is_err());
        assert!(check_archive_name("night").is_err());
    }
}
