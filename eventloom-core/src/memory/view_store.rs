use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use crate::store::BoxFuture;

use super::{read, write};
use crate::store::{DeadLetterSelection, IndexedView, Refusal, ViewChangeHub, ViewChanges, Written};
use crate::{
    DeadLetter, Error, Generation, IndexKey, ListCursor, OrderRange, Position, ProjectionStatus, ProjectionStop,
    Result, ViewCommit, ViewPage, ViewStore,
};

/// A [`ViewStore`] in process memory. Clones share the same store. Its writes wake the waits
/// of readers on it directly ([`ViewStore::changes`]).
///
/// # Examples
///
/// ```
/// use eventloom_core::{Position, memory::MemoryViewStore, store::{Refusal, ViewCommit, ViewStore, ViewWrite}};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let views = MemoryViewStore::default();
/// let generation = views.begin_generation("counts", 1, 0).await.unwrap().unwrap();
/// let commit = ViewCommit {
///     generation: generation.id,
///     expected: None,
///     checkpoint: Position::new(1, 1),
///     fencing_token: 0,
///     views: vec![ViewWrite::set("a", "1")],
///     dead_letters: Vec::new(),
///     resolved: Vec::new(),
/// };
/// views.commit("counts", commit.clone()).await.unwrap().unwrap();
/// // A replay of the same batch is refused and changes nothing.
/// let replay = views.commit("counts", commit).await.unwrap();
/// assert!(matches!(replay, Err(Refusal::CheckpointMoved { .. })));
/// views.go_live("counts", generation.id, 0).await.unwrap().unwrap();
/// assert_eq!(views.read_views("counts", &["a".into()]).await.unwrap(), vec![Some("1".into())]);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryViewStore {
    projections: Arc<RwLock<HashMap<String, ProjectionState>>>,
    changes: ViewChangeHub,
}

#[derive(Debug, Default)]
struct ProjectionState {
    highest_token: u64,
    last_generation: u64,
    live: Option<u64>,
    building: Option<u64>,
    stopped: Option<ProjectionStop>,
    generations: HashMap<u64, GenerationState>,
}

#[derive(Debug, Default)]
struct GenerationState {
    version: u32,
    checkpoint: Option<Position>,
    views: HashMap<String, String>,
    /// Per list: (sort key, view id), in order.
    indexes: HashMap<IndexKey, BTreeSet<(String, String)>>,
    dead_letters: Vec<DeadLetter>,
}

impl ProjectionState {
    fn check_token(&self, token: u64) -> Written {
        if token < self.highest_token {
            return Err(Refusal::Fenced { token, highest: self.highest_token });
        }
        Ok(())
    }

    fn begin(&mut self, version: u32, fencing_token: u64) -> Written<Generation> {
        self.check_token(fencing_token)?;
        self.highest_token = fencing_token;
        if let Some(old) = self.building.take() {
            self.generations.remove(&old);
        }
        self.last_generation += 1;
        let id = self.last_generation;
        self.generations.insert(id, GenerationState { version, ..GenerationState::default() });
        self.building = Some(id);
        Ok(Generation { id, version, checkpoint: None })
    }

    fn commit(&mut self, commit: ViewCommit) -> Written {
        self.check_token(commit.fencing_token)?;
        let current = Some(commit.generation);
        let gone = Refusal::GenerationGone { generation: commit.generation };
        if self.live != current && self.building != current {
            return Err(gone);
        }
        self.highest_token = commit.fencing_token;
        let generation = self.generations.get_mut(&commit.generation).ok_or(gone)?;
        if generation.checkpoint != commit.expected {
            return Err(Refusal::CheckpointMoved { expected: commit.expected, actual: generation.checkpoint });
        }
        for write in commit.views {
            for entry in write.leave {
                if let Some(list) = generation.indexes.get_mut(&entry.key) {
                    list.remove(&(entry.order, write.id.clone()));
                    if list.is_empty() {
                        generation.indexes.remove(&entry.key);
                    }
                }
            }
            for entry in write.join {
                generation.indexes.entry(entry.key).or_default().insert((entry.order, write.id.clone()));
            }
            match write.view {
                Some(json) => generation.views.insert(write.id, json),
                None => generation.views.remove(&write.id),
            };
        }
        generation.checkpoint = Some(commit.checkpoint);
        if !commit.resolved.is_empty() {
            generation.dead_letters.retain(|letter| !commit.resolved.contains(&letter.position));
        }
        generation.dead_letters.extend(commit.dead_letters);
        Ok(())
    }

