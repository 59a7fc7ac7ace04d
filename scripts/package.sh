#!/usr/bin/env bash
# Packages every crate of the workspace that would be published (every package without
# `publish = false`) and builds each from its package, as crates.io would: a file pulled in with
# `include_str!` from outside the crate's folder, or a dependency without a version, fails here.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(" ".join("-p " + p["name"] for p in meta["packages"] if p.get("publish") is None))')
echo "packaging: ${packages//-p /}" >&2
# --allow-dirty: CI packages a clean clone; a developer may run this with changes not committed.
cargo package --allow-dirty $packages
