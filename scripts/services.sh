# Throwaway PostgreSQL, Redis and NATS servers for the test suite and the benchmarks. Sourced by
# scripts/test.sh and scripts/bench.sh.
#
# Durability: by default the servers do not wait for the disk (PostgreSQL with fsync,
# synchronous_commit and full_page_writes off; Redis without persistence), which is what tests
# want. PostgreSQL then also has wal_writer_delay=10ms: with synchronous_commit off a commit
# reaches a streaming replica only once the WAL writer has flushed it, every wal_writer_delay
# (200 ms by default), which every read-your-writes through the replica would wait for. With
# CQRS_SERVICES_DURABLE=1 in the environment, or `durable` as the first argument of
# ensure_postgres / ensure_redis, they run as users run them: PostgreSQL with its defaults
# (fsync, synchronous_commit and full_page_writes on) and Redis with its default RDB snapshots
# plus an append-only file fsynced every second (`appendonly yes`, `appendfsync everysec`, the
# setting Redis's persistence documentation recommends). scripts/bench.sh uses durable servers.
#
# ensure_postgres [durable]: uses DATABASE_URL when set; otherwise installs Debian's postgresql
# when missing, starts a throwaway cluster on a free loopback port and exports DATABASE_URL.
# Either way it exports CQRS_PG_BIN, the directory of initdb and pg_ctl, which fault tests use
# to start private servers of their own.

CQRS_SERVICE_DIRS=()

