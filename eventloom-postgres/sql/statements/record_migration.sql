-- Migration $1 (named $2) applied.
INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2)
