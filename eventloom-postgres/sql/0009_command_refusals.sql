-- Refusals recorded under a command id (`ExecuteOptions::record_refusal`, what process managers
-- send): `commands.refusal` holds the rejection's text, at most 1,024 bytes (the store cuts a
-- longer one at a character boundary before writing it), for a command that appended nothing;
-- NULL for an append or a no-op, and for every row written before this migration.
ALTER TABLE {schema}.commands ADD COLUMN IF NOT EXISTS refusal text
    CHECK (octet_length(refusal) <= 1024);
