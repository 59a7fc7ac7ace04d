//! Event stores that fail or slow down on purpose, for tests of what a crash at one point leaves
//! behind and of what runs side by side: [`Hooked`] runs an [`AppendHook`] around each append
//! and hands everything else to the store it wraps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::model::{ExpectedVersion, NewEvent};
use crate::store::{Appended, BoxFuture, CommandEntry, EventStore};
use crate::{Error, Result, StreamId};

/// What a [`Hooked`] store does around each plain append and each append of a command (not
/// around [`EventStore::append_relayed`]).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use eventloom_core::prelude::*;
/// use eventloom_core::memory::MemoryEventStore;
/// use eventloom_core::model::{ExpectedVersion, NewEvent};
/// use eventloom_core::store::{BoxFuture, EventStore};
/// use eventloom_core::testing::{AppendHook, Hooked};
///
/// /// Counts the appends to each stream of category `audit`.
/// #[derive(Default)]
/// struct Count(AtomicUsize);
///
/// impl AppendHook for Count {
///     fn before<'a>(&'a self, stream: &'a StreamId, _command: bool) -> BoxFuture<'a, eventloom_core::Result<()>> {
///         if stream.category() == "audit" {
///             self.0.fetch_add(1, Ordering::SeqCst);
///         }
///         Box::pin(std::future::ready(Ok(())))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Hooked::with_hook(MemoryEventStore::new(), Count::default());
/// let stream = StreamId::new("audit", "a-1").unwrap();
/// let event = NewEvent { event_type: "Noted".into(), schema_version: 1, payload: "{}".into(),
///     metadata: Metadata::default() };
/// store.append(&stream, ExpectedVersion::Any, vec![event]).await.unwrap();
/// assert_eq!(store.hook().0.load(Ordering::SeqCst), 1);
/// # });
/// ```
pub trait AppendHook: Send + Sync + 'static {
    /// Runs before an append to `stream` (`command`: the append of a command executed under a
    /// command id, [`EventStore::append_command`]); an error fails the append before it reaches
    /// the store.
    fn before<'a>(&'a self, stream: &'a StreamId, command: bool) -> BoxFuture<'a, Result<()>>;

    /// Runs after an append to `stream` finished, whatever its outcome: also when `before` failed
    /// it, or when it was dropped before it finished.
    fn after(&self, stream: &StreamId) {
        let _ = stream;
    }
}

/// An event store that runs `H` around each append to the store `S` it wraps. Clones share
/// the hook.
#[derive(Debug)]
pub struct Hooked<S, H> {
    inner: S,
    hook: Arc<H>,
}

impl<S: Clone, H> Clone for Hooked<S, H> {
    fn clone(&self) -> Self {
        Hooked { inner: self.inner.clone(), hook: self.hook.clone() }
    }
}

impl<S: EventStore, H: AppendHook> Hooked<S, H> {
    /// Wraps `inner` with `hook`.
    pub fn with_hook(inner: S, hook: H) -> Self {
        Hooked { inner, hook: Arc::new(hook) }
    }

    /// The hook.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    async fn around<T>(&self, stream: &StreamId, command: bool, append: BoxFuture<'_, Result<T>>) -> Result<T> {
        // `after` runs however this ends: the append done, `before` failing, or dropped midway.
        let _after = After { hook: &*self.hook, stream };
        self.hook.before(stream, command).await?;
        append.await
    }
}

/// Runs the hook's `after` when dropped.
struct After<'a, H: AppendHook> {
    hook: &'a H,
    stream: &'a StreamId,
}

impl<H: AppendHook> Drop for After<'_, H> {
    fn drop(&mut self) {
        self.hook.after(self.stream);
    }
}

/// An event store whose next `n` plain appends to streams of one category fail with
/// [`Error::Unavailable`] before reaching the store, as if the process died just before them;
/// everything else goes to the inner store. Clones share the count.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::memory::MemoryEventStore;
/// use eventloom_core::model::{ExpectedVersion, NewEvent};
/// use eventloom_core::store::EventStore;
/// use eventloom_core::testing::FailingAppends;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = FailingAppends::new(MemoryEventStore::new(), "journal");
/// store.fail_next(1);
/// let stream = StreamId::new("journal", "j-1").unwrap();
/// let event = || NewEvent { event_type: "Noted".into(), schema_version: 1, payload: "{}".into(),
///     metadata: Metadata::default() };
/// assert!(store.append(&stream, ExpectedVersion::Any, vec![event()]).await.is_err());
/// assert!(store.append(&stream, ExpectedVersion::Any, vec![event()]).await.is_ok());
/// assert_eq!(store.failed(), 1);
/// # });
/// ```
pub type FailingAppends<S> = Hooked<S, FailNext>;

/// The hook of [`FailingAppends`]: fails the next so many plain appends to one category.
#[derive(Debug)]
pub struct FailNext {
    category: Arc<str>,
    left: AtomicUsize,
    failed: AtomicUsize,
}

impl AppendHook for FailNext {
    fn before<'a>(&'a self, stream: &'a StreamId, command: bool) -> BoxFuture<'a, Result<()>> {
        let fails = !command
            && stream.category() == &*self.category
            && self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if fails {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        Box::pin(std::future::ready(if fails {
            Err(Error::unavailable_msg(format!("an append to {stream} failed on purpose")))
        } else {
            Ok(())
        }))
    }
}

impl<S: EventStore> Hooked<S, FailNext> {
    /// Wraps `inner`, failing no append until [`fail_next`](Self::fail_next).
    pub fn new(inner: S, category: &str) -> Self {
        Hooked::with_hook(
            inner,
            FailNext { category: category.into(), left: AtomicUsize::new(0), failed: AtomicUsize::new(0) },
        )
    }

    /// Fails the next `n` plain appends to the category.
    pub fn fail_next(&self, n: usize) {
        self.hook.left.store(n, Ordering::SeqCst);
    }

    /// How many appends it failed.
    pub fn failed(&self) -> usize {
        self.hook.failed.load(Ordering::SeqCst)
    }
}

impl<S: EventStore, H: AppendHook> crate::store::DelegateEventStore for Hooked<S, H> {
    type Inner = S;
    fn inner(&self) -> &S {
        &self.inner
    }
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>> {
        Box::pin(self.around(stream, false, self.inner.append(stream, expected, events)))
    }
    fn append_command<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        command: &'a CommandEntry,
    ) -> BoxFuture<'a, Result<Appended>> {
        Box::pin(self.around(stream, true, self.inner.append_command(stream, expected, events, command)))
    }
}
