-- The views $2 (ids) of the projection $1's live generation. Queries find the live generation
-- in the same statement: no row, or a NULL `live`, means none is live.
SELECT s.live, v.id, v.view::text
  FROM {schema}.projection_status s
  LEFT JOIN {schema}.views v ON v.projection = s.projection AND v.generation = s.live AND v.id = ANY($2)
 WHERE s.projection = $1
