# Chromium for the browser workers and their tests (Playwright drives the system binary; never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