    fn go_live(&mut self, generation: u64, fencing_token: u64) -> Written {
        self.check_token(fencing_token)?;
        if self.live == Some(generation) {
            return Ok(());
        }
        if self.building != Some(generation) {
            return Err(Refusal::GenerationGone { generation });
        }
        let built = self.generations.get(&generation).and_then(|g| g.checkpoint);
        let live = self.live.and_then(|id| self.generations.get(&id)).and_then(|g| g.checkpoint);
        if built < live {
            return Err(Refusal::CheckpointMoved { expected: built, actual: live });
        }
        self.highest_token = fencing_token;
        if let Some(old) = self.live.replace(generation) {
            self.generations.remove(&old);
        }
        self.building = None;
        Ok(())
    }

    fn record_stop(&mut self, stop: Option<&ProjectionStop>, fencing_token: u64) -> Written {
        self.check_token(fencing_token)?;
        self.highest_token = fencing_token;
        self.stopped = stop.cloned();
        Ok(())
    }

    fn remove_dead_letters(&mut self, which: &DeadLetterSelection, fencing_token: u64) -> Written<u64> {
        self.check_token(fencing_token)?;
        self.highest_token = fencing_token;
        let Some(live) = self.live.and_then(|id| self.generations.get_mut(&id)) else { return Ok(0) };
        let before = live.dead_letters.len();
        live.dead_letters.retain(|letter| !which.selects(letter.position));
        Ok((before - live.dead_letters.len()) as u64)
    }

    fn generation(&self, id: u64) -> Option<Generation> {
        self.generations.get(&id).map(|g| Generation { id, version: g.version, checkpoint: g.checkpoint })
    }
}

/// The live generation of `projection`, or [`Error::NotBuilt`].
fn live<'a>(projections: &'a HashMap<String, ProjectionState>, projection: &str) -> Result<&'a GenerationState> {
    projections
        .get(projection)
        .and_then(|s| s.live.and_then(|id| s.generations.get(&id)))
        .ok_or_else(|| Error::NotBuilt { projection: projection.to_owned() })
}

impl MemoryViewStore {
    /// Forgets every view, checkpoint and generation, as a Redis that restarted without
    /// persistence would: for testing how projectors recover.
    ///
    /// # Examples
    ///
    /// ```
    /// use eventloom_core::{memory::MemoryViewStore, store::ViewStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let views = MemoryViewStore::default();
    /// views.begin_generation("p", 1, 0).await.unwrap().unwrap();
    /// views.clear();
    /// assert_eq!(views.status("p").await.unwrap().building, None);
    /// # });
    /// ```
    pub fn clear(&self) {
        write(&self.projections).clear();
        self.changes.changed_all();
    }

    /// Tells waits on `projection` of a write that was made.
    fn told<T>(&self, projection: &str, written: Written<T>) -> Result<Written<T>> {
        if written.is_ok() {
            self.changes.changed(projection);
        }
        Ok(written)
    }
}

impl ViewStore for MemoryViewStore {
    fn status<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<ProjectionStatus>> {
        Box::pin(async move {
            let map = read(&self.projections);
            Ok(map
                .get(projection)
                .map(|s| ProjectionStatus {
                    live: s.live.and_then(|id| s.generation(id)),
                    building: s.building.and_then(|id| s.generation(id)),
                    stopped: s.stopped.clone(),
                })
                .unwrap_or_default())
        })
    }

    fn begin_generation<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<Generation>>> {
        Box::pin(async move {
            let mut map = write(&self.projections);
            Ok(map.entry(projection.to_owned()).or_default().begin(version, fencing_token))
        })
    }

