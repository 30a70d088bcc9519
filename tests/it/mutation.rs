//! Thousands of deterministic mutants of the real alerts (bit flips, byte overwrites, insertions,
//! truncations, length and count fields set huge, schema text altered), built in batches by the
//! real binary under a memory limit and a wall-clock limit, and decoded again in-process.
//!
//! What is asserted, per batch of mutant files (plus two intact synthetic controls):
//! - no crash: the build exits with 0, 1 or 2, never by a signal or a panic (101);
//! - no hang: it ends within [`WALL_LIMIT`]; no runaway memory: it runs under [`MEMORY_LIMIT`] of
//!   address space (`RLIMIT_AS`);
//! - every alert accounted for. The *inputs* of a file are the records its decode accounts for:
//!   the alerts it yields plus the records its rejects stand for (`Decoder::decode_file`, run
//!   here in-process on the same bytes), at least 1 and at most one per byte of the file. Then,
//!   for every file, its rows in the store and its `rejects.jsonl` records equal what the decode
//!   gave (rows ≤ alerts, the difference being duplicates); and for the batch, the summary's
//!   written = store rows, rejected = Σ `rejects.jsonl` records, and inputs = written +
//!   duplicates + rejected. The controls are written.
//!
//! A failing batch is bisected down to the one mutant that fails, which is named (original file,
//! mutation) and saved under `target/mutants/` to reproduce it.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ztf2zarr::formats::avro::Header;
use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;
use ztf2zarr::survey::ztf::{Decoder, StampSpec};
use ztf2zarr::synth::{synth_alert, SynthConfig};

use crate::hostile::{long, records, summary_count};
use crate::util::real_alerts;

/// Mutants in the whole test.
const MUTANTS: usize = 4_000;
/// Mutants per build (one child process each).
const BATCH: usize = 250;
/// A build of one batch (~17 MB of alerts) takes about a second; this is a hang.
const WALL_LIMIT: Duration = Duration::from_secs(60);
/// Address space a build may reserve: a few threads' stacks and arenas plus one batch in flight.
const MEMORY_LIMIT: u64 = 2 << 30;

/// A small deterministic generator (SplitMix64): the same mutants on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// One mutated input, and how it was made.
struct Mutant {
    name: String,
    how: String,
    bytes: Vec<u8>,
}

/// Varints of values that break limits: 2^62, i64::MAX, i64::MIN, 2^31, -1, an 11-byte run.
fn huge_varint(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => long(1 << 62),
        1 => long(i64::MAX),
        2 => long(i64::MIN),
        3 => long(1 << 31),
        4 => long(-1),
        _ => vec![0xff; 11],
    }
}

/// Where the block count of the first block is: just after the header's sync marker.
fn first_block_at(file: &[u8]) -> Option<usize> {
    let header = Header::parse(file).ok()?;
    let schema_end = header.schema_json.as_ptr() as usize - file.as_ptr() as usize + header.schema_json.len();
    let sync = file.get(file.len().checked_sub(16)?..)?;
    file[schema_end..].windows(16).position(|w| w == sync).map(|at| schema_end + at + 16)
}

/// The file with its schema JSON replaced by `edit(json)`, the length in front of it rewritten.
fn with_schema(file: &[u8], edit: impl FnOnce(&str) -> String) -> Option<Vec<u8>> {
    let header = Header::parse(file).ok()?;
    let json = std::str::from_utf8(header.schema_json).ok()?;
    let start = header.schema_json.as_ptr() as usize - file.as_ptr() as usize;
    let length = long(i64::try_from(json.len()).ok()?);
    let edited = edit(json);
    let mut out = file[..start - length.len()].to_vec();
    out.extend(long(i64::try_from(edited.len()).ok()?));
    out.extend(edited.as_bytes());
    out.extend(&file[start + json.len()..]);
    Some(out)
}

