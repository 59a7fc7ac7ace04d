-- Whether reads in order here can return the transaction $1 (it and every older one have
-- ended, as this server's snapshot sees them).
SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::text::xid8 AS readable
