//! The light-curve key index: which epochs the store's light-curve tables hold, for finding
//! repeats without reading the tables. Each build that adds epochs writes its new keys, sorted
//! by jd, as **blocks** of at most [`BLOCK_RECORDS`] records (`.ztf2zarr/lightcurve_keys/
//! 000007.0000`, zstd), each listed in the root attrs with its jd range and record count
//! (`ztf2zarr.lightcurve_keys`). Blocks are never rewritten.
//!
//! Keys are looked up in batches ([`CommittedKeys::find`]): a block is read only when some key
//! of the batch falls in its jd range, searched, and dropped before the next. An alert carries
//! about 30 days of history, so a nightly append reads the blocks of the last weeks' epochs,
//! never the store's whole history, and holds one of them at a time: memory follows the batch,
//! not the window nor the store's size.

use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

use super::{ReadError, Storage};
use crate::fasthash::FastMap;

/// Folder of the block objects.
pub const BLOCKS: &str = ".ztf2zarr/lightcurve_keys";
/// Records per block: large enough that a night is a few objects, small enough that a block
/// spans a narrow jd range.
pub const BLOCK_RECORDS: usize = 65_536;
/// Bytes of one record: jd, kind, fid, objectId, id, version, row.
const RECORD_BYTES: usize = 8 + 1 + 4 + 12 + 8 + 8 + 8;

/// What a key is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// A detection (`lightcurves/epochs`, keyed by candid).
    Detection = 0,
    /// An upper limit (`lightcurves/epochs`, keyed by objectId, jd, fid).
    UpperLimit = 1,
    /// A forced-photometry epoch (`lightcurves/forced`, keyed by objectId, jd, fid, pid).
    Forced = 2,
}

impl KeyKind {
    fn from_byte(byte: u8) -> Option<KeyKind> {
        match byte {
            0 => Some(KeyKind::Detection),
            1 => Some(KeyKind::UpperLimit),
            2 => Some(KeyKind::Forced),
            _ => None,
        }
    }
}

/// The identity of one version of an epoch. Detections are keyed by candid (`id`); their
/// objectId, jd and fid follow from it and are kept so the key sorts by jd like the others.
/// Upper limits have id 0; forced epochs have their pid. `version` is a hash of the row's
/// values (every column but the carrying alert's): a key's row holds one value set, and a
/// packet that carries other values for the key adds another row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// jd's bits (jd is never NaN: ZTF's schema makes it a non-null double).
    pub jd: u64,
    /// What the key is of.
    pub kind: KeyKind,
    /// Filter ID.
    pub fid: i32,
    /// objectId (ASCII, zero-padded).
    pub object: [u8; 12],
    /// candid, pid, or 0.
    pub id: i64,
    /// Hash of the row's values.
    pub version: u64,
}

/// One integer write of all the fields, folded: a map through [`crate::fasthash::MixHasher`]
/// then mixes once per key instead of once per field.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (low, high) = self.object.split_at(8);
        let low = u64::from_le_bytes(low.try_into().unwrap_or_default());
        let high = u64::from(u32::from_le_bytes(high.try_into().unwrap_or_default()));
        #[allow(clippy::cast_sign_loss)] // the bits are what is hashed
        let (id, fid) = (self.id as u64, u64::from(self.fid as u32));
        let tags = fid << 8 | self.kind as u64;
        state.write_u64(
            self.jd ^ id.rotate_left(23) ^ low.rotate_left(7) ^ high.rotate_left(41) ^ tags.rotate_left(53) ^ self.version.rotate_left(31),
        );
    }
}

impl Key {
    /// The jd as a number.
    #[must_use]
    pub fn jd(&self) -> f64 {
        f64::from_bits(self.jd)
    }

    fn sort_key(&self) -> (f64, KeyKind, [u8; 12], i32, i64, u64) {
        (self.jd(), self.kind, self.object, self.fid, self.id, self.version)
    }

