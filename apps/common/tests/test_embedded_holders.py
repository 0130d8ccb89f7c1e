"""A command in another terminal never stops the embedded services of a running platform (issue 21, class 7).

Two real processes share one var/ dir: a holder that started Redis (as `make run` does) and a second command that
attaches and leaves (as `manage.py shell` does). The second one sees the wall clock stepped: psutil derives
`create_time()` from /proc/stat's `btime`, which moves with the clock, and the old liveness check compared that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpplat import embedded

pytestmark = pytest.mark.slow

_HOLDER = """
import sys
from mcpplat import embedded
p = embedded.paths(sys.argv[1])
embedded.ensure_started(p, postgres=False, redis=True)
print("ready", flush=True)
sys.stdin.read()  # hold until the test closes our stdin, then leave normally (atexit releases)
"""

# The second terminal: its view of the boot time is stepped by `shift` seconds, as after an NTP step or a
# suspend/resume; then it attaches, leaves, and reports what it saw.
_VISITOR = """
import json, sys
import psutil._pslinux
from mcpplat import embedded
shift = float(sys.argv[2])
real = psutil._pslinux.boot_time
psutil._pslinux.boot_time = lambda: real() + shift
p = embedded.paths(sys.argv[1])
embedded.ensure_started(p, postgres=False, redis=True)
embedded.release()
print(json.dumps(embedded.status(p)))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != embedded.CHILD_ENV}
    env["PYTHONPATH"] = str(embedded.ROOT)
    return env


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    var = tmp_path / "var"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(var)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=embedded.ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield var, proc
    if proc.poll() is None:
        proc.communicate("", timeout=60)
    embedded.stop(embedded.paths(str(var)))


@pytest.mark.parametrize("shift", [-86400.0, -3600.0, -1.0, -0.01, 0.0, 0.01, 1.0, 7.0, 3600.0])
def test_a_visitor_with_a_stepped_clock_leaves_the_holders_services_running(holder, shift):
    var, proc = holder
    p = embedded.paths(str(var))
    holder_files = sorted(h.name for h in p.holders.iterdir())
    redis_pid = embedded._redis_pid(p)
    assert redis_pid is not None
    # when another terminal attaches and leaves, seeing the boot time moved by `shift`
    visit = subprocess.run(
        [sys.executable, "-c", _VISITOR, str(var), str(shift)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=embedded.ROOT,
        timeout=120,
        check=True,
    )
    # then the holder is still registered and its Redis is the same live server
    seen = json.loads(visit.stdout)
    assert seen["holders"] == holder_files
    assert seen["redis"] == redis_pid
    assert embedded._redis_ping(p)
    # and when the holder itself leaves, it is the last one and the server stops
    proc.communicate("", timeout=60)
    assert proc.returncode == 0
    assert embedded._redis_pid(p) is None
    assert list(p.holders.iterdir()) == []


def test_a_holder_that_died_without_releasing_is_pruned(tmp_path):
    # given a holder killed outright (no atexit), which leaves its file behind
    var = tmp_path / "var"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(var)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=embedded.ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    p = embedded.paths(str(var))
    proc.kill()
    proc.wait(timeout=60)
    assert len(list(p.holders.iterdir())) == 1
    try:
        # when another command looks
        status = embedded.status(p)
        # then the dead holder is gone (its lock died with it)
        assert status["holders"] == []
        assert list(p.holders.iterdir()) == []
    finally:
        embedded.stop(p)
