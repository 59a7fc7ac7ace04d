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
# cargo verifies each package against the others through a registry of its own, whose sources it
# unpacks under CARGO_HOME once per version and builds into target/package as if they never
# changed: left from an earlier run, they would stand in for today's (same version, older code).
# So both go: the unpacked sources, and our packages' builds in a target folder of the check's
# own (where the other crates' builds stay, since a published crate never changes).
export CARGO_TARGET_DIR="$PWD/target/package-check"
rm -rf "$CARGO_TARGET_DIR/package" "$CARGO_TARGET_DIR"/debug/.fingerprint/eventloom-* \
  "$CARGO_TARGET_DIR"/debug/deps/*eventloom* "$CARGO_TARGET_DIR"/debug/build/eventloom-*
for unpacked in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  case "$unpacked" in */index.crates.io-*/) continue ;; esac
  for package in ${packages//-p /}; do rm -rf "${unpacked}${package}"-[0-9]*; done
done
# --allow-dirty: CI packages a clean clone; a developer may run this with changes not committed.
cargo package --allow-dirty $packages