    fn encode(&self, row: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.jd.to_le_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.fid.to_le_bytes());
        out.extend_from_slice(&self.object);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&row.to_le_bytes());
    }

    fn decode(record: &[u8]) -> Option<(Key, u64)> {
        let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap_or_default());
        let kind = KeyKind::from_byte(record[8])?;
        let fid = i32::from_le_bytes(record[9..13].try_into().ok()?);
        let object: [u8; 12] = record[13..25].try_into().ok()?;
        #[allow(clippy::cast_possible_wrap)] // the bits are what was stored
        let id = u64_at(25) as i64;
        Some((Key { jd: u64_at(0), kind, fid, object, id, version: u64_at(33) }, u64_at(41)))
    }
}

/// One block of the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Key of its object.
    pub key: String,
    /// Smallest and largest jd of its keys.
    pub jd_min: f64,
    /// Largest jd.
    pub jd_max: f64,
    /// Keys it holds.
    pub records: usize,
}

impl Block {
    fn json(&self) -> Value {
        json!({"key": self.key, "jd_min": self.jd_min, "jd_max": self.jd_max, "records": self.records})
    }
}

/// The blocks of build number `number`'s new keys (each with the table row it was written to),
/// with their objects' bytes.
#[must_use]
pub fn blocks_of(number: usize, keys: &[(Key, u64)], zstd_level: i32) -> Vec<(Block, Vec<u8>)> {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable_by(|a, b| a.0.sort_key().partial_cmp(&b.0.sort_key()).unwrap_or(std::cmp::Ordering::Equal));
    sorted
        .chunks(BLOCK_RECORDS)
        .enumerate()
        .map(|(index, part)| {
            let mut raw = Vec::with_capacity(part.len() * RECORD_BYTES);
            for (key, row) in part {
                key.encode(*row, &mut raw);
            }
            let bytes = zstd::bulk::compress(&raw, zstd_level).unwrap_or_else(|_| unreachable!("zstd compresses any bytes in memory"));
            let block = Block {
                key: format!("{BLOCKS}/{number:06}.{index:04}"),
                jd_min: part.first().map_or(0.0, |(k, _)| k.jd()),
                jd_max: part.last().map_or(0.0, |(k, _)| k.jd()),
                records: part.len(),
            };
            (block, bytes)
        })
        .collect()
}

/// `ztf2zarr.lightcurve_keys` for `blocks`.
#[must_use]
pub fn blocks_json(blocks: &[Block]) -> Value {
    json!({"blocks": blocks.iter().map(Block::json).collect::<Vec<_>>()})
}

/// The blocks listed in `ztf2zarr.lightcurve_keys` (an absent list: none).
///
/// # Errors
/// An entry that is not a block (names `.zattrs`).
pub fn parse_blocks(value: &Value, location: &str) -> Result<Vec<Block>, ReadError> {
    let Some(list) = value["blocks"].as_array() else { return Ok(Vec::new()) };
    let invalid = |reason: String| ReadError::Invalid { path: location.into(), reason };
    list.iter()
        .map(|entry| {
            let (Some(key), Some(jd_min), Some(jd_max), Some(records)) =
                (entry["key"].as_str(), entry["jd_min"].as_f64(), entry["jd_max"].as_f64(), entry["records"].as_u64())
            else {
                return Err(invalid(format!("ztf2zarr.lightcurve_keys holds an entry that is not a block: {entry}")));
            };
            if !key.starts_with(BLOCKS) {
                return Err(invalid(format!("ztf2zarr.lightcurve_keys names `{key}`, outside {BLOCKS}/")));
            }
            let records = usize::try_from(records).map_err(|_| invalid(format!("block `{key}` of {records} records")))?;
            Ok(Block { key: key.to_string(), jd_min, jd_max, records })
        })
        .collect()
}

