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
    fn nearby_values_spread_over_the_table() {
        let low_bits: FastSet<u64> = (0..1024i64).map(|i| hash_of(1_000_000_000_000_000_000 + i) & 1023).collect();
        assert!(low_bits.len() > 600, "consecutive candids should fill most of 1024 buckets, got {}", low_bits.len());
    }
}
