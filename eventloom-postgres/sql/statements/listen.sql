-- The wake-ups of the store's channel (`{channel}`: its quoted name).
LISTEN {channel}