/// Schema text edits: types swapped, a field renamed, a character deleted or replaced.
fn edit_schema(json: &str, rng: &mut Rng) -> (String, String) {
    const SWAPS: [(&str, &str); 9] = [
        ("\"double\"", "\"float\""),
        ("\"long\"", "\"int\""),
        ("\"null\"", "\"int\""),
        ("\"string\"", "\"bytes\""),
        ("\"float\"", "\"null\""),
        ("\"array\"", "\"map\""),
        ("\"candid\"", "\"candix\""),
        ("\"record\"", "\"enum\""),
        ("\"bytes\"", "\"boolean\""),
    ];
    match rng.below(3) {
        0 => {
            let (from, to) = SWAPS[rng.below(SWAPS.len())];
            let hits: Vec<usize> = json.match_indices(from).map(|(at, _)| at).collect();
            if hits.is_empty() {
                return (json.to_string(), format!("schema: no {from} to swap"));
            }
            let at = hits[rng.below(hits.len())];
            (format!("{}{to}{}", &json[..at], &json[at + from.len()..]), format!("schema: {from} → {to} at {at}"))
        }
        1 => {
            let at = rng.below(json.len());
            let mut edited = json.as_bytes().to_vec();
            edited.remove(at);
            (String::from_utf8_lossy(&edited).into_owned(), format!("schema: character {at} deleted"))
        }
        _ => {
            let at = rng.below(json.len());
            let with = [b'{', b']', b'"', b'0', b','][rng.below(5)];
            let mut edited = json.as_bytes().to_vec();
            edited[at] = with;
            (String::from_utf8_lossy(&edited).into_owned(), format!("schema: character {at} → {}", with as char))
        }
    }
}

