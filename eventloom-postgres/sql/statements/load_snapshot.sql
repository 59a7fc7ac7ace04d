-- The snapshot of the stream ($1, $2), if any.
SELECT version, transaction_id::text, sequence, snapshot_version, state::text
  FROM {schema}.snapshots WHERE category = $1 AND stream_id = $2
