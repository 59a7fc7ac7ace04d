-- Removes dead letters of the live generation of projection $1 under fencing token $2: all of
-- them when $3, else those whose event's position ("tx.seq") is among $4. Locks the status row
-- first, as every write of the projection does; a token below the highest seen removes nothing.
-- Answers whether the projection is known, the highest token (before this one raised it),
-- whether the token passed, and how many dead letters went.
WITH status AS (
    SELECT s.projection, s.live, s.fencing_token
      FROM {schema}.projection_status s WHERE s.projection = $1 FOR UPDATE
), passed AS (
    UPDATE {schema}.projection_status p SET fencing_token = $2
      FROM status WHERE p.projection = status.projection AND $2 >= status.fencing_token
    RETURNING p.projection
), removed AS (
    DELETE FROM {schema}.dead_letters d USING status, passed
     WHERE d.projection = status.projection AND d.generation = status.live
       AND ($3 OR d.letter->>'position' = ANY($4::text[]))
    RETURNING d.id
)
SELECT (SELECT count(*) FROM status) AS known,
       (SELECT fencing_token FROM status) AS highest,
       (SELECT count(*) FROM passed) AS passed,
       (SELECT count(*) FROM removed) AS removed
