-- As list_first.sql (sort keys from $6 up to $7), for the entries after every entry of the sort key $4, up to $5.
SELECT s.live, i.sort_key, i.view_id, v.view::text
  FROM {schema}.projection_status s
  LEFT JOIN LATERAL (SELECT x.sort_key, x.view_id FROM {schema}.view_index x
                      WHERE x.projection = s.projection AND x.generation = s.live
                        AND x.name = $2 AND x.value = $3 AND x.sort_key > $4
                        AND ($6::text IS NULL OR x.sort_key >= $6)
                        AND ($7::text IS NULL OR x.sort_key < $7)
                      ORDER BY x.sort_key, x.view_id LIMIT $5) i ON true
  LEFT JOIN {schema}.views v ON v.projection = s.projection AND v.generation = s.live AND v.id = i.view_id
 WHERE s.projection = $1 ORDER BY i.sort_key, i.view_id
