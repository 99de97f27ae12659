#!/usr/bin/env bash
# Starts the Redis and PostgreSQL servers the store tests use (127.0.0.1:6379 and
# 127.0.0.1:5432, trust auth, database `test`) when they are not reachable; installs them
# with apt-get when missing. Idempotent; safe to call from CI and from tests.
set -euo pipefail

need_apt_update=1
apt_install() {
  if [ "$need_apt_update" = 1 ]; then apt-get update -qq >/dev/null; need_apt_update=0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  echo "ensure-services: nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# --- Redis -------------------------------------------------------------------------------
if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379
fi
command -v redis-cli >/dev/null || apt_install redis-tools

# --- PostgreSQL --------------------------------------------------------------------------
if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432
fi

# Trust auth for local TCP connections and a `test` database (only when reachable as the
# postgres superuser without a password, as on CI machines).
if command -v psql >/dev/null; then
  # A freshly installed PostgreSQL asks for passwords over TCP: on a test machine, switch
  # loopback connections to trust auth (as the project's development machines have it).
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    if [ -w "$hba" ]; then
      echo "ensure-services: enabling trust auth for loopback TCP in $hba" >&2
      sed -i -E 's/^(host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1\/32|::1\/128)[[:space:]]+)[a-z0-9-]+/\1trust/' "$hba"
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
      sleep 1
    fi
  fi
  if psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname = 'test'")" != 1 ]; then
      psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test' >/dev/null
    fi
  else
    echo "ensure-services: cannot log in to PostgreSQL as postgres over TCP (is trust auth on?)" >&2
  fi
fi
echo "ensure-services: redis and postgresql are up"
