#!/usr/bin/env bash
# Every benchmark of cqrs-bench on fresh durable servers, as users run them: PostgreSQL with
# fsync, synchronous_commit and full_page_writes on, Redis with its snapshots and an
# append-only file fsynced every second (see scripts/services.sh). Each run starts its own
# servers on free loopback ports (DATABASE_URL, DATABASE_REPLICA_URL, REDIS_URL,
# REDIS_CLUSTER_URLS and NATS_URL are ignored), runs the scenarios, and stops them.
#
# Usage: bash scripts/bench.sh [--runs N] [--out FILE] [--fsync-off] [postgres] [redis] [baseline]
#                              [projections] [bus] [saga] [scaling] [ryw]
#
#   --runs N      runs of every scenario group, each on fresh servers (default 1); with more
#                 than one, a summary of medians and spreads follows on stderr
#   --out FILE    where the JSON lines go (default target/bench/<UTC time>.jsonl); the
#                 binary's notes go to FILE with .log instead of .jsonl
#   --fsync-off   servers that do not wait for the disk (the test suite's): figures measured
#                 so must be labelled as such wherever they are quoted
#   postgres, redis, baseline, projections, bus, saga, scaling, ryw: the scenario groups to run
#                 (default all eight; see benches/cqrs-bench/src/main.rs); bus and saga also start
#                 a throwaway nats-server -js (JetStream on files, which nats-server syncs to disk
#                 on an interval, not on each write); scaling also starts a streaming replica of
#                 the PostgreSQL server (a hot standby, as durable as its primary), a Redis server
#                 and a Redis Cluster of 3 masters with a replica each (each node as durable as
#                 the one server)
#
# Each JSON line is the binary's, with "run" (1..N), "servers" ("durable" or "fsync-off"),
# "commit" and "date" added. CQRS_BENCH_BIN names a prebuilt binary to run instead of
# building this tree's (to compare commits); CQRS_BENCH_TIMEOUT bounds each group (seconds,
# default 1200).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=1
out=""
durable=1
groups=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --fsync-off) durable=0; shift ;;
    postgres|redis|baseline|projections|bus|saga|scaling|ryw) groups+=("$1"); shift ;;
    *) sed -n '2,/^set /{/^#/p}' "$0" >&2; exit 2 ;;
  esac
