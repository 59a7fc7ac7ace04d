-- The settings of a lease's session (names in $1, values in $2), each for the whole session.
-- Settings this server does not have (client_connection_check_interval and
-- idle_session_timeout came in PostgreSQL 14) are skipped rather than refused.
SELECT count(set_config(s.name, s.value, false))
  FROM unnest($1::text[], $2::text[]) AS s(name, value)
  JOIN pg_settings p ON p.name = s.name
