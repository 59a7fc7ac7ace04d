-- Retention of command ids: every row of `commands` says when it was recorded and whether it is
-- kept until forgotten, so that `expire_commands` can delete the old ones that are not kept.
--
-- `recorded_at`: the engine's clock for the commands it executes, the server's `now()` for a plain
-- append carrying a command id. Rows from before this migration get the time of the migration
-- (a non-volatile default is evaluated once, when the column is added, without rewriting the
-- table), so they expire one retention after the upgrade, not at once.
-- `kept`: set for the commands of process managers (`ExecuteOptions::keep_command_id`); false for
-- every row from before.
--
-- `commands_expiry` is the index of the expiry scan (the oldest rows not kept first); a partial
-- index, so kept rows cost it nothing. Built here without CONCURRENTLY (migrations run in a
-- transaction): on a large `commands` table, keyed appends wait while it builds.
--
-- `append` gets the time and the flag as a tenth and an eleventh argument, NULL and false by
-- default, so that calls with the nine arguments of migration 8 still work (and record the
-- server's time, not kept). The function is otherwise the one of migration 8.
ALTER TABLE {schema}.commands ADD COLUMN IF NOT EXISTS recorded_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE {schema}.commands ADD COLUMN IF NOT EXISTS kept boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS commands_expiry ON {schema}.commands (recorded_at) WHERE NOT kept;

DROP FUNCTION IF EXISTS {schema}.append(text, text, bigint, text[], integer[], text[], text[], text, text);

CREATE OR REPLACE FUNCTION {schema}.append(
    p_category text,
    p_stream_id text,
    p_expected bigint,
    p_types text[],
    p_schema_versions integer[],
    p_payloads text[],
    p_metadata text[],
    p_command_id text,
    p_fingerprint text DEFAULT NULL,
    p_recorded_at timestamptz DEFAULT NULL,
    p_kept boolean DEFAULT false
) RETURNS TABLE (
    status integer,
    actual bigint,
    first_version bigint,
    last_version bigint,
    transaction_id text,
    sequence bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := coalesce(cardinality(p_types), 0);
    v_current bigint;
    v_sequence bigint;
BEGIN
    -- The events' order is their transaction id's: an id taken before the stream's lock (by an
    -- earlier statement of the caller's transaction) may be lower than the id of a version
    -- committed meanwhile, and the new version would be delivered before the one it follows.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append must be the first write of its transaction: this transaction already has id %, '
            'and events appended under it could be delivered before events committed meanwhile',
            pg_current_xact_id_if_assigned()
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'Call append in a transaction of its own, or before any other write of the transaction.';
    END IF;

    IF p_command_id IS NOT NULL THEN
        RETURN QUERY
            SELECT 2, c.last_version, c.first_version, c.last_version, c.transaction_id::text, c.sequence
            FROM {schema}.commands c WHERE c.command_id = p_command_id;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext(p_category), hashtext(p_stream_id));
    SELECT e.version INTO v_current FROM {schema}.events e
        WHERE e.category = p_category AND e.stream_id = p_stream_id
        ORDER BY e.version DESC LIMIT 1;
    v_current := coalesce(v_current, 0);

    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RETURN QUERY SELECT 1, v_current, NULL::bigint, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF v_count = 0 THEN
        RETURN QUERY SELECT 0, v_current, v_current + 1, v_current, '0'::text, 0::bigint;
        RETURN;
    END IF;
    WITH inserted AS (
        INSERT INTO {schema}.events
            (category, stream_id, version, event_type, schema_version, payload, metadata)
        SELECT p_category, p_stream_id, v_current + u.n, u.t, u.v, u.p::json, u.m::json
        FROM unnest(p_types, p_schema_versions, p_payloads, p_metadata) WITH ORDINALITY AS u(t, v, p, m, n)
        ORDER BY u.n
        RETURNING {schema}.events.sequence
    )
    SELECT max(i.sequence) INTO v_sequence FROM inserted i;

    -- After the events, as the exact-version statement does: both take the row locks of
    -- `events`, then `streams`, then `commands`, in that order, so they cannot deadlock.
    IF v_current = 0 THEN
        INSERT INTO {schema}.streams (category, stream_id) VALUES (p_category, p_stream_id)
            ON CONFLICT (category, stream_id) DO NOTHING;
    END IF;

    IF p_command_id IS NOT NULL THEN
        INSERT INTO {schema}.commands
            (command_id, category, stream_id, first_version, last_version, transaction_id, sequence, fingerprint,
             recorded_at, kept)
        VALUES (p_command_id, p_category, p_stream_id, v_current + 1, v_current + v_count,
                pg_current_xact_id(), v_sequence, p_fingerprint, coalesce(p_recorded_at, now()),
                coalesce(p_kept, false));
    END IF;

    RETURN QUERY SELECT 0, v_current + v_count, v_current + 1, v_current + v_count,
        pg_current_xact_id()::text, v_sequence;
END;
$$;
