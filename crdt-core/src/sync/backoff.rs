//! Retry timing: exponential backoff with jitter, from a seeded generator (core draws no
//! randomness of its own, so runs are reproducible from the seed the driver gives).

/// How long to wait before retrying, and how often to poll when nothing announces changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First retry delay, in milliseconds.
    pub base_millis: u64,
    /// Longest retry delay, in milliseconds.
    pub max_millis: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            base_millis: 250,
            max_millis: 60_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempt counts failures so far, from 1):
    /// `base · 2^(attempt-1)`, capped, then scaled by a random factor in [0.5, 1) so that many
    /// devices failing together do not retry together.
    pub(crate) fn delay(&self, attempt: u32, jitter: &mut Jitter) -> u64 {
        let exponent = attempt.saturating_sub(1).min(32);
        let full = self
            .base_millis
            .saturating_mul(1u64 << exponent)
            .min(self.max_millis)
            .max(1);
        full / 2 + jitter.below(full / 2 + 1)
    }
}

/// A small deterministic generator (SplitMix64): enough for spreading retries, not for secrets.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered_within_half() {
        let policy = RetryPolicy {
            base_millis: 100,
            max_millis: 1_000,
        };
        let mut jitter = Jitter::new(7);
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (40, 1_000),
        ] {
            for _ in 0..50 {
                let delay = policy.delay(attempt, &mut jitter);
                assert!(
                    (full / 2..=full).contains(&delay),
                    "attempt {attempt}: {delay}"
                );
            }
        }
        let spread: std::collections::BTreeSet<u64> =
            (0..50).map(|_| policy.delay(5, &mut jitter)).collect();
        assert!(spread.len() > 10, "jitter spreads retries: {spread:?}");
    }
}