# Whether the servers started now are durable: `durable` as $1, or CQRS_SERVICES_DURABLE=1.
services_durable() {
  [ "${1:-}" = durable ] || [ "${CQRS_SERVICES_DURABLE:-0}" = 1 ]
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A free loopback port at most 55535 whose cluster bus port (10000 above it) is free too.
free_cluster_port() {
  python3 -c '
import random, socket
while True:
    port = random.randint(20000, 55535)
    try:
        for p in (port, port + 10000):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            s.close()
    except OSError:
        continue
    print(port)
    break
'
}

pg_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_postgres() {
  # openssl makes the certificates of the TLS tests.
  if ! command -v openssl >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >&2
  fi
  # iptables drops the packets of one connection in the lease tests (eventloom-postgres).
  if ! command -v iptables >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >&2
  fi
  if [ -n "$(pg_bin_dir)" ]; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed: install Debian's postgresql package or set DATABASE_URL" >&2
    return 1
  fi
  echo "installing Debian's postgresql ..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

ensure_postgres() {
  install_postgres
  CQRS_PG_BIN="$(pg_bin_dir)"
  export CQRS_PG_BIN
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "PostgreSQL: using DATABASE_URL" >&2
    return 0
  fi
  local dir port settings
  if services_durable "${1:-}"; then
    settings="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
  else
    settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_writer_delay=10ms"
  fi
  dir="$(mktemp -d /tmp/cqrs-pg.XXXXXX)"
  CQRS_SERVICE_DIRS+=("$dir")
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  as_postgres "$CQRS_PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  port="$(free_port)"
  as_postgres "$CQRS_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 $settings" \
    start >&2 || { cat "$dir/server.log" >&2; return 1; }
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL: throwaway server on 127.0.0.1:$port ($settings)" >&2
}

# ensure_redis [durable]: uses REDIS_URL when set; otherwise installs Debian's redis-server when
# missing, starts a throwaway server on a free loopback port (without persistence, or durable as
# described at the top) and exports REDIS_URL.
ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then
    echo "Redis: using REDIS_URL" >&2
    return 0
  fi
  install_redis REDIS_URL || return 1
  local dir port persistence
  if services_durable "${1:-}"; then
    # No --save: Redis's default snapshot points.
    persistence=(--appendonly yes --appendfsync everysec)
  else
    persistence=(--save '' --appendonly no)
  fi
  dir="$(mktemp -d /tmp/eventloom-redis.XXXXXX)"
  CQRS_SERVICE_DIRS+=("$dir")
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 "${persistence[@]}" --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >&2
  for _ in $(seq 1 50); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  redis-cli -p "$port" ping >/dev/null || { cat "$dir/redis.log" >&2; return 1; }
  echo "$port" >"$dir/redis.port"
  export REDIS_URL="redis://127.0.0.1:$port/"
  echo "Redis: throwaway server on 127.0.0.1:$port (${persistence[*]})" >&2
}

# install_redis VARIABLE: installs Debian's redis-server when missing (as root; otherwise says to
# install it or set VARIABLE).
install_redis() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "Redis is not installed: install Debian's redis-server package or set $1" >&2
    return 1
  fi
  echo "installing Debian's redis-server ..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

# ensure_redis_cluster [durable]: uses REDIS_CLUSTER_URLS (comma-separated node URLs) when set;
# otherwise starts 6 throwaway `redis-server --cluster-enabled yes` nodes on free loopback ports,
# each in a folder of its own and without persistence (or durable as described at the top: each
# node with Redis's default snapshots and an append-only file fsynced every second), joins them
# with `redis-cli --cluster create` (3 masters with a replica each), waits until every node
# reports cluster_state:ok and exports REDIS_CLUSTER_URLS. Fault tests start private clusters of
# their own.
ensure_redis_cluster() {
  if [ -n "${REDIS_CLUSTER_URLS:-}" ]; then
    echo "Redis Cluster: using REDIS_CLUSTER_URLS" >&2
    return 0
  fi
  install_redis REDIS_CLUSTER_URLS || return 1
  local dir port node started urls="" addresses=() ports=() persistence
  if services_durable "${1:-}"; then
    # No --save: Redis's default snapshot points.
    persistence=(--appendonly yes --appendfsync everysec)
  else
    persistence=(--save '' --appendonly no)
  fi
  started="$(date +%s%N)"
  dir="$(mktemp -d /tmp/eventloom-redis-cluster.XXXXXX)"
  CQRS_SERVICE_DIRS+=("$dir")
  touch "$dir/cluster"
  while [ "${#ports[@]}" -lt 6 ]; do
    port="$(free_cluster_port)"
    if [[ " ${ports[*]} " != *" $port "* && " ${ports[*]} " != *" $((port - 10000)) "* \
      && " ${ports[*]} " != *" $((port + 10000)) "* ]]; then ports+=("$port"); fi
  done
  for port in "${ports[@]}"; do
    node="$dir/$port"
    mkdir -p "$node"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$node/nodes.conf" \
      --shutdown-timeout 0 --repl-diskless-sync-delay 0 "${persistence[@]}" --daemonize yes --dir "$node" --pidfile "$node/redis.pid" \
      --logfile "$node/redis.log" >&2
    echo "$port" >"$node/redis.port"
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
      sleep 0.05
    done
    redis-cli -p "$port" ping >/dev/null || { cat "$dir/$port/redis.log" >&2; return 1; }
    addresses+=("127.0.0.1:$port")
    urls="${urls:+$urls,}redis://127.0.0.1:$port/"
  done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || { cat "$dir/create.log" >&2; return 1; }
  for port in "${ports[@]}"; do
    for _ in $(seq 1 300); do
      if redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then break; fi
      sleep 0.05
    done
    redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' \
      || { echo "Redis Cluster: node $port is not ok" >&2; cat "$dir/create.log" >&2; return 1; }
  done
  export REDIS_CLUSTER_URLS="$urls"
  echo "Redis Cluster: 3 masters and 3 replicas on 127.0.0.1:${ports[*]} (${persistence[*]}; started in $(( ($(date +%s%N) - started) / 1000000 )) ms)" >&2
}

# Stops the throwaway Redis of `dir` without a final save, and waits until it has exited: a
# durable one would otherwise try to save into a folder about to be deleted, fail, and refuse to
# exit (Redis keeps running when its shutdown save fails).
stop_redis() {
  local dir="$1" pid
  pid="$(cat "$dir/redis.pid" 2>/dev/null)" || return 0
  if [ -f "$dir/redis.port" ]; then
    redis-cli -p "$(cat "$dir/redis.port")" shutdown nosave >/dev/null 2>&1 || true
  else
    kill "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Stops the nodes of the throwaway Redis Cluster of `dir`: all are told to shut down first, then
# each is waited for (as stop_redis does for one).
stop_redis_cluster() {
  local dir="$1" node
  for node in "$dir"/*/; do
    if [ -f "$node/redis.port" ]; then
      redis-cli -p "$(cat "$node/redis.port")" shutdown nosave >/dev/null 2>&1 || true
    fi
  done
  for node in "$dir"/*/; do
    if [ -f "$node/redis.pid" ]; then stop_redis "$node"; fi
  done
}

# ensure_nats: uses NATS_URL when set; otherwise installs Debian's nats-server when missing,
# starts a throwaway `nats-server -js` on a free loopback port with a store folder of its own
# (JetStream on files, which a durable run fsyncs as nats-server always does) and exports
# NATS_URL. Fault tests start private servers from the same binary (`command -v nats-server`).
ensure_nats() {
  if [ -n "${NATS_URL:-}" ]; then
    echo "NATS: using NATS_URL" >&2
    return 0
  fi
  if ! command -v nats-server >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "nats-server is not installed: install Debian's nats-server package or set NATS_URL" >&2
      return 1
    fi
    echo "installing Debian's nats-server ..." >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >&2
  fi
  local dir port
  dir="$(mktemp -d /tmp/eventloom-nats.XXXXXX)"
  CQRS_SERVICE_DIRS+=("$dir")
  port="$(free_port)"
  nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/store" -l "$dir/nats.log" -P "$dir/nats.pid" >/dev/null 2>&1 &
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$dir/nats.log" >&2; return 1; }
  export NATS_URL="nats://127.0.0.1:$port"
  echo "NATS: throwaway nats-server -js on 127.0.0.1:$port" >&2
}

stop_nats() {
  local dir="$1" pid
  pid="$(cat "$dir/nats.pid" 2>/dev/null)" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop_services() {
  local dir node
  for dir in "${CQRS_SERVICE_DIRS[@]}"; do
    if [ -f "$dir/nats.pid" ]; then
      stop_nats "$dir"
    fi
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_postgres "$CQRS_PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/redis.pid" ]; then
      stop_redis "$dir"
    fi
    if [ -f "$dir/cluster" ]; then
      stop_redis_cluster "$dir"
    fi
    rm -rf "$dir"
  done
  CQRS_SERVICE_DIRS=()
}

# ensure_postgres_replica [durable]: a streaming replica (hot standby) of the PostgreSQL that
# DATABASE_URL names, for the tests that read from one. Uses DATABASE_REPLICA_URL when set.
# Otherwise, when DATABASE_URL is a throwaway server of ensure_postgres (call that first), takes a
# `pg_basebackup -R` of it (its defaults allow this: wal_level=replica, max_wal_senders=10, and
# initdb's trust entries for replication on loopback), starts the copy as a hot standby on a free
# loopback port with the primary's max_connections, max_prepared_transactions,
# max_worker_processes, max_wal_senders and max_locks_per_transaction (a standby refuses to start
# with a lower value of any of them), and exports DATABASE_REPLICA_URL. With a DATABASE_URL of the
# user's and no DATABASE_REPLICA_URL it exports nothing: the tests that need a replica fail and
# say what to set. stop_services stops it.
ensure_postgres_replica() {
  if [ -n "${DATABASE_REPLICA_URL:-}" ]; then
    echo "PostgreSQL replica: using DATABASE_REPLICA_URL" >&2
    return 0
  fi
  local primary_data owned="" d
  primary_data="$("$CQRS_PG_BIN/psql" "$DATABASE_URL" -Atc 'SHOW data_directory' 2>/dev/null)" || primary_data=""
  for d in "${CQRS_SERVICE_DIRS[@]}"; do
    if [ -n "$primary_data" ] && [ "$primary_data" = "$d/data" ]; then owned="$d"; fi
  done
  if [ -z "$owned" ]; then
    echo "PostgreSQL replica: DATABASE_URL is not a throwaway server of this script; set DATABASE_REPLICA_URL to a streaming replica of it for the replica tests" >&2
    return 0
  fi
  local dir port settings started names values
  started="$(date +%s.%N)"
  if services_durable "${1:-}"; then
    settings="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
  else
    settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_writer_delay=10ms"
  fi
  names="max_connections max_prepared_transactions max_worker_processes max_wal_senders max_locks_per_transaction"
  for d in $names; do
    values+=" -c $d=$("$CQRS_PG_BIN/psql" "$DATABASE_URL" -Atc "SHOW $d")"
  done
  dir="$(mktemp -d /tmp/cqrs-pg-replica.XXXXXX)"
  CQRS_SERVICE_DIRS+=("$dir")
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  as_postgres "$CQRS_PG_BIN/pg_basebackup" -d "$DATABASE_URL" -D "$dir/data" -R -X stream -c fast --no-sync \
    >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; return 1; }
  port="$(free_port)"
  as_postgres "$CQRS_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c hot_standby=on $values $settings" \
    start >&2 || { cat "$dir/server.log" >&2; return 1; }
  export DATABASE_REPLICA_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL replica: hot standby of $DATABASE_URL on 127.0.0.1:$port, made in $(python3 -c "import time; print(round(time.time() - $started, 1))") s" >&2
}
