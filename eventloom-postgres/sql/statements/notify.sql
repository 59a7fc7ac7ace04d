-- One coalesced wake-up for subscribers: NOTIFY on the channel $1.
SELECT pg_notify($1, '')
