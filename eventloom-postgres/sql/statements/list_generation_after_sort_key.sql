-- As list_generation_first.sql (sort keys from $7 up to $8), for the entries after every entry
-- of the sort key $5, up to $6.
SELECT x.sort_key, x.view_id, v.view::text
  FROM {schema}.view_index x
  LEFT JOIN {schema}.views v ON v.projection = x.projection AND v.generation = x.generation AND v.id = x.view_id
 WHERE x.projection = $1 AND x.generation = $2 AND x.name = $3 AND x.value = $4
   AND x.sort_key > $5
   AND ($7::text IS NULL OR x.sort_key >= $7)
   AND ($8::text IS NULL OR x.sort_key < $8)
 ORDER BY x.sort_key, x.view_id LIMIT $6
