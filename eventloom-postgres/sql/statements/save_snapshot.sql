-- Stores a snapshot of the stream ($1, $2) at version $3 (position $4, $5), unless one at a
-- higher or equal version is stored already.
INSERT INTO {schema}.snapshots AS s
  (category, stream_id, version, transaction_id, sequence, snapshot_version, state)
VALUES ($1, $2, $3, $4::text::xid8, $5, $6, $7::text::json)
ON CONFLICT (category, stream_id) DO UPDATE SET
  version = excluded.version, transaction_id = excluded.transaction_id,
  sequence = excluded.sequence, snapshot_version = excluded.snapshot_version,
  state = excluded.state
WHERE s.version < excluded.version
