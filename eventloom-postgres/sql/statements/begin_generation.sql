-- See the function `begin_generation` (migration 0004).
SELECT status, generation_id, highest FROM {schema}.begin_generation($1, $2, $3)
