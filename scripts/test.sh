#!/usr/bin/env bash
# Runs the whole sessiond test suite. Installs and starts what the tests need
# (Redis, PostgreSQL) when missing, so it passes on a fresh machine too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
# Debian packages the tests use: randomness gates (rngtest, ent).
missing=()
command -v rngtest >/dev/null || missing+=(rng-tools5)
command -v ent >/dev/null || missing+=(ent)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/ensure-services.sh   # Redis and PostgreSQL on their standard loopback ports
scripts/ensure-tools.sh      # nginx, caddy, chromium + chromedriver for the proxy/browser tests
export SESSIOND_REQUIRE_TOOLS=1
# The proxy and browser tests run the demo application as a program: build it (and the
# sessiond binary) first — `--all-targets` builds examples only as test harnesses.
cargo build -p sessiond --bins --examples
cargo test --workspace --all-targets --no-fail-fast "$@"
cargo test --workspace --doc --no-fail-fast "$@"
