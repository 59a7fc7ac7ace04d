use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{read, write};
use crate::{DeadLetter, Error, Position, Result, ViewCommit, ViewStore};

/// A [`ViewStore`] in process memory. Clones share the same store.
///
/// # Examples
///
/// ```
/// use cqrs_core::{MemoryViewStore, Position, ViewCommit, ViewStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let views = MemoryViewStore::default();
/// let commit = ViewCommit {
///     expected: None,
///     checkpoint: Position::new(1, 1),
///     fencing_token: 0,
///     views: vec![("a".into(), Some("1".into()))],
///     dead_letters: Vec::new(),
/// };
/// views.commit("counts", commit.clone()).await.unwrap();
/// // A replay of the same batch is refused and changes nothing.
/// assert!(views.commit("counts", commit).await.is_err());
/// assert_eq!(views.load_views("counts", &["a".into()]).await.unwrap(), vec![Some("1".into())]);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryViewStore {
    projections: Arc<RwLock<HashMap<String, ProjectionState>>>,
}

#[derive(Debug, Default)]
struct ProjectionState {
    views: HashMap<String, String>,
    dead_letters: Vec<DeadLetter>,
    checkpoint: Option<Position>,
    highest_token: u64,
}

fn check_token(projection: &str, state: &ProjectionState, token: u64) -> Result<()> {
    if token < state.highest_token {
        return Err(Error::Fenced { projection: projection.to_owned(), token, highest: state.highest_token });
    }
    Ok(())
}

#[async_trait]
impl ViewStore for MemoryViewStore {
    async fn load_views(&self, projection: &str, ids: &[String]) -> Result<Vec<Option<String>>> {
        let map = read(&self.projections);
        let state = map.get(projection);
        Ok(ids.iter().map(|id| state.and_then(|s| s.views.get(id).cloned())).collect())
    }

    async fn checkpoint(&self, projection: &str) -> Result<Option<Position>> {
        Ok(read(&self.projections).get(projection).and_then(|s| s.checkpoint))
    }

    async fn commit(&self, projection: &str, commit: ViewCommit) -> Result<()> {
        let mut map = write(&self.projections);
        let state = map.entry(projection.to_owned()).or_default();
        check_token(projection, state, commit.fencing_token)?;
        if state.checkpoint != commit.expected {
            return Err(Error::CheckpointMoved {
                projection: projection.to_owned(),
                expected: commit.expected,
                actual: state.checkpoint,
            });
        }
        state.highest_token = commit.fencing_token;
        for (id, view) in commit.views {
            match view {
                Some(json) => state.views.insert(id, json),
                None => state.views.remove(&id),
            };
        }
        state.checkpoint = Some(commit.checkpoint);
        state.dead_letters.extend(commit.dead_letters);
        Ok(())
    }

    async fn reset(&self, projection: &str, fencing_token: u64) -> Result<()> {
        let mut map = write(&self.projections);
        let state = map.entry(projection.to_owned()).or_default();
        check_token(projection, state, fencing_token)?;
        state.highest_token = fencing_token;
        state.views.clear();
        state.dead_letters.clear();
        state.checkpoint = None;
        Ok(())
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>> {
        Ok(read(&self.projections).get(projection).map(|s| s.dead_letters.clone()).unwrap_or_default())
    }
}
