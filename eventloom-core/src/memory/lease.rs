use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::store::BoxFuture;
use tokio::sync::{Notify, watch};

use super::lock;
use crate::store::{LeaseHolder, LeaseInfo, validate_lease_name};
use crate::{Lease, LeaseManager, Result, Timestamp};

/// A [`LeaseManager`] for the tasks of one process.
///
/// # Examples
///
/// ```
/// use eventloom_core::{store::LeaseManager, memory::MemoryLeases};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let leases = MemoryLeases::default();
/// let first = leases.acquire("tasks").await.unwrap();
/// drop(first);
/// let second = leases.acquire("tasks").await.unwrap();
/// assert_eq!(second.token(), 2);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryLeases {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    slots: Mutex<BTreeMap<String, Slot>>,
    released: Notify,
}

#[derive(Debug, Default)]
struct Slot {
    token: u64,
    holder: Option<watch::Sender<bool>>,
    /// Who took the last token, and when.
    taken_by: Option<(LeaseHolder, Timestamp)>,
}

struct Release {
    inner: Arc<Inner>,
    name: String,
    token: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut slots = lock(&self.inner.slots);
        if let Some(slot) = slots.get_mut(&self.name) {
            if slot.token == self.token {
                slot.holder = None;
            }
        }
        drop(slots);
        self.inner.released.notify_waiters();
    }
}

impl MemoryLeases {
    /// Takes the lease of `name` away from its holder, as a lost connection would: the holder's
    /// lease reports lost and the next `acquire` gets a higher token.
    pub fn revoke(&self, name: &str) {
        let mut slots = lock(&self.inner.slots);
        if let Some(slot) = slots.get_mut(name) {
            if let Some(holder) = slot.holder.take() {
                holder.send_replace(true);
            }
        }
        drop(slots);
        self.inner.released.notify_waiters();
    }
}

impl MemoryLeases {
    /// The lease of `name` if nobody holds it.
    fn take(&self, name: &str) -> Option<Lease> {
        let mut slots = lock(&self.inner.slots);
        let slot = slots.entry(name.to_owned()).or_default();
        if slot.holder.is_some() {
            return None;
        }
        slot.token += 1;
        let (tx, rx) = watch::channel(false);
        slot.holder = Some(tx);
        slot.taken_by = Some((LeaseHolder::this_process(), Timestamp::now()));
        let release = Release { inner: self.inner.clone(), name: name.to_owned(), token: slot.token };
        Some(Lease::new(slot.token, rx, release))
    }
}

impl LeaseManager for MemoryLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            validate_lease_name(name)?;
            loop {
                let notified = self.inner.released.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(lease) = self.take(name) {
                    return Ok(lease);
                }
                notified.await;
            }
        })
    }

    fn try_acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            validate_lease_name(name)?;
            Ok(self.take(name))
        })
    }

    fn leases<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<LeaseInfo>>> {
        Box::pin(async move {
            validate_lease_name(prefix)?;
            let slots = lock(&self.inner.slots);
            Ok(slots
                .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(prefix))
                .filter(|(_, slot)| slot.token > 0)
                .map(|(name, slot)| {
                    let info = LeaseInfo::new(name.clone(), slot.token).with_held(slot.holder.is_some());
                    match &slot.taken_by {
                        Some((holder, at)) => info.held_by(holder.clone(), Some(*at)),
                        None => info,
                    }
                })
                .collect())
        })
    }
}
