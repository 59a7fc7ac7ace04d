-- The migrations applied in the schema.
SELECT version FROM {schema}.migrations
