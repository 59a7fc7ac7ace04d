-- The session advisory locks on one bigint key taken in this database now: a bigint key shows
-- its high half in classid and its low half in objid, with objsubid 1.
SELECT classid::bigint AS high, objid::bigint AS low
  FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 1 AND granted
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
