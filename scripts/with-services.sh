#!/usr/bin/env bash
# Run a command against throwaway PostgreSQL and Redis servers on loopback.
#
# Installs Debian's postgresql, redis-server and chromium when missing (as root), starts both
# servers on free ports with temporary data dirs (and a streaming replica of the PostgreSQL one),
# exports DATABASE_URL, REDIS_URL and ARBOOK_TEST_REPLICA_URL, runs "$@", and stops the servers
# (and removes the data) however the command ends.
set -euo pipefail

need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "with-services: installing ${need[*]} from Debian packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  else
    echo "with-services: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
tmp=$(mktemp -d /tmp/arbook-services.XXXXXX)
chmod 755 "$tmp"
mkdir -p "$tmp/pg" "$tmp/replica" "$tmp/sock" "$tmp/redis"
pg_port=$(free_port); redis_port=$(free_port); replica_port=$(free_port)

as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$tmp/pg" "$tmp/replica" "$tmp/sock"
  as_pg=(runuser -u postgres --)
fi

cleanup() {
  set +e
  [ -f "$tmp/replica/data/postmaster.pid" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/replica/data" -m immediate -w stop >/dev/null 2>&1
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/pg/data" -U postgres --auth-local=trust --auth-host=trust \
  -E UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; exit 1; }
# Throwaway data: durability settings off make the suite faster, nothing else changes.
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/server.log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $tmp/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c wal_level=replica -c max_wal_senders=5" >/dev/null \
  || { cat "$tmp/pg/server.log" >&2; exit 1; }
# A real streaming replica of it (pg_basebackup), for the read-replica tests (tests/scale/test_replica.py):
# exported as ARBOOK_TEST_REPLICA_URL, not DATABASE_REPLICA_URL, so the rest of the suite reads one database.
# WITH_REPLICA=0 leaves it out (benchmarks: on one machine its replay competes for the same cores).
if [ "${WITH_REPLICA:-1}" != 0 ]; then
  "${as_pg[@]}" "$pg_bin/pg_basebackup" -h 127.0.0.1 -p "$pg_port" -U postgres -D "$tmp/replica/data" -R -X stream \
    >"$tmp/basebackup.log" 2>&1 || { cat "$tmp/basebackup.log" >&2; exit 1; }
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/replica/data" -l "$tmp/replica/server.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $replica_port -k $tmp/sock -c fsync=off -c max_connections=200 -c hot_standby_feedback=on" >/dev/null \
    || { cat "$tmp/replica/server.log" >&2; exit 1; }
  export ARBOOK_TEST_REPLICA_URL="postgres://postgres@127.0.0.1:$replica_port/arbook"
fi
redis-server --daemonize yes --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$tmp/redis" --pidfile "$tmp/redis/redis.pid" --logfile "$tmp/redis/redis.log"
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/arbook"
export REDIS_URL="redis://127.0.0.1:$redis_port/0"
export ARBOOK_VAR_DIR="$tmp/var"
echo "with-services: PostgreSQL on 127.0.0.1:$pg_port${ARBOOK_TEST_REPLICA_URL:+ (streaming replica on :$replica_port)}, Redis on 127.0.0.1:$redis_port" >&2
set +e
"$@"
status=$?
exit $status
