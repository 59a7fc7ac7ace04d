-- Events relayed from another service's stream (the event bus): `relays` keeps, per source, the
-- last sequence relayed, and `append_relayed` appends one message's events and moves that record
-- in the same transaction, so a message relayed again (a restart, a second relay) appends
-- nothing.
--
-- The record is read before the append (a read takes no transaction id, so `append` stays the
-- first write of its transaction) and moved after it; the move is guarded by the sequence, so
-- of two relays of one message that both passed the read, the second waits on the first's row
-- lock and then finds the record moved: it raises, and its append rolls back with it (the
-- caller reads that as a duplicate on its retry).
CREATE TABLE IF NOT EXISTS {schema}.relays (
    source text PRIMARY KEY,
    sequence bigint NOT NULL CHECK (sequence > 0)
);

CREATE OR REPLACE FUNCTION {schema}.append_relayed(
    p_source text,
    p_sequence bigint,
    p_category text,
    p_stream_id text,
    p_types text[],
    p_schema_versions integer[],
    p_payloads text[],
    p_metadata text[]
) RETURNS TABLE (
    status integer,
    actual bigint,
    first_version bigint,
    last_version bigint,
    transaction_id text,
    sequence bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_relayed bigint;
    v_appended record;
BEGIN
    SELECT r.sequence INTO v_relayed FROM {schema}.relays r WHERE r.source = p_source;
    IF v_relayed IS NOT NULL AND v_relayed >= p_sequence THEN
        RETURN QUERY SELECT 3, v_relayed, NULL::bigint, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO v_appended FROM {schema}.append(
        p_category, p_stream_id, NULL, p_types, p_schema_versions, p_payloads, p_metadata, NULL);
    INSERT INTO {schema}.relays AS r (source, sequence) VALUES (p_source, p_sequence)
        ON CONFLICT (source) DO UPDATE SET sequence = excluded.sequence WHERE r.sequence < excluded.sequence;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % of % was relayed meanwhile', p_sequence, p_source
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN QUERY SELECT v_appended.status, v_appended.actual, v_appended.first_version, v_appended.last_version,
        v_appended.transaction_id, v_appended.sequence;
END;
$$;
