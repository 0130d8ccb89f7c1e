# Support pages' browser test (apps/support/tests/test_browser.py): Playwright drives the system Chromium.
# Never `playwright install`: the Python package comes from requirements/dev.txt, the browser from Debian.
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
