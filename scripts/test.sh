#!/usr/bin/env bash
# The whole test suite: every crate's unit, integration, compile-fail and doc tests, and every
# Rust block of README.md and docs/ (compiled as doctests of the `cqrs-docs` crate).
#
# Usage: bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-features "$@"