/// Read every record of `block`.
///
/// # Errors
/// The object is missing, damaged, or does not hold the records its entry says.
pub fn read_block(storage: &dyn Storage, block: &Block) -> Result<Vec<(Key, u64)>, ReadError> {
    let invalid = |reason: String| ReadError::Invalid { path: storage.object_location(&block.key).into(), reason };
    let compressed = storage.get(&block.key)?.ok_or_else(|| invalid("missing: the light-curve key block is gone".into()))?;
    let expected = block.records.checked_mul(RECORD_BYTES).ok_or_else(|| invalid(format!("{} records", block.records)))?;
    let raw = zstd::bulk::decompress(&compressed, expected).map_err(|e| invalid(format!("not a zstd block of {expected} bytes: {e}")))?;
    if raw.len() != expected {
        return Err(invalid(format!("holds {} bytes, expected {expected} ({} records)", raw.len(), block.records)));
    }
    raw.chunks_exact(RECORD_BYTES).map(|record| Key::decode(record).ok_or_else(|| invalid("a record of an unknown kind".into()))).collect()
}

/// Look-ups of the committed keys, in batches: a batch's keys are sought in the blocks whose
/// jd range holds one of them, read one at a time and dropped once searched.
///
/// Memory is the batch (the caller's map) and one block, never the window: a night's keys
/// reach back a month, and holding every block of that month at once grows with the store's
/// rate, not with the night. The price is time: each batch reads the blocks of its range again.
#[derive(Debug, Default)]
pub struct CommittedKeys {
    /// Sorted by `jd_min`.
    blocks: Vec<Block>,
    /// The jd ranges the blocks cover, merged where they overlap, sorted.
    covered: Vec<(f64, f64)>,
    /// Blocks read so far, over every batch.
    reads: usize,
}

impl CommittedKeys {
    /// Look-ups over `blocks`.
    #[must_use]
    pub fn new(mut blocks: Vec<Block>) -> Self {
        blocks.sort_by(|a, b| a.jd_min.total_cmp(&b.jd_min));
        let mut covered: Vec<(f64, f64)> = Vec::new();
        for block in &blocks {
            match covered.last_mut() {
                Some(last) if block.jd_min <= last.1 => last.1 = last.1.max(block.jd_max),
                _ => covered.push((block.jd_min, block.jd_max)),
            }
        }
        CommittedKeys { blocks, covered, reads: 0 }
    }

    /// Whether some block's jd range holds `jd` (if not, the store holds no key of that jd).
    #[must_use]
    pub fn may_hold(&self, jd: f64) -> bool {
        let after = self.covered.partition_point(|(start, _)| *start <= jd);
        after > 0 && self.covered[after - 1].1 >= jd
    }

    /// Fill in the committed row of each key of `wanted` that the store holds (the others stay
    /// None).
    ///
    /// # Errors
    /// A block whose range holds a wanted key cannot be read.
    pub fn find(&mut self, storage: &dyn Storage, wanted: &mut FastMap<Key, Option<u64>>) -> Result<(), ReadError> {
        if wanted.is_empty() || self.blocks.is_empty() {
            return Ok(());
        }
        let mut jds: Vec<f64> = wanted.keys().map(Key::jd).collect();
        jds.sort_unstable_by(f64::total_cmp);
        let last = jds[jds.len() - 1];
        for block in self.blocks.iter().take_while(|block| block.jd_min <= last) {
            let first_at_or_after = jds.partition_point(|jd| *jd < block.jd_min);
            if jds.get(first_at_or_after).is_none_or(|jd| *jd > block.jd_max) {
                continue; // no wanted key in its range
            }
            self.reads += 1;
            for (key, row) in read_block(storage, block)? {
                if let Some(slot) = wanted.get_mut(&key) {
                    *slot = Some(row);
                }
            }
        }
        Ok(())
    }

