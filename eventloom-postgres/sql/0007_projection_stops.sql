-- Why a projection stopped, recorded by its runner so that queries waiting for its views (in any
-- process) fail at once and health checks show it; NULL kind while it runs. The position is the
-- event it stopped at (NULL when no one event is to blame); the generation and its checkpoint
-- then tell readers whether a runner has written past it since.
ALTER TABLE {schema}.projection_status
    ADD COLUMN IF NOT EXISTS stop_kind text,
    ADD COLUMN IF NOT EXISTS stop_transaction_id xid8,
    ADD COLUMN IF NOT EXISTS stop_sequence bigint,
    ADD COLUMN IF NOT EXISTS stop_reason text,
    ADD COLUMN IF NOT EXISTS stop_generation bigint,
    ADD COLUMN IF NOT EXISTS stop_checkpoint_transaction_id xid8,
    ADD COLUMN IF NOT EXISTS stop_checkpoint_sequence bigint;

-- Records a projection's stop (or clears it, with a NULL kind) unless `p_token` is older than the
-- highest seen. Returns status 0 (recorded) or 2 (fenced: the highest token).
CREATE OR REPLACE FUNCTION {schema}.record_stop(
    p_projection text, p_token bigint, p_kind text, p_tx text, p_sequence bigint, p_reason text,
    p_generation bigint, p_checkpoint_tx text, p_checkpoint_sequence bigint)
RETURNS TABLE (status integer, highest bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_token bigint;
BEGIN
    INSERT INTO {schema}.projection_status (projection) VALUES (p_projection)
        ON CONFLICT (projection) DO NOTHING;
    SELECT s.fencing_token INTO v_token
        FROM {schema}.projection_status s WHERE s.projection = p_projection FOR UPDATE;
    IF p_token < v_token THEN
        RETURN QUERY SELECT 2, v_token;
        RETURN;
    END IF;
    UPDATE {schema}.projection_status
        SET fencing_token = p_token, stop_kind = p_kind, stop_transaction_id = p_tx::xid8,
            stop_sequence = p_sequence, stop_reason = p_reason, stop_generation = p_generation,
            stop_checkpoint_transaction_id = p_checkpoint_tx::xid8,
            stop_checkpoint_sequence = p_checkpoint_sequence
        WHERE projection = p_projection;
    RETURN QUERY SELECT 0, p_token;
END;
$$;
