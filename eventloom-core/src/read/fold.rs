//! One batch as a projection folds it, fast in one go or carefully event by event.

use std::collections::HashMap;

use super::partition::Partition;
use super::projector::Target;
use crate::{
    DeadLetter, Error, EventEnvelope, EventOf, EventSet, IndexEntry, PoisonPolicy, Position, Projection, RecordedEvent,
    Result, Upcasters, ViewCommit, ViewWrite, stored_view_id,
};

/// The upcasters of each category (aggregate type), and those of the categories without their
/// own: how a runner decodes the events of several aggregates.
#[derive(Debug, Clone, Default)]
pub(crate) struct CategoryUpcasters {
    fallback: Upcasters,
    by_category: HashMap<String, Upcasters>,
}

impl CategoryUpcasters {
    /// Sets the upcasters of the categories without their own.
    pub(crate) fn set_fallback(&mut self, upcasters: Upcasters) {
        self.fallback = upcasters;
    }

    /// Sets the upcasters of one category.
    pub(crate) fn set(&mut self, category: impl Into<String>, upcasters: Upcasters) {
        self.by_category.insert(category.into(), upcasters);
    }

    /// The upcasters the events of `category` go through.
    pub(crate) fn of(&self, category: &str) -> &Upcasters {
        self.by_category.get(category).unwrap_or(&self.fallback)
    }

    /// Routes a stored event by (category, type name once upcast): `None` when `E` has no such
    /// category or `handles` declines the type, without parsing the payload; otherwise the
    /// event decoded with its category's upcasters.
    pub(crate) fn route<E: EventSet>(
        &self,
        raw: &RecordedEvent,
        handles: impl FnOnce(&str, &str) -> bool,
    ) -> Option<Result<EventEnvelope<E::Event>>> {
        let category = raw.stream.category();
        if !E::CATEGORIES.contains(&category) {
            return None;
        }
        let upcasters = self.of(category);
        let (event_type, _) = upcasters.resolve(&raw.event_type, raw.schema_version);
        if !handles(category, event_type) {
            return None;
        }
        Some(E::decode(raw, upcasters).map(|event| EventEnvelope {
            stream: raw.stream.clone(),
            version: raw.version,
            position: raw.position,
            event,
            metadata: raw.metadata.clone(),
        }))
    }
}

/// A dead letter for `raw`.
pub(crate) fn dead_letter(raw: &RecordedEvent, reason: String) -> DeadLetter {
    DeadLetter {
        position: raw.position,
        stream: raw.stream.clone(),
        version: raw.version,
        event_type: raw.event_type.to_string(),
        reason,
    }
}

/// One batch as a projection folds it: the decoded events in order, the views they change (by
/// stored id) as loaded, and what failed on the way.
pub(super) struct Fold<P: Projection> {
    /// The position of the batch's last event.
    pub(super) checkpoint: Position,
    pub(super) ids: Vec<String>,
    pub(super) slots: HashMap<String, usize>,
    /// Each event with the slot of the view it changes.
    pub(super) events: Vec<(usize, EventEnvelope<EventOf<P>>)>,
    /// The views as stored, by slot.
    pub(super) stored: Vec<Option<String>>,
    /// Events that did not decode, skipped under [`PoisonPolicy::DeadLetter`].
    pub(super) undecodable: Vec<DeadLetter>,
    /// The event reading stopped at, and why: one that does not decode under
    /// [`PoisonPolicy::Stop`], or one written by a newer release.
    pub(super) stop: Option<(Position, Error)>,
}

