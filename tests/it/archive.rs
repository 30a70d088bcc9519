//! Archives as they arrive damaged or odd: a failed gzip checksum, a cut file, a corrupt member
//! in a multi-member stream, members that are not alerts, sizes no alert has, a plain `.tar`,
//! the progress line on a terminal, and the summary's alert rate. Every archive is made here,
//! from synthetic alerts, byte by byte.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;
use ztf2zarr::synth::{synth_alert, SynthConfig};

use crate::util::ztf2zarr;

const FIRST: i64 = 1_100_000_000_015_000_000;

fn alert(index: usize) -> Vec<u8> {
    synth_alert(&SynthConfig { count: 100, seed: 1, first_candid: FIRST, ..SynthConfig::default() }, index)
}

/// A tar header block with a raw size field, type flag and link name; checksum set.
fn header(name: &str, size_field: &[u8; 12], kind: u8, link: &str) -> [u8; 512] {
    let mut block = [0u8; 512];
    block[..name.len()].copy_from_slice(name.as_bytes());
    block[100..108].copy_from_slice(b"0000644\0");
    block[124..136].copy_from_slice(size_field);
    block[136..148].copy_from_slice(b"00000000000\0");
    block[156] = kind;
    block[157..157 + link.len()].copy_from_slice(link.as_bytes());
    block[257..265].copy_from_slice(b"ustar\x0000");
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

fn octal_size(size: u64) -> [u8; 12] {
    let mut field = [0u8; 12];
    field[..11].copy_from_slice(format!("{size:011o}").as_bytes());
    field
}

/// One tar member: header, data, padding to 512 bytes.
fn member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = header(name, &octal_size(data.len() as u64), b'0', "").to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

fn link(name: &str, kind: u8, target: &str) -> Vec<u8> {
    header(name, &octal_size(0), kind, target).to_vec()
}

/// Alert members `night/<candid>.avro` for alerts `indices`.
fn alert_members(indices: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    indices.map(|i| member(&format!("night/{}.avro", FIRST + i as i64), &alert(i))).collect()
}

const END: [u8; 1024] = [0; 1024];

fn tar(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out = members.concat();
    out.extend_from_slice(&END);
    out
}

fn gzip(bytes: &[u8], level: Compression) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), level);
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

struct Build {
    status: Option<i32>,
    summary: String,
    rejects: Vec<Value>,
    rows: usize,
    candids: Vec<i64>,
}

impl Build {
    fn rejects_of(&self, kind: &str) -> Vec<&Value> {
        self.rejects.iter().filter(|r| r["kind"] == kind).collect()
    }

    /// Records a reject line stands for (1 when the field is absent).
    fn records(reject: &Value) -> u64 {
        reject.get("records").map_or(1, |r| r.as_u64().unwrap())
    }
}

