-- As list_generation_first.sql (sort keys from $8 up to $9), for the entries after the entry
-- (sort key $5, view id $6), up to $7.
SELECT x.sort_key, x.view_id, v.view::text
  FROM {schema}.view_index x
  LEFT JOIN {schema}.views v ON v.projection = x.projection AND v.generation = x.generation AND v.id = x.view_id
 WHERE x.projection = $1 AND x.generation = $2 AND x.name = $3 AND x.value = $4
   AND (x.sort_key, x.view_id) > ($5, $6)
   AND ($8::text IS NULL OR x.sort_key >= $8)
   AND ($9::text IS NULL OR x.sort_key < $9)
 ORDER BY x.sort_key, x.view_id LIMIT $7
