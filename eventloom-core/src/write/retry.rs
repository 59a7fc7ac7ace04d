//! How the engine retries a command that lost a race on its stream: exponential backoff with
//! full jitter, within a number of attempts and a time budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::clock::{random_seed, splitmix64};

impl RetryPolicy {
    /// The default [`RetryPolicy::max_attempts`].
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 100;
    /// The default [`RetryPolicy::time_budget`].
    pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(5);
    /// The default [`RetryPolicy::initial_delay`].
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(1);
    /// The default [`RetryPolicy::max_delay`].
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(100);
}

/// How [`Cqrs`](crate::Cqrs) retries a command whose append lost the race for the stream's
/// next version to another writer (another process, or an engine with its own cache).
///
/// Before retry `n` (the first retry is 1) the engine waits a random time between zero and
/// `min(max_delay, initial_delay × 2ⁿ⁻¹)` ("full jitter"), then reads the newer events and
/// decides again. It gives up with [`CommandError::Conflict`](crate::CommandError::Conflict)
/// after `max_attempts` decisions, or once `time_budget` has passed since the command was
/// first decided, whichever comes first: no attempt starts after the budget, and the last wait
/// is cut short to end at it. The waits spread racing writers out, so that one hot stream
/// shared by many processes serves them all instead of failing those that lose a few races
/// in a row.
///
/// The time is the engine's [`Clock`](crate::Clock): [`Clock::now`](crate::Clock::now) for the
/// budget, [`Clock::sleep`](crate::Clock::sleep) for the waits. The jitter comes from a small
/// generator of the engine's own (splitmix64), seeded at random unless [`RetryPolicy::seed`]
/// fixes it.
///
/// A command with a required version ([`ExecuteOptions::expect_version`](crate::ExecuteOptions::expect_version))
/// is never retried.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventloom_core::{write::{Cqrs, RetryPolicy}, memory::MemoryEventStore};
/// # #[derive(Debug, Default)] struct A;
/// # #[derive(Debug, serde::Serialize, serde::Deserialize, eventloom_core::Event)] enum E { X }
/// # impl eventloom_core::Aggregate for A { const TYPE: &'static str = "a"; type Event = E; type Error = std::convert::Infallible; fn apply(&mut self, _: &E) {} }
///
/// let policy = RetryPolicy::default()
///     .max_attempts(20)
///     .time_budget(Duration::from_secs(1))
///     .initial_delay(Duration::from_millis(2))
///     .max_delay(Duration::from_millis(50));
/// assert_eq!(policy.ceiling(1), Duration::from_millis(2));
/// assert_eq!(policy.ceiling(3), Duration::from_millis(8));
/// assert_eq!(policy.ceiling(10), Duration::from_millis(50));
/// assert!(policy.backoff(3, u64::MAX) <= Duration::from_millis(8));
/// let cqrs = Cqrs::<A, _>::new(MemoryEventStore::new()).with_retry(policy);
///
/// // What the engine did before backoff existed: ten attempts at once.
/// let immediate = RetryPolicy::immediate(10);
/// assert_eq!(immediate.ceiling(5), Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// How many times a command is decided at most (at least once; 0 counts as 1).
    pub max_attempts: u32,
    /// How long after its first decision a command may still start an attempt.
    /// `Duration::MAX`: no limit; zero: no retry.
    pub time_budget: Duration,
    /// The longest wait before the first retry; each later retry doubles it. Zero: no waits.
    pub initial_delay: Duration,
    /// The longest wait before any retry.
    pub max_delay: Duration,
    /// Fixes the jitter's random sequence (for tests that replay a run); `None`, the default,
    /// seeds it at random per engine. Engines sharing a seed wait in step: give each its own.
    pub seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// The defaults: [`RetryPolicy::DEFAULT_MAX_ATTEMPTS`] attempts within [`RetryPolicy::DEFAULT_TIME_BUDGET`], waits
    /// from [`RetryPolicy::DEFAULT_INITIAL_DELAY`] doubling up to [`RetryPolicy::DEFAULT_MAX_DELAY`], a random seed.
    pub const fn new() -> Self {
        RetryPolicy {
            max_attempts: RetryPolicy::DEFAULT_MAX_ATTEMPTS,
            time_budget: RetryPolicy::DEFAULT_TIME_BUDGET,
            initial_delay: RetryPolicy::DEFAULT_INITIAL_DELAY,
            max_delay: RetryPolicy::DEFAULT_MAX_DELAY,
            seed: None,
        }
    }

    /// Up to `attempts` attempts, one straight after the other, with no time budget: the
    /// engine's behaviour before backoff existed (its default was 10).
    pub const fn immediate(attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: attempts,
            time_budget: Duration::MAX,
            initial_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            seed: None,
        }
    }

    /// One attempt: a conflict is returned at once.
    pub const fn never() -> Self {
        Self::immediate(1)
    }

    /// Sets [`RetryPolicy::max_attempts`] (0 counts as 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets [`RetryPolicy::time_budget`].
    pub fn time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = budget;
        self
    }

    /// Sets [`RetryPolicy::initial_delay`].
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets [`RetryPolicy::max_delay`].
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets [`RetryPolicy::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The longest wait before retry `retry` (1 is the first retry):
    /// `min(max_delay, initial_delay × 2^(retry - 1))`; zero for retry 0.
    pub fn ceiling(&self, retry: u32) -> Duration {
        if retry == 0 {
            return Duration::ZERO;
        }
        let doubled = match 1u32.checked_shl(retry - 1) {
            Some(factor) => self.initial_delay.checked_mul(factor).unwrap_or(Duration::MAX),
            None if self.initial_delay.is_zero() => Duration::ZERO,
            None => Duration::MAX,
        };
        doubled.min(self.max_delay)
    }

    /// The wait before retry `retry` for a uniformly random `random`: `random / 2⁶⁴` of
    /// [`ceiling(retry)`](RetryPolicy::ceiling), so between zero and the ceiling.
    pub fn backoff(&self, retry: u32, random: u64) -> Duration {
        // Ceilings past 584 years count as 584 years, so that the product fits.
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        let nanos = (u128::from(ceiling) * u128::from(random)) >> 64;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The engine's jitter: a splitmix64 sequence, shared by an engine and its clones.
#[derive(Debug)]
pub(crate) struct Jitter(AtomicU64);

impl Jitter {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Jitter(AtomicU64::new(seed.unwrap_or_else(random_seed)))
    }

    pub(crate) fn next(&self) -> u64 {
        splitmix64(self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_never_overflow() {
        let p = RetryPolicy::new().initial_delay(Duration::from_millis(3)).max_delay(Duration::from_millis(20));
        let got: Vec<u128> = (0..8).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(got, vec![0, 3, 6, 12, 20, 20, 20, 20]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(20));
        assert_eq!(RetryPolicy::immediate(3).ceiling(u32::MAX), Duration::ZERO);
        let huge = RetryPolicy::new().initial_delay(Duration::MAX).max_delay(Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
        assert!(huge.backoff(40, u64::MAX) <= Duration::MAX);
    }

    #[test]
    fn backoff_spans_zero_to_the_ceiling() {
        let p = RetryPolicy::new().initial_delay(Duration::from_millis(8));
        assert_eq!(p.backoff(1, 0), Duration::ZERO);
        assert_eq!(p.backoff(1, 1 << 63), Duration::from_millis(4));
        assert!(p.backoff(1, u64::MAX) < Duration::from_millis(8));
        assert!(p.backoff(1, u64::MAX) > Duration::from_micros(7_999));
    }

    #[test]
    fn a_seeded_jitter_replays_and_spreads() {
        let (a, b) = (Jitter::new(Some(7)), Jitter::new(Some(7)));
        let xs: Vec<u64> = (0..1000).map(|_| a.next()).collect();
        assert_eq!(xs, (0..1000).map(|_| b.next()).collect::<Vec<_>>());
        // Roughly uniform: each quarter of the range gets a fair share.
        let mut quarters = [0; 4];
        for x in xs {
            quarters[(x >> 62) as usize] += 1;
        }
        assert!(quarters.iter().all(|&q| (180..320).contains(&q)), "{quarters:?}");
    }
}
