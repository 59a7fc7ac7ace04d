-- The position of version $3 of the stream ($1, $2): for the error of a fold that failed on an
-- event fold_stream.sql lent without it.
SELECT transaction_id, sequence
  FROM {schema}.events
 WHERE category = $1 AND stream_id = $2 AND version = $3
