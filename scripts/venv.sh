#!/usr/bin/env bash
# Create .venv from a Python >= 3.12 (PATH first, then pyenv) and install requirements/$1.txt into it.
# Reinstalls only when the requirements file changed since the last install (a stamp holds its hash).
set -euo pipefail
cd "$(dirname "$0")/.."
which_reqs=${1:-base}
reqs="requirements/${which_reqs}.txt"

find_python() {
  local candidate version
  for candidate in python3.13 python3.12 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then
      version=$("$candidate" -c 'import sys; print(sys.version_info >= (3, 12))' 2>/dev/null || echo False)
      if [ "$version" = "True" ]; then command -v "$candidate"; return 0; fi
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    local root; root=$(pyenv root)
    for candidate in $(ls -d "$root"/versions/3.1[2-9]* "$root"/versions/3.[2-9]* 2>/dev/null | sort -V -r); do
      if [ -x "$candidate/bin/python3" ]; then echo "$candidate/bin/python3"; return 0; fi
    done
  fi
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
