-- As list_first.sql (sort keys from $7 up to $8), for the entries after the entry (sort key $4, view id $5), up to $6.
SELECT s.live, i.sort_key, i.view_id, v.view::text
  FROM {schema}.projection_status s
  LEFT JOIN LATERAL (SELECT x.sort_key, x.view_id FROM {schema}.view_index x
                      WHERE x.projection = s.projection AND x.generation = s.live
                        AND x.name = $2 AND x.value = $3 AND (x.sort_key, x.view_id) > ($4, $5)
                        AND ($7::text IS NULL OR x.sort_key >= $7)
                        AND ($8::text IS NULL OR x.sort_key < $8)
                      ORDER BY x.sort_key, x.view_id LIMIT $6) i ON true
  LEFT JOIN {schema}.views v ON v.projection = s.projection AND v.generation = s.live AND v.id = i.view_id
 WHERE s.projection = $1 ORDER BY i.sort_key, i.view_id
