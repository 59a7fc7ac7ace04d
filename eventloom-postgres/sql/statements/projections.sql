-- The names of the projections the read side holds anything for (every write of one creates its
-- status row first), sorted byte-wise.
SELECT projection FROM {schema}.projection_status ORDER BY projection COLLATE "C"
