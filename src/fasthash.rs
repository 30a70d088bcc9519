//! A hasher for the build's hot look-ups (candids, light-curve keys). Their values are already
//! well spread (candids, jd bits), so one multiply-xorshift finaliser is plenty; SipHash, the
//! standard map's default, measured as a few percent of a build with light curves.
//! Not for keys an attacker chooses to collide: every key here comes from the inputs' own
//! identifiers, and a collision only costs a longer probe, never a wrong answer.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Folds integer writes with splitmix64's finaliser; byte writes (rare here) FNV-style.
#[derive(Default)]
pub struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        let mut x = self.0 ^ value;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = x ^ (x >> 31);
    }

    fn write_i64(&mut self, value: i64) {
        #[allow(clippy::cast_sign_loss)] // the bits are what is hashed
        self.write_u64(value as u64);
    }
}

/// A 64-bit digest of a packed row's bytes: the light-curve tables tell two versions of one
/// epoch apart by it (`lckeys::Key::version`). Two lanes of multiply-rotate over 8-byte words,
/// then splitmix64's finaliser: a row is ~1.5 KB and every history row of every alert is
/// digested on the ordering thread, so it must cost well under a microsecond. Two different
/// value sets of one key collide with probability about 2^-64.
#[must_use]
pub fn digest(bytes: &[u8]) -> u64 {
    const KEYS: [(u64, u32); 2] = [(0x9e37_79b9_7f4a_7c15, 31), (0xc2b2_ae3d_27d4_eb4f, 29)];
    let mut lanes = [bytes.len() as u64 ^ 0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344];
    let mut mix = |pair: &[u8]| {
        for ((lane, (key, turn)), word) in lanes.iter_mut().zip(KEYS).zip(pair.chunks_exact(8)) {
            *lane = (*lane ^ u64::from_le_bytes(word.try_into().unwrap_or_default())).wrapping_mul(key).rotate_left(turn);
        }
    };
    let mut pairs = bytes.chunks_exact(16);
    pairs.by_ref().for_each(&mut mix);
    // The last 0-15 bytes, zero-padded (the length, mixed in first, tells paddings apart).
    let mut tail = [0u8; 16];
    tail[..pairs.remainder().len()].copy_from_slice(pairs.remainder());
    mix(&tail);
    let mut hasher = MixHasher(lanes[0]);
    hasher.write_u64(lanes[1]);
    hasher.finish()
}

/// A map keyed through [`MixHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;
/// A set keyed through [`MixHasher`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<MixHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash_of(value: impl Hash) -> u64 {
        BuildHasherDefault::<MixHasher>::default().hash_one(value)
    }

    #[test]
    fn digests_tell_rows_apart_by_any_byte() {
        let row: Vec<u8> = (0..1559u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut seen = HashSet::new();
        assert!(seen.insert(digest(&row)));
        for at in [0, 7, 8, 15, 16, 800, 1551, 1558] {
            let mut changed = row.clone();
            changed[at] ^= 1;
            assert!(seen.insert(digest(&changed)), "byte {at}");
        }
        assert!(seen.insert(digest(&row[..1558])), "length counts");
        assert_eq!(digest(&row), digest(&row.clone()));
    }

    #[test]
    fn nearby_values_spread_over_the_table() {
        let low_bits: FastSet<u64> = (0..1024i64).map(|i| hash_of(1_000_000_000_000_000_000 + i) & 1023).collect();
        assert!(low_bits.len() > 600, "consecutive candids should fill most of 1024 buckets, got {}", low_bits.len());
    }
}
