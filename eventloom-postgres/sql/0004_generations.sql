-- Generations of views and secondary indexes. `{schema}` is replaced by the store's schema name.
--
-- A projection's views live in generations: queries read the live one while a rebuild fills
-- another, which replaces it in one step (`go_live`). Every row of the read side carries its
-- generation; the projection's status row says which generations are live and being built.
--
-- Existing views, checkpoints and dead letters become generation 1 (version 1, live) of their
-- projection, so an upgrade keeps its views.

-- Per projection: the live generation and the one being built (NULL for none), the last
-- generation id handed out (ids only grow, even across rebuilds and resets), and the highest
-- fencing token seen. Every write locks this row first, so writes of one projection serialize.
CREATE TABLE IF NOT EXISTS {schema}.projection_status (
    projection text PRIMARY KEY,
    live bigint,
    building bigint,
    last_generation bigint NOT NULL DEFAULT 0,
    fencing_token bigint NOT NULL DEFAULT 0
);

-- Each generation (live or being built): the projection version that builds it and its
-- checkpoint, (transaction id, sequence) of the last event folded in (NULL before the first).
CREATE TABLE IF NOT EXISTS {schema}.generations (
    projection text NOT NULL,
    generation bigint NOT NULL,
    version bigint NOT NULL,
    transaction_id xid8,
    sequence bigint,
    PRIMARY KEY (projection, generation)
);

-- Secondary index entries: the view `view_id` is in the list (`name`, `value`), sorted by
-- (`sort_key`, `view_id`) byte-wise. The primary key serves a page of a list: equality on its
-- first four columns, then a range scan in list order. Columns compared in order are
-- COLLATE "C" (byte-wise, like the other stores, and what the index is sorted by).
CREATE TABLE IF NOT EXISTS {schema}.view_index (
    projection text NOT NULL,
    generation bigint NOT NULL,
    name text COLLATE "C" NOT NULL,
    value text COLLATE "C" NOT NULL,
    sort_key text COLLATE "C" NOT NULL,
    view_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (projection, generation, name, value, sort_key, view_id)
);

-- Migrate: every projection with a checkpoint gets generation 1, live, at that checkpoint, with
-- its fencing token. A projection whose checkpoint was reset (NULL) keeps only its token: it has
-- nothing live and rebuilds. Generation ids of every migrated projection start after 1.
INSERT INTO {schema}.projection_status (projection, live, building, last_generation, fencing_token)
    SELECT c.projection, CASE WHEN c.transaction_id IS NOT NULL THEN 1 END, NULL, 1, c.fencing_token
    FROM {schema}.checkpoints c;
INSERT INTO {schema}.generations (projection, generation, version, transaction_id, sequence)
    SELECT c.projection, 1, 1, c.transaction_id, c.sequence
    FROM {schema}.checkpoints c WHERE c.transaction_id IS NOT NULL;

-- Views: keyed by (projection, generation, id). Ids compare byte-wise, as in `view_index`, so
-- that list pages join their views on this primary key. A view is `json`, the exact text the
-- projection wrote: `jsonb` refuses a string holding `\u0000`, which a view may hold. Views
-- stored as `jsonb` by migration 2 keep their (normalized) text.
ALTER TABLE {schema}.views ADD COLUMN generation bigint NOT NULL DEFAULT 1;
DELETE FROM {schema}.views v WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.generations g WHERE g.projection = v.projection AND g.generation = 1);
ALTER TABLE {schema}.views
    DROP CONSTRAINT views_pkey,
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN view TYPE json USING view::json,
    ALTER COLUMN generation DROP DEFAULT,
    ADD PRIMARY KEY (projection, generation, id);

-- Dead letters belong to the generation whose batch skipped them.
ALTER TABLE {schema}.dead_letters ADD COLUMN generation bigint NOT NULL DEFAULT 1;
DELETE FROM {schema}.dead_letters d WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.generations g WHERE g.projection = d.projection AND g.generation = 1);
ALTER TABLE {schema}.dead_letters ALTER COLUMN generation DROP DEFAULT;
DROP INDEX IF EXISTS {schema}.dead_letters_by_projection;
CREATE INDEX dead_letters_by_generation ON {schema}.dead_letters (projection, generation, id);

DROP FUNCTION IF EXISTS {schema}.commit_views(text, text, bigint, text, bigint, bigint, text[], text[], text[]);
DROP FUNCTION IF EXISTS {schema}.reset_views(text, bigint);
DROP TABLE {schema}.checkpoints;

