-- Deletes up to $2 records of command ids made before $1 (microseconds since the epoch) that are
-- not kept, the oldest first, along the partial index `commands_expiry`. Rows locked by another
-- writer (another janitor's batch) are skipped rather than waited for.
WITH doomed AS (
       SELECT c.command_id FROM {schema}.commands c
        WHERE NOT c.kept AND c.recorded_at < timestamptz 'epoch' + $1::int8 * interval '1 microsecond'
        ORDER BY c.recorded_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
DELETE FROM {schema}.commands c USING doomed d WHERE c.command_id = d.command_id
