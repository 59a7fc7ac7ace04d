-- The relation `$1` (a qualified, quoted name): its kind ('r' for a table) and each column
-- with its type. No row when there is no such relation.
SELECT c.relkind::text AS kind, a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_class c
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.oid = to_regclass($1)
 ORDER BY a.attnum
