-- Dead letters resolved in the commit that applies their events again (a retry), so that
-- removing them and writing the views they change are one transaction. `{schema}` is replaced
-- by the store's schema name.
--
-- `commit_generation` gains a last parameter, `p_resolved`: the positions ("tx.seq", as the
-- letters' JSON holds them) of dead letters of the generation to delete, under the same checks
-- as the rest of the batch (a refused commit deletes none), before the batch's own dead letters
-- are inserted. Otherwise as in migration 4.

CREATE OR REPLACE FUNCTION {schema}.commit_generation(
    p_projection text,
    p_generation bigint,
    p_expected_tx text,
    p_expected_seq bigint,
    p_checkpoint_tx text,
    p_checkpoint_seq bigint,
    p_token bigint,
    p_ids text[],
    p_views text[],
    p_leave_ids text[],
    p_leave_names text[],
    p_leave_values text[],
    p_leave_orders text[],
    p_join_ids text[],
    p_join_names text[],
    p_join_values text[],
    p_join_orders text[],
    p_dead_letters text[],
    p_resolved text[]
) RETURNS TABLE (status integer, actual_tx text, actual_seq bigint, highest bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_live bigint;
    v_building bigint;
    v_token bigint;
    v_tx xid8;
    v_seq bigint;
BEGIN
    SELECT s.live, s.building, s.fencing_token INTO v_live, v_building, v_token
        FROM {schema}.projection_status s WHERE s.projection = p_projection FOR UPDATE;
    IF NOT FOUND THEN
        -- Nothing stored for the projection: every token passes the fence, no generation exists.
        RETURN QUERY SELECT 3, NULL::text, NULL::bigint, 0::bigint;
        RETURN;
    END IF;
    IF p_token < v_token THEN
        RETURN QUERY SELECT 2, NULL::text, NULL::bigint, v_token;
        RETURN;
    END IF;
    IF p_generation IS DISTINCT FROM v_live AND p_generation IS DISTINCT FROM v_building THEN
        RETURN QUERY SELECT 3, NULL::text, NULL::bigint, v_token;
        RETURN;
    END IF;
    UPDATE {schema}.projection_status SET fencing_token = p_token WHERE projection = p_projection;
    SELECT g.transaction_id, g.sequence INTO v_tx, v_seq
        FROM {schema}.generations g WHERE g.projection = p_projection AND g.generation = p_generation;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 3, NULL::text, NULL::bigint, p_token;
        RETURN;
    END IF;
    IF v_tx IS DISTINCT FROM p_expected_tx::xid8 OR v_seq IS DISTINCT FROM p_expected_seq THEN
        RETURN QUERY SELECT 1, v_tx::text, v_seq, p_token;
        RETURN;
    END IF;
    -- Index entries name their view, so writes of different views touch different entries:
    -- every leave, then every join, is the same as leave-then-join view by view.
    DELETE FROM {schema}.view_index i
        USING unnest(p_leave_ids, p_leave_names, p_leave_values, p_leave_orders) AS l(id, name, value, sort_key)
        WHERE i.projection = p_projection AND i.generation = p_generation
          AND i.name = l.name AND i.value = l.value AND i.sort_key = l.sort_key AND i.view_id = l.id;
    INSERT INTO {schema}.view_index (projection, generation, name, value, sort_key, view_id)
        SELECT DISTINCT p_projection, p_generation, j.name, j.value, j.sort_key, j.id
        FROM unnest(p_join_ids, p_join_names, p_join_values, p_join_orders) AS j(id, name, value, sort_key)
        ON CONFLICT DO NOTHING;
    DELETE FROM {schema}.views v
        USING unnest(p_ids, p_views) AS u(id, view)
        WHERE u.view IS NULL AND v.projection = p_projection AND v.generation = p_generation AND v.id = u.id;
    INSERT INTO {schema}.views AS v (projection, generation, id, view)
        SELECT p_projection, p_generation, u.id, u.view::json FROM unnest(p_ids, p_views) AS u(id, view)
        WHERE u.view IS NOT NULL
        ON CONFLICT (projection, generation, id) DO UPDATE SET view = excluded.view;
    -- The dead letters this batch resolves leave before its own are added: one retried that
    -- failed again is among both, and is replaced by its new reason.
    IF cardinality(p_resolved) > 0 THEN
        DELETE FROM {schema}.dead_letters d
            WHERE d.projection = p_projection AND d.generation = p_generation
              AND d.letter->>'position' = ANY(p_resolved);
    END IF;
    INSERT INTO {schema}.dead_letters (projection, generation, letter)
        SELECT p_projection, p_generation, d.letter::json
        FROM unnest(p_dead_letters) WITH ORDINALITY AS d(letter, n) ORDER BY d.n;
    UPDATE {schema}.generations SET transaction_id = p_checkpoint_tx::xid8, sequence = p_checkpoint_seq
        WHERE projection = p_projection AND generation = p_generation;
    RETURN QUERY SELECT 0, p_checkpoint_tx, p_checkpoint_seq, p_token;
END;
$$;

-- The 18-argument form stays, for processes of the previous release during a rolling deploy: it
-- is the 19-argument one resolving no dead letter.
CREATE OR REPLACE FUNCTION {schema}.commit_generation(
    p_projection text,
    p_generation bigint,
    p_expected_tx text,
    p_expected_seq bigint,
    p_checkpoint_tx text,
    p_checkpoint_seq bigint,
    p_token bigint,
    p_ids text[],
    p_views text[],
    p_leave_ids text[],
    p_leave_names text[],
    p_leave_values text[],
    p_leave_orders text[],
    p_join_ids text[],
    p_join_names text[],
    p_join_values text[],
    p_join_orders text[],
    p_dead_letters text[]
) RETURNS TABLE (status integer, actual_tx text, actual_seq bigint, highest bigint)
LANGUAGE sql AS $$
    SELECT * FROM {schema}.commit_generation(p_projection, p_generation, p_expected_tx, p_expected_seq,
        p_checkpoint_tx, p_checkpoint_seq, p_token, p_ids, p_views, p_leave_ids, p_leave_names, p_leave_values,
        p_leave_orders, p_join_ids, p_join_names, p_join_values, p_join_orders, p_dead_letters, ARRAY[]::text[])
$$;
