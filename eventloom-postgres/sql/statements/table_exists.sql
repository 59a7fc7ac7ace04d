-- Whether the relation `$1` (a qualified, quoted name) exists.
SELECT to_regclass($1) IS NOT NULL AS present