    fn load_views<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        Box::pin(async move {
            let map = read(&self.projections);
            let state = map.get(projection).and_then(|s| s.generations.get(&generation));
            Ok(ids.iter().map(|id| state.and_then(|s| s.views.get(id).cloned())).collect())
        })
    }

    fn commit<'a>(&'a self, projection: &'a str, commit: ViewCommit) -> BoxFuture<'a, Result<Written>> {
        Box::pin(async move {
            commit.validate()?;
            let written = write(&self.projections).entry(projection.to_owned()).or_default().commit(commit);
            self.told(projection, written)
        })
    }

    fn go_live<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        Box::pin(async move {
            let written =
                write(&self.projections).entry(projection.to_owned()).or_default().go_live(generation, fencing_token);
            self.told(projection, written)
        })
    }

    fn read_views<'a>(&'a self, projection: &'a str, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<String>>>> {
        Box::pin(async move {
            let map = read(&self.projections);
            let live = live(&map, projection)?;
            Ok(ids.iter().map(|id| live.views.get(id).cloned()).collect())
        })
    }

    fn list<'a>(
        &'a self,
        projection: &'a str,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ViewPage>> {
        Box::pin(async move {
            let map = read(&self.projections);
            let live = live(&map, projection)?;
            let Some(list) = live.indexes.get(key) else { return Ok(ViewPage::default()) };
            let mut entries = list
                .range((list_start(after, range), Bound::Unbounded))
                .take_while(|(order, _)| range.until().is_none_or(|until| order.as_str() < until));
            let mut page = ViewPage::default();
            for (order, id) in entries.by_ref().take(limit) {
                if let Some(json) = live.views.get(id) {
                    page.views.push((id.clone(), json.clone()));
                }
                page.next = Some(ListCursor { order: order.clone(), id: id.clone() });
            }
            if entries.next().is_none() {
                page.next = None;
            }
            Ok(page)
        })
    }

    fn count<'a>(&'a self, projection: &'a str, keys: &'a [IndexKey]) -> BoxFuture<'a, Result<Vec<u64>>> {
        Box::pin(async move {
            let map = read(&self.projections);
            let live = live(&map, projection)?;
            Ok(keys.iter().map(|key| live.indexes.get(key).map_or(0, |l| l.len() as u64)).collect())
        })
    }

    fn list_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        key: &'a IndexKey,
        range: &'a OrderRange,
        after: Option<&'a ListCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<IndexedView>>> {
        Box::pin(async move {
            let map = read(&self.projections);
            let Some(state) = map.get(projection).and_then(|s| s.generations.get(&generation)) else {
                return Ok(Vec::new());
            };
            let Some(list) = state.indexes.get(key) else { return Ok(Vec::new()) };
            let entries = list
                .range((list_start(after, range), Bound::Unbounded))
                .take_while(|(order, _)| range.until().is_none_or(|until| order.as_str() < until))
                .take(limit)
                .map(|(order, id)| IndexedView {
                    order: order.clone(),
                    id: id.clone(),
                    view: state.views.get(id).cloned(),
                });
            Ok(entries.collect())
        })
    }

    fn count_generation<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [IndexKey],
    ) -> BoxFuture<'a, Result<Vec<u64>>> {
        Box::pin(async move {
            let map = read(&self.projections);
            let state = map.get(projection).and_then(|s| s.generations.get(&generation));
            let count = |key: &IndexKey| state.and_then(|s| s.indexes.get(key)).map_or(0, |l| l.len() as u64);
            Ok(keys.iter().map(count).collect())
        })
    }

    fn dead_letters<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>>> {
        Box::pin(async move {
            let map = read(&self.projections);
            Ok(live(&map, projection).map(|g| g.dead_letters.clone()).unwrap_or_default())
        })
    }

    fn record_stop<'a>(
        &'a self,
        projection: &'a str,
        stop: Option<&'a ProjectionStop>,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written>> {
        Box::pin(async move {
            let written =
                write(&self.projections).entry(projection.to_owned()).or_default().record_stop(stop, fencing_token);
            self.told(projection, written)
        })
    }

    fn projections<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut names: Vec<String> = read(&self.projections).keys().cloned().collect();
            names.sort_unstable();
            Ok(names)
        })
    }

    fn remove_dead_letters<'a>(
        &'a self,
        projection: &'a str,
        which: &'a DeadLetterSelection,
        fencing_token: u64,
    ) -> BoxFuture<'a, Result<Written<u64>>> {
        Box::pin(async move {
            let mut map = write(&self.projections);
            // A projection the store does not hold has nothing to remove, and gains no entry.
            Ok(map.get_mut(projection).map_or(Ok(0), |state| state.remove_dead_letters(which, fencing_token)))
        })
    }

    fn changes(&self, projection: &str) -> Option<ViewChanges> {
        Some(self.changes.subscribe(projection))
    }
}

/// Where a listing starts: after the cursor or at the range's start, whichever is later. The
/// range's first entry sorts before every other of its sort key (the empty id).
fn list_start(after: Option<&ListCursor>, range: &OrderRange) -> Bound<(String, String)> {
    match (after, range.from()) {
        (Some(cursor), Some(from)) if (from, "") > (cursor.order.as_str(), cursor.id.as_str()) => {
            Bound::Included((from.to_owned(), String::new()))
        }
        (Some(cursor), _) => Bound::Excluded((cursor.order.clone(), cursor.id.clone())),
        (None, Some(from)) => Bound::Included((from.to_owned(), String::new())),
        (None, None) => Bound::Unbounded,
    }
}
