-- The projection $1's live and building generations (with their checkpoints) and its
-- recorded stop. No row for a projection never seen.
SELECT s.live, l.version, l.transaction_id::text, l.sequence,
       s.building, b.version, b.transaction_id::text, b.sequence,
       s.stop_kind, s.stop_transaction_id::text, s.stop_sequence, s.stop_reason,
       s.stop_generation, s.stop_checkpoint_transaction_id::text, s.stop_checkpoint_sequence
  FROM {schema}.projection_status s
  LEFT JOIN {schema}.generations l ON l.projection = s.projection AND l.generation = s.live
  LEFT JOIN {schema}.generations b ON b.projection = s.projection AND b.generation = s.building
 WHERE s.projection = $1