-- Deletes every row of one generation (the caller holds the projection's status row).
--
-- Cost: this deletes the generation's views, index entries and dead letters row by row inside
-- the caller's transaction, holding the status row lock, so the projection's commits wait for
-- it and a large generation makes `go_live` (or `begin_generation` replacing an abandoned
-- build) slow and leaves dead tuples for autovacuum. Fine at the sizes this store targets; a
-- bigger deployment would mark the generation dropped and delete it in batches later.
CREATE OR REPLACE FUNCTION {schema}.drop_generation(p_projection text, p_generation bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {schema}.views WHERE projection = p_projection AND generation = p_generation;
    DELETE FROM {schema}.view_index WHERE projection = p_projection AND generation = p_generation;
    DELETE FROM {schema}.dead_letters WHERE projection = p_projection AND generation = p_generation;
    DELETE FROM {schema}.generations WHERE projection = p_projection AND generation = p_generation;
END;
$$;

-- Starts a new, empty generation of `p_version`, with an id above every one handed out, as the
-- one being built (dropping an earlier one being built), unless `p_token` is older than the
-- highest seen. Returns status 0 (begun: its id) or 2 (fenced: the highest token).
CREATE OR REPLACE FUNCTION {schema}.begin_generation(p_projection text, p_version bigint, p_token bigint)
RETURNS TABLE (status integer, generation_id bigint, highest bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_building bigint;
    v_last bigint;
    v_token bigint;
BEGIN
    INSERT INTO {schema}.projection_status (projection) VALUES (p_projection)
        ON CONFLICT (projection) DO NOTHING;
    SELECT s.building, s.last_generation, s.fencing_token INTO v_building, v_last, v_token
        FROM {schema}.projection_status s WHERE s.projection = p_projection FOR UPDATE;
    IF p_token < v_token THEN
        RETURN QUERY SELECT 2, NULL::bigint, v_token;
        RETURN;
    END IF;
    IF v_building IS NOT NULL THEN
        PERFORM {schema}.drop_generation(p_projection, v_building);
    END IF;
    v_last := v_last + 1;
    INSERT INTO {schema}.generations (projection, generation, version) VALUES (p_projection, v_last, p_version);
    UPDATE {schema}.projection_status SET building = v_last, last_generation = v_last, fencing_token = p_token
        WHERE projection = p_projection;
    RETURN QUERY SELECT 0, v_last, p_token;
END;
$$;

-- A batch of one generation in one round-trip and one transaction: index entries left and
-- joined, views written (`p_views` NULL deletes), the generation's checkpoint and its dead
-- letters, applied only if `p_token` is not older than the highest seen, the generation is live
-- or being built, and its checkpoint is still `p_expected_*` (NULL, NULL for none), checked in
-- that order. Returns status 0 (written), 1 (checkpoint moved: the actual one), 2 (fenced: the
-- highest token) or 3 (the generation is gone). Like the other stores, a write that passes the
-- fence and finds its generation raises the highest token even if its checkpoint moved.
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
    INSERT INTO {schema}.dead_letters (projection, generation, letter)
        SELECT p_projection, p_generation, d.letter::json
        FROM unnest(p_dead_letters) WITH ORDINALITY AS d(letter, n) ORDER BY d.n;
    UPDATE {schema}.generations SET transaction_id = p_checkpoint_tx::xid8, sequence = p_checkpoint_seq
        WHERE projection = p_projection AND generation = p_generation;
    RETURN QUERY SELECT 0, p_checkpoint_tx, p_checkpoint_seq, p_token;
END;
$$;

-- Makes the generation being built live and drops the one that was live, in one transaction,
-- unless `p_token` is older than the highest seen, or the built generation's checkpoint is
-- behind the live one's (NULL is behind every checkpoint): switching then would take queries
-- back in time. Making the live generation live again changes nothing. Checked in that order:
-- fence, already live, not the generation being built, checkpoint. Returns status 0 (live),
-- 1 (behind: the built and the live checkpoints), 2 (fenced: the highest token) or 3 (not the
-- generation being built).
CREATE OR REPLACE FUNCTION {schema}.go_live(p_projection text, p_generation bigint, p_token bigint)
RETURNS TABLE (status integer, highest bigint, built_tx text, built_seq bigint, live_tx text, live_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_live bigint;
    v_building bigint;
    v_token bigint;
    v_built_tx xid8;
    v_built_seq bigint;
    v_live_tx xid8;
    v_live_seq bigint;
BEGIN
    SELECT s.live, s.building, s.fencing_token INTO v_live, v_building, v_token
        FROM {schema}.projection_status s WHERE s.projection = p_projection FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 3, 0::bigint, NULL::text, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF p_token < v_token THEN
        RETURN QUERY SELECT 2, v_token, NULL::text, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF v_live IS NOT DISTINCT FROM p_generation THEN
        RETURN QUERY SELECT 0, v_token, NULL::text, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF v_building IS DISTINCT FROM p_generation THEN
        RETURN QUERY SELECT 3, v_token, NULL::text, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF v_live IS NOT NULL THEN
        SELECT g.transaction_id, g.sequence INTO v_built_tx, v_built_seq
            FROM {schema}.generations g WHERE g.projection = p_projection AND g.generation = p_generation;
        SELECT g.transaction_id, g.sequence INTO v_live_tx, v_live_seq
            FROM {schema}.generations g WHERE g.projection = p_projection AND g.generation = v_live;
        IF v_live_tx IS NOT NULL
           AND (v_built_tx IS NULL OR (v_built_tx, v_built_seq) < (v_live_tx, v_live_seq)) THEN
            RETURN QUERY SELECT 1, v_token, v_built_tx::text, v_built_seq, v_live_tx::text, v_live_seq;
            RETURN;
        END IF;
    END IF;
    UPDATE {schema}.projection_status SET live = p_generation, building = NULL, fencing_token = p_token
        WHERE projection = p_projection;
    IF v_live IS NOT NULL THEN
        PERFORM {schema}.drop_generation(p_projection, v_live);
    END IF;
    RETURN QUERY SELECT 0, p_token, NULL::text, NULL::bigint, NULL::text, NULL::bigint;
END;
$$;
