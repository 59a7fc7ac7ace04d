#!/usr/bin/env bash
# The whole test suite: every crate's unit, integration, compile-fail and doc tests, and every
# Rust block of README.md and docs/ (compiled as doctests of the `cqrs-docs` crate).
#
# PostgreSQL and Redis: DATABASE_URL / REDIS_URL when set; otherwise throwaway servers on free
# loopback ports (Debian's postgresql and redis-server are installed when missing), stopped
# afterwards.
#
# Usage: bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
trap stop_services EXIT

ensure_postgres
ensure_redis

cargo test --workspace --all-features "$@"
