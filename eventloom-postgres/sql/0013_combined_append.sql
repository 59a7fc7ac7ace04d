-- Write combining (`PgConfig::write_combining`): the appends of concurrent commands of one
-- process go to the server as one statement, `statements/append_combined.sql`, in one
-- transaction with one commit. That statement checks every stream's version in its snapshot
-- and inserts with `ON CONFLICT DO NOTHING`, so that a version another writer took after the
-- snapshot refuses only that stream. A stream must be all or nothing, and a command id must not
-- be recorded twice: when another writer took some but not all of a stream's versions, or
-- recorded one of the batch's command ids, after the snapshot, the statement calls this
-- function, which raises, and the whole statement (and its transaction) rolls back; the store
-- then answers those appends on their own and sends the others again.
--
-- `p_streams` and `p_commands`: the 1-based places, in the batch, of those streams and command
-- ids. SQLSTATE EL001, message "combined append refused", detail "streams|commands" as
-- comma-separated numbers.
CREATE OR REPLACE FUNCTION {schema}.combined_append_refused(p_streams integer[], p_commands integer[])
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'combined append refused'
        USING ERRCODE = 'EL001',
              DETAIL = coalesce(array_to_string(p_streams, ','), '') || '|' || coalesce(array_to_string(p_commands, ','), ''),
              HINT = 'Another writer took some versions of a stream, or one of the command ids, after the statement''s snapshot.';
END;
$$;