fn build(dir: &Path, inputs: &[&Path], extra: &[&str]) -> Build {
    let store = dir.join("store.zarr");
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".into(), store.display().to_string(), "--no-progress".into()]);
    args.extend(extra.iter().map(|s| (*s).to_string()));
    let output = ztf2zarr(&args);
    let summary = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let rejects = crate::util::rejects_text(&store).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (rows, candids) = match StoreReader::open(&store, &TABLES) {
        Ok(reader) => {
            let layout = tables::catalog();
            let candids = reader.catalog_rows().unwrap().iter().map(|r| layout.read_i64(r, 0).unwrap()).collect();
            (reader.rows(), candids)
        }
        Err(_) => (0, Vec::new()),
    };
    Build { status: output.status.code(), summary, rejects, rows, candids }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn candid(i: usize) -> i64 {
    FIRST + i as i64
}

#[test]
fn a_failed_archive_checksum_stores_none_of_its_alerts_and_the_build_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    for i in 0..3 {
        std::fs::write(loose.join(format!("{i}.avro")), alert(i)).unwrap();
    }
    // Alerts 2..7: alert 2 repeats a loose file (a duplicate); stored deflate blocks, so a
    // flipped bit alters the alerts without breaking the deflate stream.
    let mut bad = gzip(&tar(&alert_members(2..7)), Compression::none());
    let flip = bad.len() - 8 - 1024 - 2000; // inside the last alert's bytes
    bad[flip] ^= 0x10;
    let bad = write(dir.path(), "bad.tar.gz", &bad);
    // A later archive repeats candid 4 of the bad one: it was rolled back, so it is new here.
    let good = write(dir.path(), "good.tar.gz", &gzip(&tar(&alert_members(4..5)), Compression::default()));
    let b = build(dir.path(), &[&loose, &bad, &good], &["--chunk-rows", "2"]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    let failed = b.rejects_of("archive-checksum");
    assert_eq!(failed.len(), 1, "{:?}", b.rejects);
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(failed[0]["source"].as_str().unwrap().ends_with("bad.tar.gz"), "{reason}");
    assert!(reason.contains("CRC-32") && reason.contains("not stored"), "{reason}");
    // 5 alerts: 4 would have been written, 1 skipped as a duplicate; all 5 are rejected instead
    // (an alert the flip broke may also be rejected by the decoder: together they are 5).
    let rejected: u64 = b.rejects.iter().map(Build::records).sum();
    assert_eq!(rejected, 5, "{:?}", b.rejects);
    assert!(b.summary.contains("duplicates  0"), "{}", b.summary);
    assert_eq!(b.rows, 4);
    assert_eq!(b.candids, [candid(0), candid(1), candid(2), candid(4)]);
    let verify = ztf2zarr(["verify", dir.path().join("store.zarr").to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn a_bad_trailer_alone_rejects_every_alert_of_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = gzip(&tar(&alert_members(0..4)), Compression::default());
    let crc = bytes.len() - 8;
    bytes[crc] ^= 1;
    let archive = write(dir.path(), "night.tar.gz", &bytes);
    let first = write(dir.path(), "first.avro", &alert(10));
    let b = build(dir.path(), &[&first, &archive], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    let failed = b.rejects_of("archive-checksum");
    assert_eq!(failed.len(), 1, "{:?}", b.rejects);
    assert_eq!(Build::records(failed[0]), 4);
    assert!(failed[0]["reason"].as_str().unwrap().contains("gzip member 1"), "{:?}", failed[0]);
    assert_eq!((b.rows, b.rejects.len()), (1, 1));
    assert!(b.summary.contains("rejected    4 (archive-checksum 4)"), "{}", b.summary);
}

#[test]
fn strict_stops_at_a_failed_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = gzip(&tar(&alert_members(0..2)), Compression::default());
    let crc = bytes.len() - 8;
    bytes[crc] ^= 1;
    let archive = write(dir.path(), "night.tar.gz", &bytes);
    let b = build(dir.path(), &[&archive], &["--strict"]);
    assert_eq!(b.status, Some(2), "{}", b.summary);
    assert!(b.summary.contains("--strict") && b.summary.contains("CRC-32"), "{}", b.summary);
    assert!(!dir.path().join("store.zarr").exists());
}

#[test]
fn a_truncated_archive_keeps_the_members_before_the_break_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let members = alert_members(0..4);
    let whole = gzip(&tar(&members), Compression::none());
    // Cut inside the third member's data (stored blocks: compressed offsets follow the tar's).
    let cut = members[0].len() + members[1].len() + 3000;
    let archive = write(dir.path(), "cut.tar.gz", &whole[..cut]);
    let b = build(dir.path(), &[&archive], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    let truncated = b.rejects_of("archive-truncated");
    assert_eq!(truncated.len(), 1, "{:?}", b.rejects);
    let reason = truncated[0]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("compressed byte {cut}")), "{reason}");
    assert!(reason.contains("0 bytes of the file not read"), "{reason}");
    assert!(reason.contains(&format!("inside member night/{}.avro", candid(2))), "{reason}");
    assert!(reason.contains("the 2 alert members before the break are kept"), "{reason}");
    assert_eq!(Build::records(truncated[0]), 1, "the cut alert file is counted");
    assert_eq!(b.candids, [candid(0), candid(1)]);

    // Without its 8-byte trailer: every member is complete and kept, the missing trailer reported.
    let archive = write(dir.path(), "no-trailer.tar.gz", &whole[..whole.len() - 8]);
    let dir2 = tempfile::tempdir().unwrap();
    let b = build(dir2.path(), &[&archive], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    let truncated = b.rejects_of("archive-truncated");
    assert_eq!(truncated.len(), 1, "{:?}", b.rejects);
    let reason = truncated[0]["reason"].as_str().unwrap();
    assert!(reason.contains("trailer") && reason.contains(&format!("compressed byte {}", whole.len() - 8)), "{reason}");
    assert_eq!(Build::records(truncated[0]), 0);
    assert_eq!(b.rows, 4);
}

#[test]
fn reading_resumes_after_a_corrupt_member_of_a_multi_member_archive() {
    let dir = tempfile::tempdir().unwrap();
    let members = alert_members(0..3);
    let parts: Vec<Vec<u8>> = members.iter().map(|m| gzip(m, Compression::default())).collect();
    let mut bytes = Vec::new();
    let mut second = 0..0;
    for (i, part) in parts.iter().enumerate() {
        if i == 1 {
            second = bytes.len()..bytes.len() + part.len();
        }
        bytes.extend_from_slice(part);
    }
    bytes.extend_from_slice(&gzip(&END, Compression::default()));
    // Member 2's header destroyed: its bytes are skipped, reading resumes at member 3.
    let mut broken = bytes.clone();
    broken[second.start + 2] = 9; // compression method 9 does not exist
    let archive = write(dir.path(), "multi.tar.gz", &broken);
    let b = build(dir.path(), &[&archive], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    assert_eq!(b.candids, [candid(0), candid(2)], "{:?}", b.rejects);
    let corrupt = b.rejects_of("archive-corrupt");
    assert_eq!(corrupt.len(), 1, "{:?}", b.rejects);
    let reason = corrupt[0]["reason"].as_str().unwrap();
    assert!(reason.contains("gzip member 2 is corrupt") && reason.contains("not a gzip member header"), "{reason}");
    let skipped = format!("resumed at compressed byte {}, {} bytes skipped", second.end, second.len());
    assert!(reason.contains(&skipped), "{reason}");
    assert_eq!(b.rejects.len(), 1);

    // Garbage over the middle of member 2's deflate data: whether inflating fails there or only
    // the trailer's check does, its alert is one reject and member 3 is read.
    let mut garbled = bytes.clone();
    let middle = second.start + second.len() / 2;
    garbled[middle..middle + 64].fill(0xff);
    let dir2 = tempfile::tempdir().unwrap();
    let archive = write(dir2.path(), "multi.tar.gz", &garbled);
    let b = build(dir2.path(), &[&archive], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    assert_eq!(b.candids, [candid(0), candid(2)], "{:?}", b.rejects);
    let failed: Vec<_> = b.rejects.iter().filter(|r| r["source"].as_str().unwrap().ends_with("multi.tar.gz")).collect();
    assert_eq!(failed.len(), 1, "{:?}", b.rejects);
    assert!(["archive-corrupt", "archive-checksum"].contains(&failed[0]["kind"].as_str().unwrap()), "{:?}", failed[0]);
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("gzip member 2") && reason.contains(&format!("resumed at compressed byte {}", second.end)), "{reason}");
    assert_eq!(b.rejects.iter().map(Build::records).sum::<u64>(), 1, "{:?}", b.rejects);

    // With nothing to resynchronise on, the reject says how much of the file was not read.
    let mut tail = bytes[..second.end].to_vec();
    tail.extend_from_slice(b"not gzip at all");
    let dir3 = tempfile::tempdir().unwrap();
    let archive = write(dir3.path(), "tail.tar.gz", &tail);
    let b = build(dir3.path(), &[&archive], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    let corrupt = b.rejects_of("archive-corrupt");
    assert_eq!(corrupt.len(), 1, "{:?}", b.rejects);
    let reason = corrupt[0]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("the last 15 bytes (from compressed byte {})", second.end)), "{reason}");
    assert_eq!(b.candids, [candid(0), candid(1)]);
}

#[test]
fn members_that_are_not_alerts_are_listed_as_ignored_and_a_plain_tar_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let nested = gzip(&tar(&alert_members(5..6)), Compression::default());
    let mut members = vec![link("night/", b'5', "")];
    members.extend(alert_members(0..1));
    members.push(link("night/sym.avro", b'2', "night/x.avro"));
    members.push(link("night/hard.avro", b'1', &format!("night/{}.avro", candid(0))));
    members.push(member("night/inner.tar.gz", &nested));
    members.push(member("night/1.avro.gz", &gzip(&alert(1), Compression::default())));
    members.push(member("night/6.AVRO.GZ", &gzip(&alert(6), Compression::default())));
    members.push(member("night/2.AVRO", &alert(2)));
    members.push(member("night/notes.txt", b"hello"));
    members.extend(alert_members(3..4));
    let plain = tar(&members);
    for (name, bytes) in [("night.tar.gz", gzip(&plain, Compression::default())), ("night.tar", plain.clone())] {
        let dir = tempfile::tempdir_in(dir.path()).unwrap();
        let archive = write(dir.path(), name, &bytes);
        let b = build(dir.path(), &[&archive], &[]);
        assert_eq!(b.status, Some(0), "{name}: {}", b.summary);
        assert_eq!(b.candids, [candid(0), candid(1), candid(3)], "{name}: a gzip'd alert is read: {}", b.summary);
        assert!(b.summary.contains("ignored     7 archive members"), "{name}: {}", b.summary);
        for words in ["night/: a folder entry", "sym.avro: a symbolic link", "hard.avro: a hard link", "inner.tar.gz: a nested archive"] {
            assert!(b.summary.contains(words), "{name}: {words}: {}", b.summary);
        }
        for words in
            ["6.AVRO.GZ: the extension is not lower-case", "2.AVRO: the extension is not lower-case", "notes.txt: not an .avro file"]
        {
            assert!(b.summary.contains(words), "{name}: {words}: {}", b.summary);
        }
        assert!(b.summary.contains("rejected    0"), "{name}: {}", b.summary);
    }
}

#[test]
fn a_member_declaring_2_to_the_62_or_8_gib_is_rejected_without_reserving_memory() {
    let mut base256 = [0u8; 12];
    base256[0] = 0x80;
    base256[4] = 0x40; // 2^62 in GNU base-256
    let eight_gib = *b"100000000000";
    for (label, size) in [("2^62", base256), ("8 GiB", eight_gib)] {
        let dir = tempfile::tempdir().unwrap();
        let mut members = alert_members(0..1);
        let mut huge = header("night/huge.avro", &size, b'0', "").to_vec();
        huge.extend_from_slice(&alert(1));
        members.push(huge);
        let archive = write(dir.path(), "huge.tar.gz", &gzip(&tar(&members), Compression::default()));
        let b = build(dir.path(), &[&archive], &[]);
        assert_eq!(b.status, Some(0), "{label}: {}", b.summary);
        let too_large = b.rejects_of("member-too-large");
        assert_eq!(too_large.len(), 1, "{label}: {:?}", b.rejects);
        assert!(too_large[0]["source"].as_str().unwrap().ends_with("huge.tar.gz:night/huge.avro"), "{label}");
        assert!(too_large[0]["reason"].as_str().unwrap().contains("64 MiB"), "{label}: {:?}", too_large[0]);
        // Its declared bytes run past the end of the file: that is reported too, losing no alert.
        let truncated = b.rejects_of("archive-truncated");
        assert_eq!(truncated.len(), 1, "{label}: {:?}", b.rejects);
        assert_eq!(Build::records(truncated[0]), 0);
        assert!(truncated[0]["reason"].as_str().unwrap().contains("inside member night/huge.avro"), "{label}");
        assert_eq!(b.candids, [candid(0)], "{label}");
        assert!(b.summary.contains("rejected    1 (member-too-large 1, archive-truncated 0)"), "{label}: {}", b.summary);
    }
}

#[test]
fn a_member_over_the_limit_is_skipped_and_the_members_after_it_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = alert_members(0..1);
    members.push(member("night/big.avro", &vec![0u8; (64 << 20) + 1]));
    members.extend(alert_members(1..2));
    let archive = write(dir.path(), "big.tar.gz", &gzip(&tar(&members), Compression::fast()));
    let b = build(dir.path(), &[&archive], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    assert_eq!(b.candids, [candid(0), candid(1)]);
    assert_eq!(b.rejects.len(), 1, "{:?}", b.rejects);
    assert_eq!(b.rejects[0]["kind"], "member-too-large");
    assert!(b.rejects[0]["reason"].as_str().unwrap().contains(&format!("declares {} bytes", (64 << 20) + 1)));
}

/// An Avro container holding alerts `indices` as one block each, under alert 0's header.
fn container(indices: std::ops::Range<usize>) -> Vec<u8> {
    let first = alert(0);
    let sync = &first[first.len() - 16..];
    let header_end = first.windows(16).position(|w| w == sync).unwrap() + 16;
    let mut out = first[..header_end].to_vec();
    for i in indices {
        let one = alert(i);
        let own_sync = &one[one.len() - 16..];
        let start = one.windows(16).position(|w| w == own_sync).unwrap() + 16;
        let block = &one[start..one.len() - 16]; // count, size, data of its one block
        out.extend_from_slice(block);
        out.extend_from_slice(sync);
    }
    out
}

#[test]
fn the_summary_rate_counts_alerts_not_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "twelve.avro", &container(0..12));
    let b = build(dir.path(), &[&file], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    assert_eq!(b.rows, 12, "{}", b.summary);
    assert!(b.summary.contains("read        1 alert file ("), "{}", b.summary);
    let time = b.summary.lines().find(|l| l.trim_start().starts_with("time")).unwrap();
    let words: Vec<&str> = time.split_whitespace().collect();
    let seconds: f64 = words[1].parse().unwrap();
    let rate: f64 = words[3].parse().unwrap();
    // The rate is printed from the unrounded time: it lies between 12 alerts over the time
    // rounded up and over the time rounded down (a files rate would be 12 times smaller).
    let (low, high) = (12.0 / (seconds + 0.005) - 0.5, 12.0 / (seconds - 0.005).max(1e-9) + 0.5);
    assert!(rate >= low && rate <= high, "{time}: expected about {:.0} alerts/s", 12.0 / seconds);
}

