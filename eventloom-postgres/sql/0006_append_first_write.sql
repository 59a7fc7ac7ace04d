-- `append` (the function behind `ExpectedVersion::Any`, and public SQL) refuses to run in a
-- transaction that already has a transaction id, that is, after another write of the caller's
-- transaction. Subscribers read events in (transaction id, sequence) order; the function takes
-- the stream's lock and reads its version before its first write, so that its transaction id
-- comes after the id of every version it follows. An id taken earlier may be lower than the id
-- of a version committed meanwhile: version v+1 would be delivered before v. Called as the
-- first write of its transaction (alone, or first in a `BEGIN ... COMMIT` block, before the
-- block's other writes; so once per transaction) it is safe, and unchanged.
CREATE OR REPLACE FUNCTION {schema}.append(
    p_category text,
    p_stream_id text,
    p_expected bigint,
    p_types text[],
    p_schema_versions integer[],
    p_payloads text[],
    p_metadata text[],
    p_command_id text
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
            (command_id, category, stream_id, first_version, last_version, transaction_id, sequence)
        VALUES (p_command_id, p_category, p_stream_id, v_current + 1, v_current + v_count,
                pg_current_xact_id(), v_sequence);
    END IF;

    RETURN QUERY SELECT 0, v_current + v_count, v_current + 1, v_current + v_count,
        pg_current_xact_id()::text, v_sequence;
END;
$$;
