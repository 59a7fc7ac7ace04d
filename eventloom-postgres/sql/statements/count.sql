-- The number of entries of each index list (names $2, values $3) of the projection $1's live
-- generation, in the order asked. One statement, so every count is read from the same snapshot.
SELECT s.live, k.n, (SELECT count(*) FROM {schema}.view_index x
                      WHERE x.projection = s.projection AND x.generation = s.live
                        AND x.name = k.name AND x.value = k.value) AS entries
  FROM {schema}.projection_status s
  LEFT JOIN unnest($2::text[], $3::text[]) WITH ORDINALITY AS k(name, value, n) ON true
 WHERE s.projection = $1 ORDER BY k.n
