//! Deterministic random streams.
//!
//! Every random choice in synaptogen (a task's pixel permutation, the order of its training examples, a
//! network's initial weights, Bernoulli input spikes) comes from a stream keyed by *what it is for*:
//! `(seed, purpose, indices…)`. A stream never depends on how many numbers another stream drew, on the
//! order tasks are evaluated in, or on which thread runs them, so the same spec and seed give the same
//! run everywhere.
//!
//! We own the generator (xoshiro256++ seeded through SplitMix64, both public-domain algorithms by
//! Blackman & Vigna) instead of depending on `rand`, because a change of a crate's stream between versions
//! would silently change every published result.

/// What a random stream is used for; part of its key, so two purposes never share numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A task's pixel permutation.
    Permutation = 1,
    /// A task's order of training examples (one stream per epoch).
    ExampleOrder = 2,
    /// Initial weights and biases.
    Init = 3,
    /// Bernoulli rate coding of inputs.
    Encoding = 4,
    /// The fixed train/test split of a dataset that ships without one.
    Split = 5,
    /// The built-in synthetic dataset.
    Synthetic = 6,
    /// Which examples form a task's probe batch.
    Probe = 7,
    /// A learner's noise table.
    Noise = 8,
    /// A learner's own draws (noise offsets, redrawn units, fresh networks).
    Learner = 9,
    /// A search's choices: parents, mutations, constants (one stream per round and slot).
    Search = 10,
    /// The fixed probe inputs of the search's functional-equivalence cache.
    Behaviour = 11,
    /// Which synapses exist: the initial draw and each task's regrowth (per layer and task).
    Structure = 12,
}

/// A xoshiro256++ generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream for `(seed, purpose, indices)`.
    pub fn stream(seed: u64, purpose: Purpose, indices: &[u64]) -> Rng {
        let mut key = seed ^ ((purpose as u64) << 56);
        let mut mix = splitmix64(&mut key);
        for &i in indices {
            let mut k = mix ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            mix = splitmix64(&mut k);
        }
        let mut s = mix;
        let state = [
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
        ];
        Rng { state }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 bits of precision (every value exactly representable as f32).
    #[inline]
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [-bound, bound).
    #[inline]
    pub fn symmetric(&mut self, bound: f32) -> f32 {
        (2.0 * self.uniform() - 1.0) * bound
    }

    /// Uniform integer in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our sizes).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
        let u2 = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A uniformly random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..n as u32).collect();
        self.shuffle(&mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_keyed_not_sequential() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::stream(7, Purpose::Permutation, &[3]).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same key, same stream");
        let b = Rng::stream(7, Purpose::Permutation, &[4]).next_u64();
        let c = Rng::stream(7, Purpose::ExampleOrder, &[3]).next_u64();
        let d = Rng::stream(8, Purpose::Permutation, &[3]).next_u64();
        assert!(a[0] != b && a[0] != c && a[0] != d);
    }

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut rng = Rng::stream(1, Purpose::Init, &[]);
        let n = 200_000;
        let (mut su, mut sn, mut sn2) = (0.0f64, 0.0f64, 0.0f64);
        for _ in 0..n {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            su += u as f64;
            let z = rng.normal() as f64;
            sn += z;
            sn2 += z * z;
        }
        assert!((su / n as f64 - 0.5).abs() < 0.01);
        assert!((sn / n as f64).abs() < 0.01);
        assert!((sn2 / n as f64 - 1.0).abs() < 0.02);
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Rng::stream(3, Purpose::Permutation, &[0]).permutation(196);
        assert_ne!(p, (0..196).collect::<Vec<u32>>());
        p.sort_unstable();
        assert_eq!(p, (0..196).collect::<Vec<u32>>());
    }
}