impl<P: Projection> Fold<P> {
    /// The events of `batch` the projection reads, decoded, and the ids of the views they
    /// change; an event that does not decode stops reading there or is set aside as a dead
    /// letter, by `poison` (one written by a newer release always stops it).
    ///
    /// A partition reads only the events of its streams, without decoding the others, and
    /// refuses (as it would an event that does not decode) one whose view is another
    /// partition's.
    pub(super) fn select(
        projection: &P,
        batch: &[RecordedEvent],
        upcasters: &CategoryUpcasters,
        poison: PoisonPolicy,
        partition: Option<Partition>,
    ) -> Self {
        let mut fold = Fold::new(batch);
        for raw in batch {
            if partition.is_some_and(|p| !p.owns(raw.stream.id())) {
                continue;
            }
            let Some(decoded) = upcasters.route::<P::Events>(raw, |c, t| projection.handles(c, t)) else {
                continue;
            };
            let decoded = match (decoded, partition) {
                (Ok(envelope), Some(partition)) => in_partition(projection, envelope, partition),
                (decoded, _) => decoded.map(|envelope| {
                    let id = projection.view_id(&envelope);
                    (envelope, id)
                }),
            };
            match decoded {
                Ok((envelope, id)) => {
                    if let Some(id) = id {
                        fold.add(stored_view_id(&id).into_owned(), envelope);
                    }
                }
                // Written by a newer release: never skipped, whatever the policy.
                Err(error @ Error::NewerSchema { .. }) => {
                    fold.stop = Some((raw.position, error));
                    break;
                }
                Err(error) if poison == PoisonPolicy::Stop => {
                    fold.stop = Some((raw.position, error));
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, position = %raw.position, "skipping an event that does not decode");
                    fold.undecodable.push(dead_letter(raw, error.to_string()));
                }
            }
        }
        fold
    }

    /// The events of this batch the fold reads, with the views they change.
    pub(super) fn new(batch: &[RecordedEvent]) -> Self {
        Fold {
            checkpoint: batch.last().map_or(Position::ZERO, |e| e.position),
            ids: Vec::new(),
            slots: HashMap::new(),
            events: Vec::new(),
            stored: Vec::new(),
            undecodable: Vec::new(),
            stop: None,
        }
    }

    pub(super) fn add(&mut self, id: String, envelope: EventEnvelope<EventOf<P>>) {
        let ids = &mut self.ids;
        let slot = *self.slots.entry(id).or_insert_with_key(|id| {
            ids.push(id.clone());
            ids.len() - 1
        });
        self.events.push((slot, envelope));
    }

    pub(super) fn commit(
        &self,
        target: &Target,
        token: u64,
        views: Vec<ViewWrite>,
        dead_letters: Vec<DeadLetter>,
    ) -> ViewCommit {
        ViewCommit {
            generation: target.generation,
            expected: target.checkpoint,
            checkpoint: self.checkpoint,
            fencing_token: token,
            views,
            dead_letters,
            resolved: Vec::new(),
        }
    }

    pub(super) fn decode_stored(&self, name: &str, slot: usize) -> Result<Option<P::View>> {
        decode_view::<P>(name, &self.ids[slot], self.stored[slot].as_deref())
    }

    /// Every view as stored, and its index entries, by slot.
    pub(super) fn stored_index(&self, projection: &P) -> Result<Stored<P::View>> {
        let mut views = Vec::with_capacity(self.ids.len());
        let mut before = Vec::with_capacity(self.ids.len());
        for slot in 0..self.ids.len() {
            let view = self.decode_stored(projection.name(), slot)?;
            before.push(view.as_ref().map(|v| fitted_index(projection, &self.ids[slot], v)).unwrap_or_default());
            views.push(view);
        }
        Ok(Stored { views, before })
    }

    /// The usual path: every event folded in one go; any failure is left to [`Fold::fold_each`].
    pub(super) fn fold_all(&self, projection: &P) -> Result<Vec<ViewWrite>> {
        let Stored { mut views, before } = self.stored_index(projection)?;
        for (slot, envelope) in &self.events {
            projection.apply(&mut views[*slot], envelope).map_err(|source| Error::Projection {
                projection: projection.name().to_owned(),
                position: envelope.position,
                source,
            })?;
        }
        let mut writes = Vec::with_capacity(self.ids.len());
        for (slot, (view, before)) in views.iter().zip(before).enumerate() {
            let json = view.as_ref().map(|v| encode_view::<P>(projection.name(), &self.ids[slot], v)).transpose()?;
            writes.push(write(projection, self.ids[slot].clone(), view.as_ref(), json, &before));
        }
        Ok(writes)
    }

    /// The careful path: events folded one at a time, each view checked after each event, so
    /// that the event that breaks it is found. Under [`PoisonPolicy::DeadLetter`] such an event
    /// is skipped and its view restored from its JSON before it (so `apply` need not undo what it
    /// did before failing); under [`PoisonPolicy::Stop`] folding stops there. Returns the writes
    /// and dead letters of the events before any stop, and the stop (its position and error).
    pub(super) fn fold_each(&self, projection: &P, poison: PoisonPolicy) -> Result<Folded> {
        let name = projection.name();
        let Stored { mut views, before } = self.stored_index(projection)?;
        // The JSON of each view after the last event that went through.
        let mut good: Vec<Option<String>> = self.stored.clone();
        let mut touched = vec![false; self.ids.len()];
        let mut dead_letters = self.undecodable.clone();
        let mut stop: Option<(Position, Error)> = None;
        for (slot, envelope) in &self.events {
            let (slot, id) = (*slot, &self.ids[*slot]);
            let checked = projection.apply(&mut views[slot], envelope).and_then(|()| {
                let json = views[slot].as_ref().map(|v| encode_view::<P>(name, id, v)).transpose()?;
                write(projection, id.clone(), views[slot].as_ref(), json.clone(), &before[slot]).validate()?;
                Ok(json)
            });
            match checked {
                Ok(json) => {
                    good[slot] = json;
                    touched[slot] = true;
                }
                Err(source) if poison == PoisonPolicy::Stop => {
                    let position = envelope.position;
                    stop = Some((position, Error::Projection { projection: name.to_owned(), position, source }));
                    break;
                }
                Err(source) => {
                    let reason = source.to_string();
                    tracing::warn!(%reason, position = %envelope.position, "skipping an event the projection failed on");
                    views[slot] = decode_view::<P>(name, id, good[slot].as_deref())?;
                    dead_letters.push(DeadLetter {
                        position: envelope.position,
                        stream: envelope.stream.clone(),
                        version: envelope.version,
                        event_type: P::Events::event_type(&envelope.event).name.to_owned(),
                        reason,
                    });
                }
            }
        }
        if let Some((at, _)) = &stop {
            dead_letters.retain(|d| d.position < *at);
        }
        dead_letters.sort_by_key(|d| d.position);
        let writes = (0..self.ids.len())
            .filter(|&slot| touched[slot])
            .map(|slot| {
                write(projection, self.ids[slot].clone(), views[slot].as_ref(), good[slot].take(), &before[slot])
            })
            .collect();
        Ok(Folded { writes, dead_letters, stop })
    }
}

