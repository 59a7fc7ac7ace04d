-- Who took each lease's last token, and when: written with the token under the lease's advisory
-- lock, for operators to see which process leads (NULL for a token taken before this
-- migration).
ALTER TABLE {schema}.leases
    ADD COLUMN IF NOT EXISTS holder_host text,
    ADD COLUMN IF NOT EXISTS holder_pid bigint,
    ADD COLUMN IF NOT EXISTS holder_role text,
    ADD COLUMN IF NOT EXISTS acquired_at timestamptz;
