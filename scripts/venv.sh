#!/usr/bin/env bash
# Create .venv from a Python >= 3.12 (PATH first, then pyenv) and install requirements/$1.txt into it.
# Reinstalls only when the requirements file changed since the last install (a stamp holds its hash).
set -euo pipefail
cd "$(dirname "$0")/.."
which_reqs=${1:-base}
reqs="requirements/${which_reqs}.txt"

find_python() {
  # 3.12 first (the pinned requirements are compiled for it), then any newer Python; PATH before pyenv.
  local candidate version root=""
  command -v pyenv >/dev/null 2>&1 && root=$(pyenv root)
  for want in 3.12 any; do
    for candidate in python3.12 python3.13 python3 python \
        $( [ -n "$root" ] && ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V ); do
      command -v "$candidate" >/dev/null 2>&1 || continue
      version=$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
      if [ "$want" = 3.12 ] && [ "$version" != 3.12 ]; then continue; fi
      if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        command -v "$candidate"; return 0
      fi
    done
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
  if ! python=$(find_python); then
    echo "mcpplat: no Python >= 3.12 found on PATH or in pyenv: install one (pyenv install 3.12, or apt-get install python3.12) and run again" >&2
    exit 2
  fi
  echo "mcpplat: creating .venv with $python"
  rm -rf .venv
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q --disable-pip-version-check uv
stamp=".venv/.installed-${which_reqs}"
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "mcpplat: installing $reqs"
  .venv/bin/uv pip install -q --python .venv/bin/python -r "$reqs"
  echo "$want" > "$stamp"
fi
