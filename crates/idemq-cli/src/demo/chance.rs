//! A small seeded random source for fault injection.
//!
//! SplitMix64: enough to scatter duplicates and failures, and seeded so a run names the
//! seed it used. (Concurrency still decides the exact interleaving.)

/// A seeded pseudo-random sequence.
#[derive(Debug, Clone)]
pub struct Chance(u64);

impl Chance {
    /// A sequence from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A sequence for the `n`th worker of a run, independent of the others.
    pub fn fork(seed: u64, n: u64) -> Self {
        let mut c = Self(seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        c.next_u64();
        c
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn happens(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_come_out_near_their_probability() {
        let mut c = Chance::new(7);
        let hits = (0..10_000).filter(|_| c.happens(0.3)).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
    }

    #[test]
    fn shuffles_keep_every_item() {
        let mut v: Vec<u32> = (0..100).collect();
        Chance::new(1).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
