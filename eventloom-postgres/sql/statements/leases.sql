-- Every lease whose name starts with $1, by name (byte-wise): its last token, who took it and
-- when (in microseconds since the epoch).
SELECT name, token, holder_host, holder_pid, holder_role,
       (extract(epoch FROM acquired_at) * 1000000)::bigint AS acquired_us
  FROM {schema}.leases
 WHERE left(name, length($1)) = $1
 ORDER BY name COLLATE "C"
