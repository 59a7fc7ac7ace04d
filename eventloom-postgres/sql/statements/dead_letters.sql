-- The dead letters of the projection $1's live generation, oldest first.
SELECT d.letter::text
  FROM {schema}.projection_status s
  JOIN {schema}.dead_letters d ON d.projection = s.projection AND d.generation = s.live
 WHERE s.projection = $1 ORDER BY d.id
