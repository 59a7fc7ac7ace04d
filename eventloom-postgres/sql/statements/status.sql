-- The projection $1's live and building generations (with their checkpoints) and its
-- recorded stop. No row for a projection never seen.
SELECT s.live, l.version AS live_version, l.transaction_id::text AS live_tx, l.sequence AS live_seq,
       s.building, b.version AS building_version, b.transaction_id::text AS building_tx,
       b.sequence AS building_seq,
       s.stop_kind, s.stop_transaction_id::text AS stop_tx, s.stop_sequence AS stop_seq, s.stop_reason,
       s.stop_generation, s.stop_checkpoint_transaction_id::text AS stop_checkpoint_tx,
       s.stop_checkpoint_sequence AS stop_checkpoint_seq
  FROM {schema}.projection_status s
  LEFT JOIN {schema}.generations l ON l.projection = s.projection AND l.generation = s.live
  LEFT JOIN {schema}.generations b ON b.projection = s.projection AND b.generation = s.building
 WHERE s.projection = $1
