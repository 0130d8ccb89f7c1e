# System Chromium for the Playwright admin and browser tests (Playwright drives it by path; never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
