-- A new fencing token for the lease $1, higher than every one before (run under the lease's
-- advisory lock).
INSERT INTO {schema}.leases AS l (name, token) VALUES ($1, 1)
ON CONFLICT (name) DO UPDATE SET token = l.token + 1 RETURNING token
