-- The number of entries of each index list (names $3, values $4) of the generation $2 of the
-- projection $1, in the order asked: one row per list (0 for a generation the store does not
-- hold). One statement, so every count is read from the same snapshot.
SELECT k.n, (SELECT count(*) FROM {schema}.view_index x
              WHERE x.projection = $1 AND x.generation = $2
                AND x.name = k.name AND x.value = k.value) AS entries
  FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS k(name, value, n)
 ORDER BY k.n