/// One mutant of `original`.
fn mutate(original: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    let mut bytes = original.to_vec();
    let len = bytes.len();
    let how = match rng.below(9) {
        0 => {
            let flips = 1 + rng.below(4);
            let mut at = Vec::new();
            for _ in 0..flips {
                let bit = rng.below(len * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
                at.push(bit);
            }
            format!("bits {at:?} flipped")
        }
        1 => {
            let at = rng.below(len);
            let run = (1 + rng.below(8)).min(len - at);
            let value = [0x00, 0xff, rng.byte()][rng.below(3)];
            bytes[at..at + run].fill(value);
            format!("{run} bytes at {at} set to {value:#04x}")
        }
        2 => {
            let at = rng.below(len);
            bytes.truncate(at);
            format!("truncated to {at} bytes")
        }
        3 => {
            // The first block's count or size set huge (overwriting, so the rest stays aligned).
            let Some(block) = first_block_at(&bytes) else { return ("unparsable header: kept as is".into(), bytes) };
            let varint = huge_varint(rng);
            let at = (block + rng.below(2)).min(len - 1);
            let end = (at + varint.len()).min(len);
            bytes[at..end].copy_from_slice(&varint[..end - at]);
            format!("block header byte {at} overwritten with varint {varint:02x?}")
        }
        4 => {
            // A huge varint anywhere: most positions in a datum are lengths, counts or union indexes.
            let at = rng.below(len);
            let varint = huge_varint(rng);
            let end = (at + varint.len()).min(len);
            bytes[at..end].copy_from_slice(&varint[..end - at]);
            format!("varint {varint:02x?} written at {at}")
        }
        5 => {
            let at = rng.below(len);
            let varint = huge_varint(rng);
            bytes.splice(at..at, varint.iter().copied());
            format!("varint {varint:02x?} inserted at {at}")
        }
        6 => {
            let at = rng.below(len);
            let cut = (1 + rng.below(64)).min(len - at);
            bytes.drain(at..at + cut);
            format!("{cut} bytes at {at} deleted")
        }
        7 => {
            let mut how = String::new();
            let edited = with_schema(&bytes, |json| {
                let (edited, what) = edit_schema(json, rng);
                how = what;
                edited
            });
            match edited {
                Some(edited) => bytes = edited,
                None => how = "unparsable header: kept as is".into(),
            }
            how
        }
        _ => {
            // The tail of the file repeated: a block (or part of one) after the last sync marker.
            let from = rng.below(len);
            let tail = bytes[from..].to_vec();
            bytes.extend(tail);
            format!("bytes {from}.. appended again")
        }
    };
    (how, bytes)
}

/// Every real alert file, sorted by path.
fn originals() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![real_alerts()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "avro") {
                let name = path.strip_prefix(real_alerts()).unwrap().display().to_string();
                files.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    assert!(files.len() > 500, "expected the 548 real alerts, found {}", files.len());
    files
}

/// All mutants: batch after batch, each mutating `BATCH` different originals (so duplicates
/// arise only where the real alerts or a mutation repeat a candid).
fn mutants() -> Vec<Mutant> {
    let originals = originals();
    let mut rng = Rng(0x5eed_2026_1202);
    (0..MUTANTS)
        .map(|i| {
            let (source, original) = &originals[i % originals.len()];
            let (how, bytes) = mutate(original, &mut rng);
            Mutant { name: format!("m{i:05}.avro"), how: format!("{source}: {how}"), bytes }
        })
        .collect()
}

/// Two intact alerts that must be written whatever the mutants beside them do.
fn controls() -> Vec<(String, Vec<u8>, i64)> {
    let cfg = SynthConfig { count: 2, seed: 7, first_candid: 3_000_000_000_000_000_000, ..SynthConfig::default() };
    (0..2).map(|i| (format!("control{i}.avro"), synth_alert(&cfg, i), cfg.candid(i))).collect()
}

/// Run `ztf2zarr build` on `inputs` under the limits; returns (exit code, summary).
fn limited_build(inputs: &Path, store: &Path) -> Result<(i32, String), String> {
    let out = inputs.with_extension("out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ztf2zarr"));
    command
        .args(["build".as_ref(), inputs.as_os_str(), "-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()])
        .args(["--threads", "2"])
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(inputs.with_extension("err")).unwrap())
        .stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: MEMORY_LIMIT, rlim_max: MEMORY_LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &raw const limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start ztf2zarr: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no result after {WALL_LIMIT:?}: killed (a hang)"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(inputs.with_extension("err")).unwrap_or_default();
    let stderr: String = stderr.lines().filter(|l| !l.starts_with(' ')).take(4).collect::<Vec<_>>().join("\n");
    let summary = std::fs::read_to_string(&out).unwrap();
    match status.code() {
        Some(code @ 0..=2) => Ok((code, summary)),
        Some(code) => Err(format!("exit status {code} (a panic?): {stderr}")),
        None => Err(format!("killed by a signal ({status}): {stderr}")),
    }
}

/// What the decoder, in-process, accounts for each file: (alerts, records rejected).
fn decoded(files: &[(&str, &[u8])]) -> HashMap<String, (usize, usize)> {
    let decoder = Decoder::new(StampSpec { size: 21, keep_nan: false, keep_masked: false });
    files
        .iter()
        .map(|(name, bytes)| {
            let results = decoder.decode_file(name, bytes);
            let alerts = results.iter().filter(|r| r.is_ok()).count();
            let rejected: usize = results.iter().filter_map(|r| r.as_ref().err()).map(|r| r.records).sum();
            ((*name).to_string(), (alerts, rejected))
        })
        .collect()
}

/// Build `mutants` (with the controls) in `dir` and check everything the module comment promises.
fn check_batch(dir: &Path, mutants: &[&Mutant]) -> Result<Tally, String> {
    let inputs = dir.join("in");
    let store = dir.join("store.zarr");
    let _ = std::fs::remove_dir_all(&inputs);
    let _ = std::fs::remove_dir_all(&store);
    std::fs::create_dir_all(&inputs).unwrap();
    let controls = controls();
    let mut files: Vec<(&str, &[u8])> = mutants.iter().map(|m| (m.name.as_str(), m.bytes.as_slice())).collect();
    files.extend(controls.iter().map(|(name, bytes, _)| (name.as_str(), bytes.as_slice())));
    for (name, bytes) in &files {
        std::fs::write(inputs.join(name), bytes).unwrap();
    }
    let (code, summary) = limited_build(&inputs, &store)?;
    if code != 0 {
        return Err(format!("exit status {code}: {summary}"));
    }
    let expected = decoded(&files);
    for (name, (alerts, rejected)) in &expected {
        let bytes = files.iter().find(|(n, _)| n == name).unwrap().1;
        let inputs = alerts + rejected;
        if inputs == 0 || inputs > bytes.len().max(1) {
            return Err(format!("{name}: the decoder accounts for {inputs} records in {} bytes", bytes.len()));
        }
    }
    let (written, duplicates, rejected) =
        (summary_count(&summary, "written"), summary_count(&summary, "duplicates"), summary_count(&summary, "rejected"));
    let inputs: usize = expected.values().map(|(a, r)| a + r).sum();
    if inputs != written + duplicates + rejected {
        return Err(format!("inputs {inputs} ≠ written {written} + duplicates {duplicates} + rejected {rejected}\n{summary}"));
    }

    let mut rows_of: HashMap<String, usize> = HashMap::new();
    let mut stored = Vec::new();
    if written > 0 {
        let reader = StoreReader::open(&store, &TABLES).map_err(|e| format!("store does not open: {e}"))?;
        let layout = tables::catalog();
        let (source, candid) = (layout.index_of("source").unwrap(), layout.index_of("candid").unwrap());
        for row in reader.catalog_rows().map_err(|e| format!("catalog does not read: {e}"))? {
            let path = layout.read_str(&row, source).unwrap();
            *rows_of.entry(path.rsplit('/').next().unwrap().to_string()).or_default() += 1;
            stored.push(layout.read_i64(&row, candid).unwrap());
        }
        if reader.rows() != written {
            return Err(format!("the store has {} rows, the summary says {written} written", reader.rows()));
        }
    }
    let mut rejects_of: HashMap<String, usize> = HashMap::new();
    for line in crate::util::rejects_text(&store).lines() {
        let reject: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("rejects.jsonl: {e}: {line}"))?;
        let path = reject["source"].as_str().unwrap_or_default();
        *rejects_of.entry(path.rsplit('/').next().unwrap().to_string()).or_default() += records(&reject);
    }
    if rejects_of.values().sum::<usize>() != rejected {
        return Err(format!("rejects.jsonl has {} records, the summary says {rejected}", rejects_of.values().sum::<usize>()));
    }
    for (name, (alerts, rejected)) in &expected {
        let (rows, rejects) = (rows_of.get(name).copied().unwrap_or(0), rejects_of.get(name).copied().unwrap_or(0));
        if rows > *alerts || rejects != *rejected {
            return Err(format!("{name}: stored {rows} rows and {rejects} rejects, decoded {alerts} alerts and {rejected} rejects"));
        }
    }
    for (name, _, candid) in &controls {
        if !stored.contains(candid) {
            return Err(format!("the intact {name} was not written"));
        }
    }
    Ok(Tally { written, rejected })
}

