#!/usr/bin/env bash
# The whole test suite: every crate's unit, integration, compile-fail and doc tests, and every
# Rust block of README.md and docs/ (compiled as doctests of the `cqrs-docs` crate).
#
# PostgreSQL: DATABASE_URL when set; otherwise a throwaway server on a free loopback port
# (Debian's postgresql is installed when missing), stopped afterwards.
#
# Usage: bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
trap stop_services EXIT

ensure_postgres

cargo test --workspace --all-features "$@"
