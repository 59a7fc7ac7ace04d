-- Events a projection skipped, recorded in the same transaction as the batch's checkpoint.
CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection text NOT NULL,
    letter json NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS dead_letters_by_projection ON {schema}.dead_letters (projection, id);

DROP FUNCTION IF EXISTS {schema}.commit_views(text, text, bigint, text, bigint, bigint, text[], text[]);

-- As in migration 2, plus the batch's dead letters (JSON), written with the checkpoint.
CREATE OR REPLACE FUNCTION {schema}.commit_views(
    p_projection text,
    p_expected_tx text,
    p_expected_seq bigint,
    p_checkpoint_tx text,
    p_checkpoint_seq bigint,
    p_token bigint,
    p_ids text[],
    p_views text[],
    p_dead_letters text[]
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
    INSERT INTO {schema}.dead_letters (projection, letter)
        SELECT p_projection, d.letter::json FROM unnest(p_dead_letters) WITH ORDINALITY AS d(letter, n) ORDER BY d.n;
    UPDATE {schema}.checkpoints SET transaction_id = p_checkpoint_tx::xid8, sequence = p_checkpoint_seq,
        fencing_token = p_token
        WHERE projection = p_projection;
    RETURN QUERY SELECT 0, p_checkpoint_tx, p_checkpoint_seq, p_token;
END;
$$;

-- As in migration 2, and the dead letters go too.
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
    DELETE FROM {schema}.dead_letters WHERE projection = p_projection;
    UPDATE {schema}.checkpoints SET transaction_id = NULL, sequence = NULL, fencing_token = p_token
        WHERE projection = p_projection;
    RETURN QUERY SELECT 0, p_token;
END;
$$;