/// Run `ztf2zarr ARGS` with stderr on a pseudo-terminal of 80 columns; returns what it drew.
fn on_terminal(args: &[&str]) -> (Option<i32>, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two new descriptors into the two ints; the size is only read.
    let opened = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(opened, 0, "openpty failed");
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::from(master);
    let drawn = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out); // ends with EIO once the child has exited
        String::from_utf8_lossy(&out).into_owned()
    });
    let status = child.wait().unwrap();
    (status.code(), drawn.join().unwrap())
}

/// Escape sequences removed, split at carriage returns and newlines: the frames drawn.
fn frames(drawn: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = drawn.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            text.push(c);
        }
    }
    text.split(['\r', '\n']).map(|l| l.trim_end().to_string()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn an_archive_build_on_a_terminal_shows_bytes_eta_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let archive = write(dir.path(), "night.tar.gz", &gzip(&tar(&alert_members(0..24)), Compression::default()));
    let size = std::fs::metadata(&archive).unwrap().len();
    let store = dir.path().join("store.zarr");
    let (status, drawn) = on_terminal(&["build", archive.to_str().unwrap(), "-o", store.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{drawn}");
    let frames = frames(&drawn);
    let total = format!("/{:.1} MB", size as f64 / 1e6);
    let last = frames.iter().rev().find(|f| f.contains(&total)).unwrap_or_else(|| panic!("no progress line in {frames:?}"));
    assert!(last.contains("eta") && last.contains("MB/s"), "{last}");
    assert!(last.contains("24 alerts written"), "{last}");
    assert!(last.contains(&format!("{:.1}{total}", size as f64 / 1e6)), "all bytes read: {last}");
    assert!(frames.iter().all(|f| f.chars().count() <= 80), "{frames:?}");
    let decimals = last
        .split_whitespace()
        .filter_map(|w| w.split_once('.'))
        .all(|(_, after)| after.chars().take_while(char::is_ascii_digit).count() <= 1);
    assert!(decimals, "at most one decimal: {last}");
    println!("progress line: {last}");
}

#[test]
fn a_failed_checksum_in_an_append_leaves_the_stored_rows_and_a_sound_store() {
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    for i in 0..3 {
        std::fs::write(loose.join(format!("{i}.avro")), alert(i)).unwrap();
    }
    let first = build(dir.path(), &[&loose], &["--chunk-rows", "2"]);
    assert_eq!((first.status, first.rows), (Some(0), 3), "{}", first.summary);
    let mut bad = gzip(&tar(&alert_members(3..8)), Compression::default());
    let crc = bad.len() - 8;
    bad[crc] ^= 0x80;
    let bad = write(dir.path(), "bad.tar.gz", &bad);
    let good = write(dir.path(), "good.tar.gz", &gzip(&tar(&alert_members(7..9)), Compression::default()));
    let b = build(dir.path(), &[&bad, &good], &[]);
    assert_eq!(b.status, Some(0), "{}", b.summary);
    assert!(b.summary.contains("written     2 alerts (store rows 3 → 5)"), "{}", b.summary);
    let failed = b.rejects_of("archive-checksum");
    assert_eq!(failed.len(), 1, "{:?}", b.rejects);
    assert_eq!(Build::records(failed[0]), 5);
    assert_eq!(b.candids, [candid(0), candid(1), candid(2), candid(7), candid(8)]);
    let verify = ztf2zarr(["verify", dir.path().join("store.zarr").to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
}

/// An archive of three gzip members of four alerts each (and the tar end), the second one's
/// deflate data garbled when `garble`; without the second member when `skip`.
fn four_alert_members(garble: bool, skip: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (index, alerts) in [0..4, 4..8, 8..12].into_iter().enumerate() {
        let mut part = gzip(&alert_members(alerts).concat(), Compression::default());
        if index == 1 && skip {
            continue;
        }
        if index == 1 && garble {
            let middle = part.len() / 2;
            part[middle..middle + 64].fill(0xff);
        }
        bytes.extend_from_slice(&part);
    }
    bytes.extend_from_slice(&gzip(&END, Compression::default()));
    bytes
}

#[test]
fn light_curve_batches_across_a_failed_member_keep_exactly_the_verified_alerts_epochs() {
    // The light curves are looked up and added a batch at a time; a batch of some bytes spans
    // the verified point before the garbled member, and rolling back to it must keep exactly
    // the epochs of the alerts before it: the same tables as the archive without that member.
    let dir = tempfile::tempdir().unwrap();
    let garbled = write(dir.path(), "garbled.tar.gz", &four_alert_members(true, false));
    let reference = dir.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    let without = write(&reference, "without.tar.gz", &four_alert_members(false, true));
    let expected = build(&reference, &[&without], &[]);
    assert_eq!(expected.candids.len(), 8, "{}", expected.summary);
    let tables = |store: &Path| -> Vec<(PathBuf, Vec<u8>)> { crate::util::tree_bytes(&store.join("lightcurves")) };
    let expected_tables = tables(&reference.join("store.zarr"));
    assert!(expected_tables.iter().any(|(path, _)| path.starts_with("epochs/jd")), "the store has light curves");
    for batch_bytes in ["1", "20000", "200000"] {
        let store = dir.path().join(format!("batch-{batch_bytes}.zarr"));
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
            .args(["build", garbled.to_str().unwrap(), "-o", store.to_str().unwrap(), "--no-progress"])
            .env("SOURCE_DATE_EPOCH", "1767225600")
            .env("ZTF2ZARR_LIGHTCURVE_BATCH_BYTES", batch_bytes)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let rejects = crate::util::rejects_text(&store);
        assert!(rejects.contains("gzip member 2"), "batches of {batch_bytes} bytes: {rejects}");
        assert!(tables(&store) == expected_tables, "batches of {batch_bytes} bytes: the light-curve tables differ");
        crate::util::assert_sound(&store);
    }
}
