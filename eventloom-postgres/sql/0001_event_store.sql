-- The event store. `{schema}` is replaced by the store's (validated, quoted) schema name.

-- One row per stream, written with its first event: lists the streams of a category.
CREATE TABLE IF NOT EXISTS {schema}.streams (
    category text NOT NULL,
    stream_id text NOT NULL,
    PRIMARY KEY (category, stream_id)
);

-- Every event. The order subscribers see is (transaction_id, sequence): the writing
-- transaction's id, then the sequence number drawn inside it. Readers only read below the
-- oldest transaction still running (pg_snapshot_xmin), so a transaction that commits late can
-- never be skipped (see docs: "the PostgreSQL adapter").
CREATE TABLE IF NOT EXISTS {schema}.events (
    sequence bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    category text NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    event_type text NOT NULL,
    schema_version integer NOT NULL,
    -- json, not jsonb: kept byte for byte, cheaper to write and to read back; the store never
    -- looks inside (projections do).
    payload json NOT NULL,
    metadata json NOT NULL,
    PRIMARY KEY (category, stream_id, version)
);

CREATE INDEX IF NOT EXISTS events_in_order ON {schema}.events (transaction_id, sequence);

-- The outcome of every append that carried a command id: a second append under the same id
-- is impossible (primary key), across processes.
CREATE TABLE IF NOT EXISTS {schema}.commands (
    command_id text PRIMARY KEY,
    category text NOT NULL,
    stream_id text NOT NULL,
    first_version bigint NOT NULL,
    last_version bigint NOT NULL,
    transaction_id xid8 NOT NULL,
    sequence bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.snapshots (
    category text NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    transaction_id xid8 NOT NULL,
    sequence bigint NOT NULL,
    snapshot_version integer NOT NULL,
    state json NOT NULL,
    PRIMARY KEY (category, stream_id)
);

-- One append in one round-trip. `p_expected`: NULL for any version, 0 for no stream, n for
-- exactly n. Returns one row: status 0 (appended), 1 (conflict: `actual` holds the stream's
-- version) or 2 (the command id was already executed: the first outcome).
--
-- Writers of one stream queue on a transaction-scoped advisory lock (the two-key form, apart
-- from the one-key locks of leases and migrations), which is released only after the holder's
-- commit is visible; the stream's version is then read fresh. No row is updated per append.
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
    IF p_command_id IS NOT NULL THEN
        RETURN QUERY
            SELECT 2, c.last_version, c.first_version, c.last_version, c.transaction_id::text, c.sequence
            FROM {schema}.commands c WHERE c.command_id = p_command_id;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext(p_category), hashtext(p_stream_id));
    SELECT max(e.version) INTO v_current FROM {schema}.events e
        WHERE e.category = p_category AND e.stream_id = p_stream_id;
    v_current := coalesce(v_current, 0);

    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RETURN QUERY SELECT 1, v_current, NULL::bigint, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF v_count = 0 THEN
        RETURN QUERY SELECT 0, v_current, v_current + 1, v_current, '0'::text, 0::bigint;
        RETURN;
    END IF;
    IF v_current = 0 THEN
        INSERT INTO {schema}.streams (category, stream_id) VALUES (p_category, p_stream_id)
            ON CONFLICT (category, stream_id) DO NOTHING;
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
