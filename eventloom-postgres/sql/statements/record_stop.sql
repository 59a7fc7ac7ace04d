-- See the function `record_stop` (migration 0007).
SELECT status, highest FROM {schema}.record_stop($1, $2, $3, $4, $5, $6, $7, $8, $9)
