-- The first entries of one index list ($3, $4) of the generation $2 of the projection $1 (live,
-- being built or kept: whichever the caller names), in order: up to $5 entries, each with its
-- view (NULL when the view is missing), listing only sort keys from $6 (inclusive) up to $7
-- (exclusive), either NULL for no bound. No row for a generation the store does not hold. A
-- range scan of `view_index`'s primary key.
SELECT x.sort_key, x.view_id, v.view::text
  FROM {schema}.view_index x
  LEFT JOIN {schema}.views v ON v.projection = x.projection AND v.generation = x.generation AND v.id = x.view_id
 WHERE x.projection = $1 AND x.generation = $2 AND x.name = $3 AND x.value = $4
   AND ($6::text IS NULL OR x.sort_key >= $6)
   AND ($7::text IS NULL OR x.sort_key < $7)
 ORDER BY x.sort_key, x.view_id LIMIT $5
