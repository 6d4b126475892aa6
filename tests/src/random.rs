//! A seeded generator for workloads and faults, so that runs replay.

/// splitmix64: tiny, fast, and good enough to spread test faults and pick workloads.
#[derive(Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`: the top 53 bits as the mantissa.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// In `0..bound` (`bound` > 0). The modulo's bias is below 2^-40 for the small bounds
    /// workloads use.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_is_deterministic_per_seed_and_in_unit_interval() {
        let mut a = SplitMix64(42);
        let mut b = SplitMix64(42);
        let mut c = SplitMix64(43);
        let xs: Vec<f64> = (0..1000).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.next_f64()).collect();
        let zs: Vec<f64> = (0..1000).map(|_| c.next_f64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }

    #[test]
    fn below_stays_below_and_reaches_every_value() {
        let mut random = SplitMix64(7);
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let n = random.below(6);
            assert!(n < 6);
            seen[n as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }
}
