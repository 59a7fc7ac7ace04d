-- A new fencing token for the lease $1, higher than every one before (run under the lease's
-- advisory lock), recorded with its holder: host $2, pid $3, role $4, and the time.
INSERT INTO {schema}.leases AS l (name, token, holder_host, holder_pid, holder_role, acquired_at)
VALUES ($1, 1, $2, $3, $4, clock_timestamp())
ON CONFLICT (name) DO UPDATE
   SET token = l.token + 1, holder_host = $2, holder_pid = $3, holder_role = $4, acquired_at = clock_timestamp()
RETURNING token