/// Totals over the batches, to show the mutants exercise both outcomes.
#[derive(Default)]
struct Tally {
    written: usize,
    rejected: usize,
}

/// The one mutant of a failing batch that fails on its own (halving the batch each time).
fn culprit<'m>(dir: &Path, mut batch: Vec<&'m Mutant>) -> (&'m Mutant, String) {
    loop {
        if batch.len() == 1 {
            let error = check_batch(dir, &batch).err().unwrap_or_else(|| "fails only together with others".into());
            return (batch[0], error);
        }
        let second = batch.split_off(batch.len() / 2);
        if check_batch(dir, &batch).is_ok() {
            batch = second;
        }
    }
}

fn save(mutant: &Mutant) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mutants");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&mutant.name);
    std::fs::write(&path, &mutant.bytes).unwrap();
    path
}

#[test]
fn thousands_of_mutated_alerts_build_within_limits_and_add_up() {
    let mutants = mutants();
    assert_eq!(mutants.len(), MUTANTS);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut total = Tally::default();
    for (number, batch) in mutants.chunks(BATCH).enumerate() {
        let batch: Vec<&Mutant> = batch.iter().collect();
        let batch_dir = dir.path().join(format!("batch{number}"));
        match check_batch(&batch_dir, &batch) {
            Ok(tally) => (total.written, total.rejected) = (total.written + tally.written, total.rejected + tally.rejected),
            Err(error) => {
                let (mutant, why) = culprit(&batch_dir, batch);
                let saved = save(mutant);
                failures.push(format!(
                    "batch {number} ({error})\n  → {} [{}]: {why}\n    saved as {}",
                    mutant.name,
                    mutant.how,
                    saved.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} failing batches:\n{}", failures.len(), failures.join("\n"));
    // Many mutants still decode (a flipped pixel is still an alert), many must not.
    let batches = MUTANTS.div_ceil(BATCH);
    let written_mutants = total.written - 2 * batches;
    assert!(written_mutants > MUTANTS / 10 && total.rejected > MUTANTS / 4, "written {written_mutants}, rejected {}", total.rejected);
}
