-- The first page of one index list ($2, $3) of the projection $1's live generation, in order:
-- up to $4 entries (the caller asks one more than it returns, to know whether more follow),
-- each with its view (NULL when the view is missing), listing only sort keys from $5
-- (inclusive) up to $6 (exclusive), either NULL for no bound. One row with NULL entry columns when the
-- list has no entries; no row, or a NULL `live`, when nothing is live. The lateral subquery is
-- a range scan of `view_index`'s primary key.
SELECT s.live, i.sort_key, i.view_id, v.view::text
  FROM {schema}.projection_status s
  LEFT JOIN LATERAL (SELECT x.sort_key, x.view_id FROM {schema}.view_index x
                      WHERE x.projection = s.projection AND x.generation = s.live
                        AND x.name = $2 AND x.value = $3
                        AND ($5::text IS NULL OR x.sort_key >= $5)
                        AND ($6::text IS NULL OR x.sort_key < $6)
                      ORDER BY x.sort_key, x.view_id LIMIT $4) i ON true
  LEFT JOIN {schema}.views v ON v.projection = s.projection AND v.generation = s.live AND v.id = i.view_id
 WHERE s.projection = $1 ORDER BY i.sort_key, i.view_id