/// An event of `partition`'s stream with the id of the view it changes, or the error that the
/// view is another partition's.
fn in_partition<P: Projection>(
    projection: &P,
    envelope: EventEnvelope<EventOf<P>>,
    partition: Partition,
) -> Result<(EventEnvelope<EventOf<P>>, Option<String>)> {
    let Some(id) = projection.view_id(&envelope) else { return Ok((envelope, None)) };
    let key = P::view_partition_key(&id);
    if partition.owns(&key) {
        return Ok((envelope, Some(id)));
    }
    let reason = format!(
        "view {id:?} is in partition {} of {}, but the event's stream {} is in partition {}: each view of a \
         partitioned projection must be written by the events of one partition (see Projection::view_partition_key)",
        super::partition::partition_of(&key, partition.count),
        partition.count,
        envelope.stream,
        partition.index
    );
    Err(Error::Projection {
        projection: projection.name().to_owned(),
        position: envelope.position,
        source: reason.into(),
    })
}

/// The views of a batch as stored, and their index entries, by slot.
pub(super) struct Stored<V> {
    pub(super) views: Vec<Option<V>>,
    pub(super) before: Vec<Vec<IndexEntry>>,
}

/// What [`Fold::fold_each`] found: the writes and dead letters of the events before any stop,
/// and the stop (the event's position and why).
pub(super) struct Folded {
    pub(super) writes: Vec<ViewWrite>,
    pub(super) dead_letters: Vec<DeadLetter>,
    pub(super) stop: Option<(Position, Error)>,
}

/// A view as the store gives it.
pub(super) fn decode_view<P: Projection>(name: &str, id: &str, json: Option<&str>) -> Result<Option<P::View>> {
    json.map(serde_json::from_str)
        .transpose()
        .map_err(|source| Error::Serde { what: format!("view {id:?} of projection {name}"), source })
}

/// A view as the store keeps it (refusing NaN and infinities).
pub(super) fn encode_view<P: Projection>(name: &str, id: &str, view: &P::View) -> Result<String> {
    crate::json::to_string(view)
        .map_err(|source| Error::Serde { what: format!("view {id:?} of projection {name}"), source })
}

/// The view's index entries as a store keeps them.
pub(super) fn fitted_index<P: Projection>(projection: &P, id: &str, view: &P::View) -> Vec<IndexEntry> {
    projection.index(id, view).into_iter().map(IndexEntry::into_fitted).collect()
}

/// The write of one view: its JSON, and the index entries it leaves and joins.
pub(super) fn write<P: Projection>(
    projection: &P,
    id: String,
    view: Option<&P::View>,
    json: Option<String>,
    before: &[IndexEntry],
) -> ViewWrite {
    let after = view.map(|v| fitted_index(projection, &id, v)).unwrap_or_default();
    let leave: Vec<IndexEntry> = before.iter().filter(|e| !after.contains(e)).cloned().collect();
    let join: Vec<IndexEntry> = after.into_iter().filter(|e| !before.contains(e)).collect();
    ViewWrite { id, view: json, leave, join }
}
