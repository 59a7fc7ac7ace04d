-- The event store. `{schema}` is replaced by the store's (validated, quoted) schema name.

-- One row per stream: its current version. Appends lock this row, so writers of one stream
-- serialize here and exactly one wins each version.
CREATE TABLE IF NOT EXISTS {schema}.streams (
    category text NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
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
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
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
    state jsonb NOT NULL,
    PRIMARY KEY (category, stream_id)
);

-- One append in one round-trip. `p_expected`: NULL for any version, 0 for no stream, n for
-- exactly n. Returns one row: status 0 (appended), 1 (conflict: `actual` holds the stream's
-- version) or 2 (the command id was already executed: the first outcome).
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

    IF v_count = 0 THEN
        SELECT s.version INTO v_current FROM {schema}.streams s
            WHERE s.category = p_category AND s.stream_id = p_stream_id;
        v_current := coalesce(v_current, 0);
        IF p_expected IS NOT NULL AND p_expected <> v_current THEN
            RETURN QUERY SELECT 1, v_current, NULL::bigint, NULL::bigint, NULL::text, NULL::bigint;
        ELSE
            RETURN QUERY SELECT 0, v_current, v_current + 1, v_current, '0'::text, 0::bigint;
        END IF;
        RETURN;
    END IF;

    IF p_expected IS NULL THEN
        INSERT INTO {schema}.streams AS s (category, stream_id, version)
            VALUES (p_category, p_stream_id, v_count)
            ON CONFLICT (category, stream_id) DO UPDATE SET version = s.version + v_count
            RETURNING s.version - v_count INTO v_current;
    ELSIF p_expected = 0 THEN
        INSERT INTO {schema}.streams (category, stream_id, version)
            VALUES (p_category, p_stream_id, v_count)
            ON CONFLICT (category, stream_id) DO NOTHING;
        IF NOT FOUND THEN
            SELECT s.version INTO v_current FROM {schema}.streams s
                WHERE s.category = p_category AND s.stream_id = p_stream_id;
            RETURN QUERY SELECT 1, coalesce(v_current, 0), NULL::bigint, NULL::bigint, NULL::text, NULL::bigint;
            RETURN;
        END IF;
        v_current := 0;
    ELSE
        UPDATE {schema}.streams s SET version = p_expected + v_count
            WHERE s.category = p_category AND s.stream_id = p_stream_id AND s.version = p_expected;
        IF NOT FOUND THEN
            SELECT s.version INTO v_current FROM {schema}.streams s
                WHERE s.category = p_category AND s.stream_id = p_stream_id;
            RETURN QUERY SELECT 1, coalesce(v_current, 0), NULL::bigint, NULL::bigint, NULL::text, NULL::bigint;
            RETURN;
        END IF;
        v_current := p_expected;
    END IF;

    WITH inserted AS (
        INSERT INTO {schema}.events
            (category, stream_id, version, event_type, schema_version, payload, metadata)
        SELECT p_category, p_stream_id, v_current + u.n, u.t, u.v, u.p::jsonb, u.m::jsonb
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
