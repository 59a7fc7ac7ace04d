-- The lease's session advisory lock $1, if it is free.
SELECT pg_try_advisory_lock($1) AS locked
