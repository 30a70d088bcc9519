//! The project's one source of randomness: a SplitMix64 stream seeded from a handful of keys
//! (seed, purpose tag, candid …), so every synthetic alert and every training split can be
//! regenerated on its own, in any order, on any thread, and always comes out the same.

/// Mixes one 64-bit word into a well-spread one (the SplitMix64 finaliser).
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small, fast, deterministic PRNG (SplitMix64) with the few distributions the generator needs.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "generate"), allow(dead_code))] // the distributions serve the generator
pub(crate) struct Rng {
    state: u64,
    /// The polar method makes normal deviates in pairs; the second one waits here.
    spare_normal: Option<f64>,
}

#[cfg_attr(not(feature = "generate"), allow(dead_code))] // the distributions serve the generator
impl Rng {
    const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// A stream determined by `keys`: equal keys give equal streams, any change gives another.
    pub(crate) fn from_keys(keys: &[u64]) -> Self {
        // Folding through mix64 (not a plain xor) keeps (a, b) and (b, a) apart.
        let state = keys.iter().fold(0x5eed_u64, |acc, &key| mix64(acc.wrapping_add(Self::GOLDEN_GAMMA) ^ key));
        Self { state, spare_normal: None }
    }

    /// The next raw 64-bit word.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1), with the 53 bits a double holds.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in lo..=hi.
    pub(crate) fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.abs_diff(lo) + 1;
        // Multiply-shift instead of modulo: unbiased enough here and never divides.
        let offset = ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64;
        lo.wrapping_add_unsigned(offset)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One of `choices`, uniformly.
    pub(crate) fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        let last = choices.len().saturating_sub(1) as i64;
        choices[self.int_in(0, last) as usize]
    }

    /// Standard normal deviate (Marsaglia's polar method: Box–Muller without the trigonometry,
    /// which was the generator's largest cost after gzip).
    pub(crate) fn normal(&mut self) -> f64 {
        if let Some(spare) = self.spare_normal.take() {
            return spare;
        }
        loop {
            let u = 2.0 * self.unit() - 1.0;
            let v = 2.0 * self.unit() - 1.0;
            let radius_squared = u * u + v * v;
            // Accept points inside the unit disc (79%), away from 0 where the logarithm diverges.
            if radius_squared > 0.0 && radius_squared < 1.0 {
                let scale = (-2.0 * radius_squared.ln() / radius_squared).sqrt();
                self.spare_normal = Some(v * scale);
                return u * scale;
            }
        }
    }

    /// Normal deviate with the given mean and standard deviation.
    pub(crate) fn gauss(&mut self, mean: f64, sigma: f64) -> f64 {
        mean + sigma * self.normal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_give_equal_streams_and_order_matters() {
        let mut a = Rng::from_keys(&[1, 2, 3]);
        let mut b = Rng::from_keys(&[1, 2, 3]);
        let mut swapped = Rng::from_keys(&[2, 1, 3]);
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let again: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let other: Vec<u64> = (0..8).map(|_| swapped.next_u64()).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn ranges_are_respected() {
        let mut rng = Rng::from_keys(&[7]);
        for _ in 0..10_000 {
            let u = rng.uniform(-3.0, 5.0);
            assert!((-3.0..5.0).contains(&u));
            let k = rng.int_in(2, 8);
            assert!((2..=8).contains(&k));
        }
        let hits_of_each: Vec<usize> = (0..=6).map(|v| (0..7_000).filter(|_| rng.int_in(0, 6) == v).count()).collect();
        assert!(hits_of_each.iter().all(|&n| n > 800), "{hits_of_each:?}");
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut rng = Rng::from_keys(&[42]);
        let samples: Vec<f64> = (0..100_000).map(|_| rng.normal()).collect();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / samples.len() as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
