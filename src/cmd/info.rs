//! `ztf2zarr info`: what a store holds — rows, size, nights covered, schema versions, labels,
//! stamp flags and the builds that made it — for people, or as JSON for programs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::ExitStatus;
use crate::calendar::jd_to_date;
use crate::catalog::Layout;
use crate::cli::InfoArgs;
use crate::decode::cutout::STAMP_FLAGS;
use crate::store::{StoreReader, REJECTS};

/// Run `info`.
///
/// # Errors
/// The store cannot be read.
pub fn run(args: &InfoArgs) -> anyhow::Result<ExitStatus> {
    let reader = StoreReader::open(&args.store)?;
    let info = gather(&args.store, &reader)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", render(&info));
    }
    Ok(ExitStatus::Success)
}

fn gather(root: &Path, reader: &StoreReader) -> anyhow::Result<Value> {
    let layout = Layout::builtin();
    let rows = reader.catalog_rows()?;
    let column = |name: &str| layout.index_of(name);
    let mut nights: BTreeMap<String, usize> = BTreeMap::new();
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut labels: BTreeMap<String, usize> = BTreeMap::new();
    let mut flags: BTreeMap<&str, usize> = STAMP_FLAGS.iter().map(|(_, name)| (*name, 0)).collect();
    let jd = column("jd").map(|c| layout.columns()[c].offset);
    for row in &rows {
        if let Some(offset) = jd {
            let value = f64::from_le_bytes(row[offset..offset + 8].try_into()?);
            if value.is_finite() {
                *nights.entry(jd_to_date(value)).or_default() += 1;
            }
        }
        if let Some(c) = column("schemavsn") {
            let version = layout.read_str(row, c).filter(|v| !v.is_empty()).unwrap_or_else(|| "(none: before 3.x)".into());
            *versions.entry(version).or_default() += 1;
        }
        if let Some(c) = column("label") {
            *labels.entry(layout.read_str(row, c).unwrap_or_default()).or_default() += 1;
        }
        let bits = column("stamp_flags").and_then(|c| layout.read_i64(row, c)).unwrap_or(0);
        for (bit, name) in STAMP_FLAGS {
            if bits & i64::from(bit) != 0 {
                *flags.entry(name).or_default() += 1;
            }
        }
    }
    let settings = reader.settings();
    let rejects = std::fs::read_to_string(root.join(REJECTS)).map(|t| t.lines().count()).unwrap_or(0);
    Ok(json!({
        "store": root.display().to_string(),
        "rows": reader.rows(),
        "bytes_on_disk": disk_usage(root),
        "stamp_size": settings.stamp_size,
        "nan_policy": if settings.keep_nan { "keep" } else { "zero" },
        "chunk_rows": settings.chunk_rows,
        "chunks": reader.chunks(),
        "nights": nights,
        "schema_versions": versions,
        "labels": labels,
        "stamp_flags": flags,
        "rejected_inputs": rejects,
        "splits": reader.root_attrs().get("splits").map(|_| split_sizes(root)),
        "runs": reader.runs()?,
    }))
}

/// Rows in each split index array, from their `.zarray` shapes.
fn split_sizes(root: &Path) -> Value {
    let sizes: serde_json::Map<String, Value> = crate::split::SPLIT_NAMES
        .iter()
        .filter_map(|name| {
            let zarray = crate::store::read_json(&root.join(crate::store::SPLITS).join(name).join(".zarray")).ok()?;
            Some(((*name).to_string(), zarray["shape"][0].clone()))
        })
        .collect();
    Value::Object(sizes)
}

fn disk_usage(root: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(root) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_usage(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn counts(map: &Value) -> String {
    let Some(map) = map.as_object().filter(|m| !m.is_empty()) else { return "-".into() };
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

#[allow(clippy::cast_precision_loss)] // sizes for display
fn render(info: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "store        {}", info["store"].as_str().unwrap_or_default());
    let _ = writeln!(out, "rows         {}", info["rows"]);
    let _ = writeln!(out, "size         {:.1} MB on disk", info["bytes_on_disk"].as_u64().unwrap_or(0) as f64 / 1e6);
    let _ =
        writeln!(out, "stamps       3 x {0} x {0}, NaN policy {1}", info["stamp_size"], info["nan_policy"].as_str().unwrap_or_default());
    let _ = writeln!(out, "chunks       {} of {} rows", info["chunks"], info["chunk_rows"]);
    let nights = info["nights"].as_object().cloned().unwrap_or_default();
    let span = match (nights.keys().next(), nights.keys().next_back()) {
        (Some(first), Some(last)) => format!("{} nights, {first} … {last} (UTC dates of jd)", nights.len()),
        _ => "-".into(),
    };
    let _ = writeln!(out, "nights       {span}");
    let _ = writeln!(out, "schemas      {}", counts(&info["schema_versions"]));
    let _ = writeln!(out, "labels       {}", counts(&info["labels"]));
    let _ = writeln!(out, "stamp flags  {}", counts(&info["stamp_flags"]));
    let _ = writeln!(out, "splits       {}", counts(&info["splits"]));
    let _ = writeln!(out, "rejected     {} inputs (rejects.jsonl)", info["rejected_inputs"]);
    let runs = info["runs"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "builds       {}", runs.len());
    for run in &runs {
        let _ = writeln!(
            out,
            "  {}  rows {} → {}  {}",
            run["started"].as_str().unwrap_or_default(),
            run["rows_before"],
            run["rows_after"],
            describe_run(run)
        );
    }
    out
}

/// One line about what a build, relabel or split did.
fn describe_run(run: &Value) -> String {
    if let Some(csv) = run["relabel"].as_str() {
        return format!("relabeled from {csv} ({} alerts labeled)", run["labeled"]);
    }
    if run["split"].is_object() {
        let split = &run["split"];
        return format!("split with seed {}: train {}, val {}, test {}", split["seed"], split["train"], split["val"], split["test"]);
    }
    let inputs: Vec<String> = run["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{} ({} written, {} duplicate, {} rejected)",
                i["name"].as_str().unwrap_or_default(),
                i["written"],
                i["duplicates"],
                i["rejected"]
            )
        })
        .collect();
    inputs.join("; ")
}
