# Browser capability: Debian's Chromium, driven by Playwright through executable_path (never `playwright install`).
# shellcheck source=scripts/provision.d/lib.sh
. "$(dirname "$0")/lib.sh"
chromium=${BROWSER_EXECUTABLE:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  apt_install chromium || true
  [ -x "$chromium" ] || missing browser "no Chromium at $chromium" "apt-get install chromium (or set BROWSER_EXECUTABLE)"
fi
finish
