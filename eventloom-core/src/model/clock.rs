//! The engine's clock and id generator, both replaceable in tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use uuid::Uuid;

use crate::Timestamp;

/// Tells the time for event metadata and for the engine's retry budget, and waits between
/// retries.
///
/// Only [`now`](Clock::now) is required; [`sleep`](Clock::sleep) defaults to Tokio's timer. A
/// test clock that moves itself forward when asked to sleep (as [`ManualClock`] does) makes
/// the engine's backoff instant and deterministic.
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::{Clock, Timestamp}, write::Cqrs, memory::MemoryEventStore};
/// # #[derive(Debug, Default)] struct A;
/// # #[derive(Debug, serde::Serialize, serde::Deserialize, eventloom_core::Event)] enum E { X }
/// # impl eventloom_core::Aggregate for A { const TYPE: &'static str = "a"; type Event = E; type Error = std::convert::Infallible; fn apply(&mut self, _: &E) {} }
///
/// struct Epoch;
/// impl Clock for Epoch {
///     fn now(&self) -> Timestamp { Timestamp::from_micros(0) }
/// }
/// let cqrs = Cqrs::<A, _>::new(MemoryEventStore::new()).with_clock(Epoch);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Waits for `duration`: the engine's backoff between two attempts of a command. Defaults
    /// to [`tokio::time::sleep`].
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The system's clock.
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::{Clock, SystemClock, Timestamp}};
///
/// assert!(SystemClock.now() > Timestamp::from_micros(0));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock for tests: it stands still until moved. Asked to sleep, it moves itself forward by
/// the duration (to the microsecond) and returns at once, so a backoff takes no real time.
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::{Clock, ManualClock, Timestamp}};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_micros(10));
/// clock.advance(5);
/// assert_eq!(clock.now(), Timestamp::from_micros(15));
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// clock.sleep(Duration::from_millis(2)).await;
/// assert_eq!(clock.now(), Timestamp::from_micros(2_015));
/// # });
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock(AtomicI64::new(at.as_micros()))
    }

    /// Moves the clock forward by `micros`.
    pub fn advance(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::Relaxed))
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| Some(now.saturating_add(micros)));
        Box::pin(std::future::ready(()))
    }
}

/// Makes event ids.
///
/// # Examples
///
/// ```
/// use eventloom_core::model::IdGenerator;
/// use uuid::Uuid;
///
/// struct Nil;
/// impl IdGenerator for Nil {
///     fn next_id(&self) -> Uuid { Uuid::nil() }
/// }
/// assert!(Nil.next_id().is_nil());
/// ```
pub trait IdGenerator: Send + Sync + 'static {
    /// A new id, distinct from every earlier one.
    fn next_id(&self) -> Uuid;
}

/// Random version-4 UUIDs, fast: a per-process random seed mixed with a counter through a
/// bijective hash, so ids never repeat within a process and collide across processes only
/// with the odds of random UUIDs.
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::{IdGenerator, RandomIds}};
///
/// let ids = RandomIds::default();
/// assert_ne!(ids.next_id(), ids.next_id());
/// ```
#[derive(Debug)]
pub struct RandomIds {
    seed: u64,
    counter: AtomicU64,
}

impl Default for RandomIds {
    fn default() -> Self {
        RandomIds { seed: random_seed(), counter: AtomicU64::new(0) }
    }
}

/// A seed that differs between processes and between calls: the standard library's random
/// hasher keys, the time and the process id.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Timestamp::now().as_micros() as u128);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl IdGenerator for RandomIds {
    fn next_id(&self) -> Uuid {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let high = splitmix64(self.seed ^ splitmix64(n));
        let low = splitmix64(n.wrapping_add(self.seed.rotate_left(32)));
        uuid::Builder::from_random_bytes(((u128::from(high) << 64) | u128::from(low)).to_be_bytes()).into_uuid()
    }
}

/// Ids 1, 2, 3, ... as UUIDs: predictable ids for tests.
///
/// # Examples
///
/// ```
/// use eventloom_core::{model::{IdGenerator, SequentialIds}};
///
/// let ids = SequentialIds::default();
/// assert_eq!(ids.next_id().as_u128(), 1);
/// assert_eq!(ids.next_id().as_u128(), 2);
/// ```
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdGenerator for SequentialIds {
    fn next_id(&self) -> Uuid {
        Uuid::from_u128(u128::from(self.0.fetch_add(1, Ordering::Relaxed) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_do_not_repeat() {
        let ids = RandomIds::default();
        let set: std::collections::HashSet<_> = (0..10_000).map(|_| ids.next_id()).collect();
        assert_eq!(set.len(), 10_000);
        assert_eq!(ids.next_id().get_version(), Some(uuid::Version::Random));
    }
}
