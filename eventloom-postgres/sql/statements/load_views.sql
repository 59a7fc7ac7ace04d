-- The views $3 (ids) of the projection $1's generation $2 that exist.
SELECT id, view::text FROM {schema}.views WHERE projection = $1 AND generation = $2 AND id = ANY($3)
