-- Projector leases and views. `{schema}` is replaced by the store's schema name.

-- The fencing token of each lease: bumped under the lease's advisory lock, so it only grows.
CREATE TABLE IF NOT EXISTS {schema}.leases (
    name text PRIMARY KEY,
    token bigint NOT NULL
);

-- Views as JSON documents, by projection and id.
CREATE TABLE IF NOT EXISTS {schema}.views (
    projection text NOT NULL,
    id text NOT NULL,
    view jsonb NOT NULL,
    PRIMARY KEY (projection, id)
);

-- Each projection's checkpoint (NULL before the first event) and the highest fencing token
-- that wrote it.
CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    projection text PRIMARY KEY,
    transaction_id xid8,
    sequence bigint,
    fencing_token bigint NOT NULL DEFAULT 0
);

-- A batch of view writes and the new checkpoint, in one round-trip and one transaction, only
-- if the checkpoint is still `p_expected_*` (NULL, NULL for none) and `p_token` is not older
-- than the highest seen. Returns status 0 (written), 1 (checkpoint moved: the actual one) or
-- 2 (fenced: the highest token).
CREATE OR REPLACE FUNCTION {schema}.commit_views(
    p_projection text,
    p_expected_tx text,
    p_expected_seq bigint,
    p_checkpoint_tx text,
    p_checkpoint_seq bigint,
    p_token bigint,
    p_ids text[],
    p_views text[]
) RETURNS TABLE (status integer, actual_tx text, actual_seq bigint, highest bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_tx xid8;
    v_seq bigint;
    v_token bigint;
BEGIN
    INSERT INTO {schema}.checkpoints (projection) VALUES (p_projection) ON CONFLICT (projection) DO NOTHING;
    SELECT c.transaction_id, c.sequence, c.fencing_token INTO v_tx, v_seq, v_token
        FROM {schema}.checkpoints c WHERE c.projection = p_projection FOR UPDATE;
    IF p_token < v_token THEN
        RETURN QUERY SELECT 2, v_tx::text, v_seq, v_token;
        RETURN;
    END IF;
    IF v_tx IS DISTINCT FROM p_expected_tx::xid8 OR v_seq IS DISTINCT FROM p_expected_seq THEN
        RETURN QUERY SELECT 1, v_tx::text, v_seq, v_token;
        RETURN;
    END IF;
    DELETE FROM {schema}.views v
        USING unnest(p_ids, p_views) AS u(id, view)
        WHERE u.view IS NULL AND v.projection = p_projection AND v.id = u.id;
    INSERT INTO {schema}.views AS v (projection, id, view)
        SELECT p_projection, u.id, u.view::jsonb FROM unnest(p_ids, p_views) AS u(id, view)
        WHERE u.view IS NOT NULL
        ON CONFLICT (projection, id) DO UPDATE SET view = excluded.view;
    UPDATE {schema}.checkpoints SET transaction_id = p_checkpoint_tx::xid8, sequence = p_checkpoint_seq,
        fencing_token = p_token
        WHERE projection = p_projection;
    RETURN QUERY SELECT 0, p_checkpoint_tx, p_checkpoint_seq, p_token;
END;
$$;

-- Deletes a projection's views and checkpoint unless `p_token` is older than the highest seen.
-- Returns 0 (reset) or 2 (fenced: the highest token).
CREATE OR REPLACE FUNCTION {schema}.reset_views(p_projection text, p_token bigint)
RETURNS TABLE (status integer, highest bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_token bigint;
BEGIN
    INSERT INTO {schema}.checkpoints (projection) VALUES (p_projection) ON CONFLICT (projection) DO NOTHING;
    SELECT c.fencing_token INTO v_token FROM {schema}.checkpoints c WHERE c.projection = p_projection FOR UPDATE;
    IF p_token < v_token THEN
        RETURN QUERY SELECT 2, v_token;
        RETURN;
    END IF;
    DELETE FROM {schema}.views WHERE projection = p_projection;
    UPDATE {schema}.checkpoints SET transaction_id = NULL, sequence = NULL, fencing_token = p_token
        WHERE projection = p_projection;
    RETURN QUERY SELECT 0, p_token;
END;
$$;
