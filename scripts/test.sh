#!/usr/bin/env bash
# The whole test suite: every crate's unit, integration, compile-fail and doc tests, and every
# Rust block of README.md and docs/ (compiled as doctests of the `cqrs-docs` crate).
#
# PostgreSQL, Redis, a Redis Cluster and NATS: DATABASE_URL / REDIS_URL / REDIS_CLUSTER_URLS /
# NATS_URL when set; otherwise throwaway servers on free loopback ports (Debian's postgresql,
# redis-server and nats-server are installed when missing), stopped afterwards. A streaming
# replica of PostgreSQL: DATABASE_REPLICA_URL when set, else a hot standby of the throwaway
# primary (see ensure_postgres_replica).
#
# Usage: bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
trap stop_services EXIT

ensure_postgres
ensure_postgres_replica
ensure_redis
ensure_redis_cluster
ensure_nats

cargo test --workspace --all-features "$@"
