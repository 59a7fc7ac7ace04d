//! The process's allocator, counting while a measurement runs: how many allocations (a
//! `realloc` counts as one), how many bytes they asked for, and the peak of the bytes live
//! above where they were when the measurement started.
//!
//! Counting is off outside measurements (one relaxed load per call), so the timed scenarios
//! run as they would without it. While it is on, every thread's allocations count: the
//! measured work's, and those of the runtime's other tasks then (the store's connection
//! tasks, its notifier), which the work caused too. The peak is of the bytes allocated minus
//! the bytes freed since the start, so memory freed during the measurement that was allocated
//! before it lowers the figure: a measurement of a load reads a fresh stream, which frees
//! little that is older.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// The system allocator, counting while [`Measure`] is on.
pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn grew(bytes: usize) {
    CALLS.fetch_add(1, Relaxed);
    BYTES.fetch_add(bytes as u64, Relaxed);
    let live = LIVE.fetch_add(bytes as i64, Relaxed) + bytes as i64;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call goes to `System` unchanged; the counters only watch.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && ON.load(Relaxed) {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && ON.load(Relaxed) {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        if ON.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as i64, Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() && ON.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as i64, Relaxed);
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What the allocator counted during one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Allocations (and reallocations).
    pub allocations: u64,
    /// Bytes they asked for.
    pub bytes: u64,
    /// The most bytes live at once above the start.
    pub peak_bytes: u64,
}

impl Tally {
    /// Allocations per operation, for `ops` operations.
    pub fn per(&self, ops: usize) -> f64 {
        self.allocations as f64 / ops.max(1) as f64
    }

    /// Bytes allocated per operation.
    pub fn bytes_per(&self, ops: usize) -> f64 {
        self.bytes as f64 / ops.max(1) as f64
    }

    /// The peak in MB (10^6 bytes).
    pub fn peak_mb(&self) -> f64 {
        self.peak_bytes as f64 / 1e6
    }
}

/// A measurement in progress: counting is on from [`Measure::start`] to [`Measure::stop`].
/// One at a time (the counters are the process's).
pub struct Measure(());

impl Measure {
    /// Resets the counters and turns counting on.
    pub fn start() -> Self {
        CALLS.store(0, Relaxed);
        BYTES.store(0, Relaxed);
        LIVE.store(0, Relaxed);
        PEAK.store(0, Relaxed);
        ON.store(true, Relaxed);
        Measure(())
    }

    /// Turns counting off and returns what it counted.
    pub fn stop(self) -> Tally {
        ON.store(false, Relaxed);
        Tally {
            allocations: CALLS.load(Relaxed),
            bytes: BYTES.load(Relaxed),
            peak_bytes: u64::try_from(PEAK.load(Relaxed)).unwrap_or(0),
        }
    }
}

impl Drop for Measure {
    fn drop(&mut self) {
        ON.store(false, Relaxed);
    }
}