done
if [ ${#groups[@]} -eq 0 ]; then groups=(postgres redis baseline projections bus saga scaling ryw); fi
case "$runs" in ''|*[!0-9]*|0) echo "--runs takes a positive number" >&2; exit 2 ;; esac

source scripts/services.sh
trap stop_services EXIT
unset DATABASE_URL DATABASE_REPLICA_URL REDIS_URL REDIS_CLUSTER_URLS NATS_URL
export CQRS_SERVICES_DURABLE="$durable"
servers=$([ "$durable" = 1 ] && echo durable || echo fsync-off)

if [ -z "${CQRS_BENCH_BIN:-}" ]; then
  cargo build --release -p cqrs-bench --all-features >&2
  bin="${CARGO_TARGET_DIR:-target}/release/cqrs-bench"
else
  bin="$CQRS_BENCH_BIN"
fi
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit+dirty"; fi
if [ -n "${CQRS_BENCH_BIN:-}" ]; then commit="binary:$CQRS_BENCH_BIN"; fi

if [ -z "$out" ]; then
  mkdir -p target/bench
  out="target/bench/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
fi
log="${out%.jsonl}.log"
mkdir -p "$(dirname "$out")"
: >"$out"
: >"$log"
echo "results: $out, notes: $log ($servers servers, $runs run(s) of: ${groups[*]})" >&2

# The server settings that make it durable, checked rather than trusted.
check_postgres() {
  local settings url="${1:-$DATABASE_URL}"
  settings="$(psql "$url" -Atc "SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit') || ' ' || current_setting('full_page_writes')")"
  echo "PostgreSQL ${2:-primary} fsync, synchronous_commit, full_page_writes: $settings" >>"$log"
  if [ "$durable" = 1 ] && [ "$settings" != "on on on" ]; then
    echo "the PostgreSQL server is not durable: $settings" >&2
    return 1
  fi
}

check_redis() {
  local url="${1:-$REDIS_URL}"
  local port="${url##*:}"
  port="${port%%/*}"
  local aof
  aof="$(redis-cli -p "$port" config get appendonly | tail -n 1) $(redis-cli -p "$port" config get appendfsync | tail -n 1)"
  echo "Redis $port appendonly, appendfsync: $aof; save: $(redis-cli -p "$port" config get save | tail -n 1)" >>"$log"
  if [ "$durable" = 1 ] && [ "$aof" != "yes everysec" ]; then
    echo "the Redis server is not durable: $aof" >&2
    return 1
  fi
}

for run in $(seq 1 "$runs"); do
  for group in "${groups[@]}"; do
    echo "== run $run of $runs: $group ($servers) $(date -u +%H:%M:%S), load average $(cut -d' ' -f1-3 /proc/loadavg)" \
      | tee -a "$log" >&2
    ensure_postgres
    check_postgres
    if [ "$group" = bus ] || [ "$group" = saga ]; then
      ensure_nats
    fi
    if [ "$group" = redis ] || [ "$group" = scaling ] || [ "$group" = ryw ]; then
      ensure_redis
      check_redis
    fi
    if [ "$group" = scaling ]; then
      ensure_postgres_replica
      check_postgres "$DATABASE_REPLICA_URL" replica
      ensure_redis_cluster
      for node in ${REDIS_CLUSTER_URLS//,/ }; do check_redis "$node"; done
    fi
    date="$(date -u +%Y-%m-%d)"
    timeout "${CQRS_BENCH_TIMEOUT:-1200}" "$bin" "$group" 2>>"$log" \
      | jq -c --argjson run "$run" --arg servers "$servers" --arg commit "$commit" --arg date "$date" \
          '. + {run: $run, servers: $servers, commit: $commit, date: $date}' \
      | tee -a "$out"
    stop_services
    unset DATABASE_URL DATABASE_REPLICA_URL REDIS_URL REDIS_CLUSTER_URLS NATS_URL
  done
done

if [ "$runs" -gt 1 ]; then
  echo "== summary: median (min-max) over $runs runs" >&2
  jq -rs '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def spread: "\(median) (\(min)-\(max))";
    group_by(.scenario)[]
    | "\(.[0].scenario) [\(.[0].unit)]: ours \(map(.ours) | spread)"
      + (if .[0].raw then "; raw \(map(.raw) | spread); ratio \(map(.ratio) | spread)" else "" end)
      + (if .[0].cqrs_es then "; cqrs-es \(map(.cqrs_es) | spread); vs cqrs-es \(map(.vs_cqrs_es) | spread)" else "" end)
      + (if .[0].p99 then "; p99 \(map(.p99) | spread)" else "" end)
      + (if .[0].round_trips then "; round-trips \(map(.round_trips) | spread)" else "" end)
      + (if .[0].notify_ms then "; NOTIFYs/command \(map(.notifies_per_command) | spread); NOTIFY ms \(map(.notify_ms) | spread); SELECT 1 ms \(map(.select_ms) | spread)" else "" end)
      + (if .[0].reads then
          (. as $records
           | [ ("reads", "rows", "wall_ms", "cpu_us_per_event", "server_cpu_us_per_event", "cpu_ms_per_s", "server_cpu_ms_per_s") as $key
               | select($records | all(.[$key] != null))
               | [ ("group", "separate", "group_over_separate") as $way
                   | ($records | map(.[$key][$way] | numbers)) as $values
                   | if ($values | length) > 0 then $values | spread else "-" end ] as [$group, $separate, $ratio]
               | "; \($key): group \($group), separate \($separate), group/separate \($ratio)" ]
           | join(""))
        else "" end)
      + (. as $records
         | [ $records[0] | to_entries[] | select(.value | type == "number") | .key ]
           - ["ours", "raw", "ratio", "cqrs_es", "vs_cqrs_es", "p99", "round_trips", "notifies_per_command",
              "notify_ms", "select_ms", "projections", "run"]
         | map(. as $key | "; \($key) \($records | map(.[$key] | numbers) | spread)")
         | join(""))
  ' "$out" | tee "${out%.jsonl}.summary" >&2
fi
