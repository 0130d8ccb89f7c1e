"""Each way the foundation can be misconfigured or left in a bad state gives one line naming cause and fix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, sys
from mcpplat import embedded
p = embedded.paths(sys.argv[1])
embedded.ensure_started(p, postgres=True, redis=True)
print(json.dumps(embedded.status(p)), flush=True)
if len(sys.argv) > 2:
    sys.stdin.read()  # hold until killed
"""


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"MCPPLAT_EMBEDDED_CHILD", "DJANGO_SETTINGS_MODULE"}}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def _owner(var: Path, *, hold: bool = False) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MCPPLAT_EMBEDDED_CHILD"}
    argv = [sys.executable, "-c", SCRIPT, str(var)] + (["hold"] if hold else [])
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def var_dir():
    folder = Path(tempfile.mkdtemp(prefix="mcpplat-var-"))
    yield folder
    from mcpplat import embedded

    embedded.stop(embedded.paths(str(folder)))
    shutil.rmtree(folder, ignore_errors=True)


def test_wrong_database_url_is_one_line_naming_it():
    result = _manage("check", DATABASE_URL="mysql://localhost/db")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mcpplat: DATABASE_URL: cannot use 'mysql': expected postgres://user:password@host:5432/name"
    ]


def test_production_names_every_missing_variable():
    result = _manage("check", MCPPLAT_ENV="production")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith("mcpplat: production mode needs SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, REDIS_URL")


def test_unknown_mode_is_refused():
    result = _manage("check", MCPPLAT_ENV="staging")
    assert result.returncode == 2
    assert "MCPPLAT_ENV='staging'" in result.stderr


def test_port_in_use_names_the_port_and_the_fix():
    # given something already listening on the port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # when the platform starts on it
        result = _manage("run_platform", "--no-migrate", PORT=str(port), DJANGO_SETTINGS_MODULE="mcpplat.settings.test")
    # then
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert f"PORT={port + 1} make run" in result.stderr


@pytest.mark.slow
def test_missing_redis_binary_is_named_and_nothing_is_left_running(var_dir):
    # when the embedded Redis cannot start
    result = _manage("check", VAR_DIR=str(var_dir), REDIS_SERVER_BIN="/nonexistent/redis-server")
    # then one line says what and how to fix it
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "mcpplat: REDIS_SERVER_BIN=/nonexistent/redis-server is not an executable file: fix it or unset it"
    )
    # and the PostgreSQL started for this attempt was stopped again
    assert not (var_dir / "postgres" / "postmaster.pid").exists()


@pytest.mark.slow
def test_stale_pid_files_and_dead_owners_are_recovered(var_dir):
    from mcpplat import embedded

    p = embedded.paths(str(var_dir))
    # given a first owner that was killed -9 while holding the services
    first = _owner(var_dir, hold=True)
    status = json.loads(first.stdout.readline())
    assert status["postgres"]
    assert status["redis"]
    first.send_signal(signal.SIGKILL)
    first.wait()
    pg_pid, redis_pid = status["postgres"], status["redis"]
    # and the servers were killed too, leaving pid files that point at a live unrelated process (a reused PID)
    for pid in (pg_pid, redis_pid):
        psutil.Process(pid).kill()
    for pid in (pg_pid, redis_pid):
        psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=10)
    lines = (p.pgdata / "postmaster.pid").read_text().splitlines()
    (p.pgdata / "postmaster.pid").write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
    p.redis_pidfile.write_text(str(os.getpid()))
    # when a new owner starts
    second = _owner(var_dir)
    out, err = second.communicate(timeout=120)
    # then it started fresh servers, pruned the dead holder, did not touch our process, and stopped them on exit
    assert second.returncode == 0, err
    status = json.loads(out)
    assert status["postgres"] not in (None, pg_pid, os.getpid())
    assert status["redis"] not in (None, redis_pid, os.getpid())
    assert len(status["holders"]) == 1
    assert embedded.status(p)["postgres"] is None
    assert embedded.status(p)["redis"] is None
