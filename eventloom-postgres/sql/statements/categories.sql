-- Up to $2 categories (aggregate types) after $1, in order: a loose scan of the primary key of
-- `streams`, one probe per category found, whatever the number of streams.
WITH RECURSIVE found(category, n) AS (
    (SELECT s.category, 1::bigint FROM {schema}.streams s WHERE s.category > $1 ORDER BY s.category LIMIT 1)
    UNION ALL
    SELECT (SELECT s.category FROM {schema}.streams s WHERE s.category > f.category ORDER BY s.category LIMIT 1),
           f.n + 1
      FROM found f
     WHERE f.category IS NOT NULL AND f.n < $2::bigint
)
SELECT category FROM found WHERE category IS NOT NULL ORDER BY category
