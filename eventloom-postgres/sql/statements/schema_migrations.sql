-- The migrations applied in the schema, in order, with their names and when they were applied
-- (microseconds since the epoch).
SELECT version, name, (extract(epoch FROM applied_at) * 1000000)::bigint AS applied_micros
  FROM {schema}.migrations ORDER BY version