    /// Blocks read so far.
    #[must_use]
    pub fn reads(&self) -> usize {
        self.reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(jd: f64, kind: KeyKind, id: i64) -> Key {
        Key { jd: jd.to_bits(), kind, fid: 2, object: *b"ZTF18abcdefg", id, version: 5 }
    }

    #[test]
    fn blocks_round_trip_sorted_by_jd() {
        let keys = vec![(key(3.5, KeyKind::Forced, 9), 7), (key(1.5, KeyKind::Detection, 11), 0), (key(2.5, KeyKind::UpperLimit, 0), 3)];
        let blocks = blocks_of(4, &keys, 1);
        assert_eq!(blocks.len(), 1);
        let (block, bytes) = &blocks[0];
        assert_eq!((block.jd_min, block.jd_max, block.records), (1.5, 3.5, 3));
        assert_eq!(block.key, ".ztf2zarr/lightcurve_keys/000004.0000");
        let raw = zstd::bulk::decompress(bytes, 3 * RECORD_BYTES).unwrap();
        let read: Vec<(Key, u64)> = raw.chunks_exact(RECORD_BYTES).map(|r| Key::decode(r).unwrap()).collect();
        assert_eq!(read, vec![keys[1], keys[2], keys[0]]);
        assert_eq!(parse_blocks(&blocks_json(std::slice::from_ref(block)), ".zattrs").unwrap(), vec![block.clone()]);
    }

    #[test]
    fn a_look_up_reads_only_the_blocks_whose_jd_range_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::store::storage::LocalStorage::new(dir.path());
        let builds = [(1, 10.5, 7), (2, 40.5, 8), (3, 41.5, 9)];
        let mut blocks = Vec::new();
        for (number, jd, id) in builds {
            let (block, bytes) =
                blocks_of(number, &[(key(jd, KeyKind::Detection, id), id as u64), (key(jd + 1.0, KeyKind::Detection, id + 100), 0)], 1)
                    .remove(0);
            storage.put(&block.key, &bytes).unwrap();
            blocks.push(block);
        }
        // Build 1's block is gone: a look-up within build 2's range must not need it.
        std::fs::remove_file(dir.path().join(&blocks[0].key)).unwrap();
        let mut committed = CommittedKeys::new(blocks);
        let mut wanted: FastMap<Key, Option<u64>> =
            [key(40.5, KeyKind::Detection, 8), key(41.5, KeyKind::Detection, 9), key(41.5, KeyKind::Detection, 5)]
                .into_iter()
                .map(|k| (k, None))
                .collect();
        committed.find(&storage, &mut wanted).unwrap();
        assert_eq!(wanted[&key(40.5, KeyKind::Detection, 8)], Some(8));
        assert_eq!(wanted[&key(41.5, KeyKind::Detection, 9)], Some(9));
        assert_eq!(wanted[&key(41.5, KeyKind::Detection, 5)], None);
        assert_eq!(committed.reads(), 2, "builds 2 and 3: their ranges hold the keys");
        assert!(committed.may_hold(10.5) && committed.may_hold(42.5) && committed.may_hold(41.0));
        assert!(!committed.may_hold(12.0) && !committed.may_hold(43.0) && !committed.may_hold(1.0));
        let mut outside: FastMap<Key, Option<u64>> = [(key(20.0, KeyKind::Detection, 1), None)].into_iter().collect();
        committed.find(&storage, &mut outside).unwrap();
        assert_eq!(committed.reads(), 2, "jd 20 is in no block's range: nothing read");
        let mut early: FastMap<Key, Option<u64>> = [(key(10.5, KeyKind::Detection, 7), None)].into_iter().collect();
        assert!(committed.find(&storage, &mut early).is_err(), "build 1's range needs its block");
    }

    #[test]
    fn entries_outside_the_folder_are_refused() {
        let bad = json!({"blocks": [{"key": "../x", "jd_min": 0.0, "jd_max": 1.0, "records": 1}]});
        assert!(parse_blocks(&bad, ".zattrs").is_err());
    }
}
