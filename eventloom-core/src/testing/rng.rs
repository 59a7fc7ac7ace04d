//! A seeded generator for randomised tests: the seed comes from an environment variable when set
//! (to replay a run), else at random, and is printed either way.

use crate::model::clock::{random_seed, splitmix64};

/// A small pseudo-random generator (splitmix64) for randomised tests, without a dependency.
/// [`from_env`](Self::from_env) takes its seed from an environment variable when set, so that a
/// failed run replays exactly, else at random, and prints it (the test harness shows a
/// failing test's output). Not for anything but tests: it is predictable by design.
///
/// # Examples
///
/// ```
/// use eventloom_core::testing::TestRng;
///
/// let mut rng = TestRng::from_env("MY_TEST_SEED"); // prints "seed ... (replay with MY_TEST_SEED=...)"
/// let mut again = TestRng::new(rng.seed());
/// let (a, b) = (rng.below(10), again.below(10));
/// assert_eq!(a, b, "the same seed replays the same run");
/// assert!(a < 10);
/// let mut worker = rng.derive(3);
/// assert_eq!(worker.next_u64(), again.derive(3).next_u64(), "derived generators replay too");
/// assert_eq!(*TestRng::new(1).pick(&["only"]), "only");
/// ```
#[derive(Debug, Clone)]
pub struct TestRng {
    seed: u64,
    state: u64,
}

impl TestRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        TestRng { seed, state: seed }
    }

    /// A generator seeded from the environment variable `var` when it is set (it must be a
    /// `u64`: a test fails at once on another value rather than run unreplayable), else at
    /// random; prints `seed <seed> (replay with <var>=<seed>)`.
    ///
    /// # Panics
    ///
    /// When `var` is set to something other than a `u64`.
    pub fn from_env(var: &str) -> Self {
        let seed = match std::env::var(var) {
            Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{var}={text:?} is not a u64 seed")),
            Err(_) => random_seed(),
        };
        println!("seed {seed} (replay with {var}={seed})");
        TestRng::new(seed)
    }

    /// The seed it started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.state)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            n => self.next_u64() % n,
        }
    }

    /// A number in `range` (its start when it is empty).
    pub fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.below(range.end.saturating_sub(range.start))
    }

    /// Whether an event of probability 1 in `n` happened (always for `n` 0 or 1).
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One of `items`, picked at random.
    ///
    /// # Panics
    ///
    /// When `items` is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "TestRng::pick from an empty slice");
        let at = self.below(items.len() as u64);
        &items[usize::try_from(at).unwrap_or(0)]
    }

    /// A generator of its own for part `part` of a run (a worker, a task), replayed by the same
    /// seed and apart from the other parts' and from this one's.
    pub fn derive(&self, part: u64) -> TestRng {
        TestRng::new(splitmix64(self.seed ^ splitmix64(part.wrapping_add(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_numbers_spread() {
        let mut a = TestRng::new(42);
        let mut b = TestRng::new(42);
        let run: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        assert_eq!(run, (0..100).map(|_| b.below(10)).collect::<Vec<_>>());
        assert!((0..10).all(|n| run.contains(&n)), "every value below 10 in 100 draws: {run:?}");
        assert_ne!(TestRng::new(0).next_u64(), TestRng::new(1).next_u64(), "seed 0 works, and differs");
        assert_ne!(a.derive(1).next_u64(), a.derive(2).next_u64());
        assert_eq!(TestRng::new(5).in_range(3..3), 3);
        assert!((0..50).all(|_| (3..7).contains(&a.in_range(3..7))));
    }
}
