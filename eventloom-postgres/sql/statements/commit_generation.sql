-- See the function `commit_generation` (migration 0013: the form with `p_resolved`, $19).
SELECT status, actual_tx, actual_seq, highest
  FROM {schema}.commit_generation($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
