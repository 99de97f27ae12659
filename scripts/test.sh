#!/usr/bin/env bash
# Runs the whole sessiond test suite. Installs and starts what the tests need
# (Redis, PostgreSQL) when missing, so it passes on a fresh machine too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
if [ -x scripts/ensure-services.sh ]; then
  scripts/ensure-services.sh
fi
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"
