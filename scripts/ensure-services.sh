#!/usr/bin/env bash
# Make sure the local Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) that the tests use are up.
# Installs them from Debian's packages when absent, starts them when down. Never stops anything.
# `ensure-services.sh redis` does only Redis (what `make run` needs).
set -euo pipefail
only_redis=0
[ "${1:-}" = redis ] && only_redis=1

need_apt_update=1
apt_install() {
  if [ "$need_apt_update" = 1 ]; then apt-get update -qq; need_apt_update=0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
fi
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379 and could not be started" >&2; exit 1; }
if [ "$only_redis" = 1 ]; then echo "services: redis is up"; exit 0; fi

if ! pg_up; then
  if ! ls /etc/postgresql >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$ver/main
  # Trust auth on loopback, as the project's machines have it.
  if ! grep -q "twenty-jobs" "$conf/pg_hba.conf" 2>/dev/null; then
    sed -i '1i # twenty-jobs: trust on loopback for tests\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 \
    || su postgres -c "createdb test" || true
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started" >&2; exit 1; }
command -v node >/dev/null || apt_install nodejs npm
echo "services: redis and postgresql are up"
