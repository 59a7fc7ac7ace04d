-- See the function `go_live` (migration 0004).
SELECT status, highest, built_tx, built_seq, live_tx, live_seq FROM {schema}.go_live($1, $2, $3)
