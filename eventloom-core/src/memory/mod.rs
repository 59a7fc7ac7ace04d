//! The in-memory stores: the embedded default, with nothing to install.

mod event_store;
mod lease;
mod snapshot_store;
mod view_store;

pub use event_store::MemoryEventStore;
pub use lease::MemoryLeases;
pub use snapshot_store::MemorySnapshotStore;
pub use view_store::MemoryViewStore;

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks a mutex; a panic elsewhere while holding it leaves consistent data (no critical
/// section here panics halfway), so poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
