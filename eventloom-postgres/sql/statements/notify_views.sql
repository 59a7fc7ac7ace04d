-- One debounced notification per burst of view writes: NOTIFY on the channel $1 once per
-- projection name in $2 (the payload), in one transaction of its own after the writes'
-- commits.
SELECT count(pg_notify($1, p)) AS sent FROM unnest($2::text[]) AS p
