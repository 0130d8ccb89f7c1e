"""The Docker Engine side of sandboxes, through the `docker` SDK's low-level API. No database here.

Measured pitfalls this module is shaped by (research/spikes.md, Docker section):
- the keep-alive (PID 1's child under tini) runs as uid 10000 and every exec as uid 10001, so user code cannot
  `kill -9 -1`, ptrace or read /proc of the keep-alive;
- read-only root + a size-limited tmpfs workdir (with uid/gid options: tmpfs loses `mode=`);
- the SDK has no exec timeout: commands run under `timeout -s KILL`, and a deadline on our side kills every
  process carrying the exec's marker variable when something escaped the wrapper's process group;
- output is streamed and capped, never buffered whole; `put_archive` fails on a read-only container, so files go in
  as a tar piped into an exec's stdin, and the workdir comes out the same way (commit does not include tmpfs).
"""

from __future__ import annotations

import contextlib
import io
import select
import socket
import struct
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions
from django.conf import settings

from apps.common.deployment import sandbox_scope

LABEL_MANAGED = "io.mcpplat.sandbox"
LABEL_ID = "io.mcpplat.sandbox.id"
LABEL_OWNER = "io.mcpplat.sandbox.owner"
LABEL_EXPIRES = "io.mcpplat.sandbox.expires"  # epoch seconds at create time; the database holds the live deadline
# Deployments (or test runs) sharing one engine each reap only their own containers.
LABEL_SCOPE = "io.mcpplat.sandbox.scope"

KEEPALIVE_USER = "10000:10000"
EXEC_USER = "10001:10001"
WORKDIR = "/workspace"
SNAPSHOT_REPOSITORY = "mcpplat/sandbox-snapshot"
_EXEC_MARKER = "MCPPLAT_EXEC"
_KILL_GRACE_S = 2.0
# Exit codes an exec gets when its container went down under it (126: the runtime refused, 128: gVisor lost the
# process, 137: killed, None: no record); only then is the container's state checked, once, or for up to 2 s when
# the runtime itself wrote the error (the engine notices a dead gVisor sandbox a moment late).
_SANDBOX_DOWN_CODES = {126, 128, 137, None}
_RUNTIME_FAILURE_MARKS = (b"OCI runtime exec failed", b'urpc method "containerManager')
RUNSC_HOST_PIDS_HEADROOM = 256  # host threads of gVisor's sentry and gofer, on top of the sandbox's own pids limit


class EngineUnavailable(Exception):
    """The Docker Engine cannot be reached (DOCKER_HOST wrong, dockerd stopped)."""


class ContainerGone(Exception):
    """The container no longer exists in the engine."""


class RuntimeFailure(Exception):
    """The engine refused an operation (bad image, runtime missing, …); the message says which."""


_local = threading.local()


def client() -> docker.APIClient:
    """One low-level client per thread (requests sessions are not meant to be shared across threads)."""
    api: docker.APIClient | None = getattr(_local, "api", None)
    base_url = settings.DOCKER_HOST
    if api is None or getattr(_local, "base_url", None) != base_url:
        with engine_errors():
            api = docker.APIClient(base_url=base_url, version="auto", timeout=60)
        _local.api, _local.base_url = api, base_url
    return api


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Translate SDK failures into the three errors callers handle."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise ContainerGone(str(exc.explanation or exc)) from exc
    except docker.errors.APIError as exc:
        message = str(exc.explanation or exc)
        if "is not running" in message:  # 409 on exec create, 500 on exec start
            # For a sandbox a stopped container is as good as gone: nothing can run in it again.
            raise ContainerGone(message) from exc
        raise RuntimeFailure(message) from exc
    except (
        docker.errors.DockerException,
        requests.exceptions.ConnectionError,
        ConnectionError,
        FileNotFoundError,
    ) as exc:
        raise EngineUnavailable(
            f"the Docker Engine at DOCKER_HOST={settings.DOCKER_HOST} is not reachable ({type(exc).__name__}): "
            "start dockerd or point DOCKER_HOST at a running engine"
        ) from exc


def ping() -> None:
    with engine_errors():
        client().ping()


def image_present(ref: str) -> bool:
    with engine_errors():
        try:
            client().inspect_image(ref)
        except docker.errors.ImageNotFound:
            return False
    return True


# ------------------------------------------------------------------------------------------ containers


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    sandbox_id: str
    image: str
    owner: str
    expires_epoch: int
    memory_mb: int
    cpus: float
    pids: int
    disk_mb: int
    runtime: str = "runc"


def container_start(spec: ContainerSpec) -> str:
    """Create and start a hardened, network-less container; returns its id. Nothing is left behind on failure."""
    api = client()
    host_config = api.create_host_config(
        network_mode="none",
        read_only=True,
        tmpfs={
            WORKDIR: f"rw,nosuid,nodev,size={spec.disk_mb}m,uid=10001,gid=10001,mode=0700",
            "/tmp": "rw,nosuid,nodev,size=16m,uid=10001,gid=10001,mode=1777",  # noqa: S108 - inside the container
        },
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=f"{spec.memory_mb}m",
        memswap_limit=f"{spec.memory_mb}m",  # no swap: the limit is the limit
        nano_cpus=int(spec.cpus * 1e9),
        # Under gVisor the host cgroup holds the sentry's own threads too: the user's process count is enforced inside
        # the sandbox instead (RLIMIT_NPROC is counted per uid by the sentry, not across the host as under runc).
        pids_limit=spec.pids + RUNSC_HOST_PIDS_HEADROOM if spec.runtime == "runsc" else spec.pids,
        init=True,  # zombies reaped, fast stop (gVisor 2024-07+ handles it; 2022's runsc did not: docs/sandbox.md)
        log_config=docker.types.LogConfig(type="none"),
        shm_size="16m",
        ulimits=[
            docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
            *([docker.types.Ulimit(name="nproc", soft=spec.pids, hard=spec.pids)] if spec.runtime == "runsc" else []),
        ],
        runtime=spec.runtime,
        ipc_mode="private",
    )
    labels = {
        LABEL_MANAGED: "1",
        LABEL_ID: spec.sandbox_id,
        LABEL_OWNER: spec.owner,
        LABEL_EXPIRES: str(spec.expires_epoch),
        LABEL_SCOPE: sandbox_scope(),
    }
    with engine_errors():
        try:
            api.inspect_image(spec.image)
        except docker.errors.ImageNotFound:
            raise RuntimeFailure(
                f"image {spec.image} is not in the Docker Engine (images are not pulled): build it (make "
                "sandbox-image for the default one) or `docker load` it on the engine"
            ) from None
        created = api.create_container(
            spec.image,
            command=["sleep", "infinity"],
            user=KEEPALIVE_USER,
            working_dir=WORKDIR,
            hostname="sandbox",
            labels=labels,
            host_config=host_config,
            network_disabled=True,
            environment={"HOME": WORKDIR},
        )
    container_id: str = created["Id"]
    try:
        with engine_errors():
            api.start(container_id)
    except BaseException:
        container_remove(container_id)
        raise
    return container_id


def container_remove(container_id: str) -> bool:
    """Kill and remove; True when it existed. Idempotent."""
    try:
        with engine_errors():
            client().remove_container(container_id, force=True, v=True)
    except ContainerGone:
        return False
    except RuntimeFailure as exc:
        if "already in progress" in str(exc) or "No such container" in str(exc):
            return False
        raise
    return True


def container_stop_reason(container_id: str) -> str:
    """Why a sandbox's container is not running, in words for the caller: removed, killed for memory, exited."""
    try:
        with engine_errors():
            state = client().inspect_container(container_id)["State"]
    except (ContainerGone, RuntimeFailure, EngineUnavailable):
        return "its container was removed outside the platform"
    if state.get("OOMKilled") or state.get("ExitCode") == 137:
        return "its container was killed (exit 137): the sandbox as a whole ran out of memory or processes"
    return f"its container stopped (exit {state.get('ExitCode')})"


def container_running(container_id: str) -> bool:
    try:
        with engine_errors():
            state = client().inspect_container(container_id)["State"]
    except ContainerGone:
        return False
    return bool(state.get("Running"))


@dataclass(frozen=True)
class LabelledContainer:
    id: str
    sandbox_id: str
    owner: str
    expires_epoch: int
    running: bool


def containers_labelled() -> list[LabelledContainer]:
    """Every sandbox container of this deployment (its sandbox scope) the engine holds, running or not."""
    with engine_errors():
        rows = client().containers(all=True, filters={"label": [LABEL_MANAGED, f"{LABEL_SCOPE}={sandbox_scope()}"]})
    found = []
    for row in rows:
        labels = row.get("Labels") or {}
        try:
            expires = int(labels.get(LABEL_EXPIRES, "0"))
        except ValueError:
            expires = 0
        found.append(
            LabelledContainer(
                id=row["Id"],
                sandbox_id=labels.get(LABEL_ID, ""),
                owner=labels.get(LABEL_OWNER, ""),
                expires_epoch=expires,
                running=row.get("State") == "running",
            )
        )
    return found


# ------------------------------------------------------------------------------------------------ exec


OutputCallback = Callable[[str, bytes], None]


@dataclass
class ExecResult:
    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    truncated: bool = False
    timed_out: bool = False
    duration_ms: float = 0.0
    output_bytes: int = 0  # everything the process wrote, including what was cut
    killed: bool = False
    cancelled: bool = False
    oom_killed: bool = False  # set by services.sandbox_exec from the memory cgroup's counter
    adopted_attempt: int | None = None  # set by services.sandbox_exec: the lost attempt whose command this reports
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- exec ledger

# The exec ledger: a job's command runs at most once per sandbox, whatever happens to the worker that started it.
# `run` starts the command unless the job's ledger entry exists (mkdir is the atomic test-and-set), with its output
# going to files in the entry and its exit status written there when it ends, then follows those files until the
# command is gone and exits with its status. A retry of a job whose worker died therefore attaches to the command the
# lost attempt started (still running or finished) and reports its whole output and real exit status, instead of
# running it again. `inspect` prints the entry's state: `none`, `running <attempt>`, `finished <attempt> <status>`,
# or `killed <attempt>` (the command is gone without a status: killed with its exec, e.g. by a cancel).
# The command keeps its `timeout -s KILL` inside the entry, so its deadline holds with no worker attached. Entries of
# ended commands are pruned 5 minutes after they ended (a lost worker's retry comes within seconds). The followers
# (`tail --pid`, GNU coreutils like `timeout`) notice the command's end within their 10 ms poll: an exec through the
# ledger took 75-94 ms at p50 against 53-56 ms plain (`echo`, runc, 30 execs each).
LEDGER_ROOT = "/tmp/.mcpplat-exec"  # noqa: S108 - inside the container (its own tmpfs)
LEDGER_PRUNE_MIN = 5
_LEDGER_SCRIPT = (
    "mode=$1 dir=$2 attempt=$3; shift 3; root=${dir%/*}\n"
    'if [ "$mode" = inspect ]; then\n'
    '  if [ ! -d "$dir" ]; then echo none\n'
    '  elif [ -s "$dir/exit" ]; then echo "finished $(cat "$dir/attempt") $(cat "$dir/exit")"\n'
    '  elif p=$(cat "$dir/pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then\n'
    '    echo "running $(cat "$dir/attempt")"\n'
    '  else echo "killed $(cat "$dir/attempt" 2>/dev/null || echo 0)"; fi\n'
    "  exit 0\n"
    "fi\n"
    'mkdir -p "$root"\n'
    f'for old in $(find "$root" -mindepth 1 -maxdepth 1 -type d -mmin +{LEDGER_PRUNE_MIN}); do\n'
    '  p=$(cat "$old/pid" 2>/dev/null)\n'
    '  if [ -e "$old/exit" ] || [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then rm -rf "$old"; fi\n'
    "done\n"
    "exec 3<&0\n"
    'if mkdir "$dir" 2>/dev/null; then\n'
    '  echo "$attempt" > "$dir/attempt"; : > "$dir/out"; : > "$dir/err"\n'
    '  ( "$@" <&3 >"$dir/out" 2>"$dir/err" 3<&-; echo $? > "$dir/exit.part"; mv "$dir/exit.part" "$dir/exit" ) &\n'
    '  echo $! > "$dir/pid.part"; mv "$dir/pid.part" "$dir/pid"\n'
    "else\n"
    '  i=0; while [ ! -s "$dir/pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done\n'
    "fi\n"
    "exec 3<&-\n"
    'pid=$(cat "$dir/pid")\n'
    'tail -c +1 -s 0.01 --pid="$pid" -f "$dir/err" >&2 &\n'
    'tail -c +1 -s 0.01 --pid="$pid" -f "$dir/out"\n'
    "wait\n"
    'if [ -s "$dir/exit" ]; then exit "$(cat "$dir/exit")"; fi\n'
    "exit 137\n"
)


@dataclass(frozen=True)
class LedgerEntry:
    """Where a job's command stands in a sandbox's exec ledger (`state`: none, running, finished, killed)."""

    state: str
    attempt: int | None = None
    exit_code: int | None = None


def ledger_dir(key: str) -> str:
    """The ledger entry of `key` (a job id: letters, digits and dashes only)."""
    if not key or not all(c.isalnum() or c == "-" for c in key):
        raise ValueError(f"exec ledger key {key!r}: use a job id")
    return f"{LEDGER_ROOT}/{key}"


def ledger_marker(key: str) -> str:
    """The exec marker of every attempt of one job, so killing a retry's exec also kills the command it adopted."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mcpplat-exec:{key}").hex


def ledger_inspect(container_id: str, key: str) -> LedgerEntry:
    argv = ["sh", "-c", _LEDGER_SCRIPT, "sh", "inspect", ledger_dir(key), "0"]
    result = exec_run(container_id, argv, timeout_s=10, output_limit=4096)
    words = result.stdout.decode(errors="replace").split()
    if result.exit_code != 0 or not words or words[0] not in {"none", "running", "finished", "killed"}:
        raise RuntimeFailure(f"the exec ledger could not be read (exit {result.exit_code}): {result.stderr[:200]!r}")
    numbers = [int(w) for w in words[1:] if w.lstrip("-").isdigit()]
    return LedgerEntry(
        state=words[0],
        attempt=numbers[0] if numbers else None,
        exit_code=numbers[1] if len(numbers) > 1 else None,
    )


def exec_run(
    container_id: str,
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | IO[bytes] | None = None,
    timeout_s: float,
    output_limit: int,
    workdir: str = WORKDIR,
    on_output: OutputCallback | None = None,
    stdout_sink: IO[bytes] | None = None,
    cancelled: Callable[[], bool] | None = None,
    address_space_mb: int | None = None,
    ledger: tuple[str, int] | None = None,
) -> ExecResult:
    """Run `argv` as the exec user and stream its output.

    stdout/stderr are demultiplexed from the hijacked exec socket (what `exec_start(stream=True, demux=True)` does,
    but on a socket we can also write stdin to and put a deadline on). Output past `output_limit` bytes is dropped,
    `truncated` is set and the process is killed. At `timeout_s` the `timeout -s KILL` wrapper kills the process
    group; `_KILL_GRACE_S` later anything that escaped it (setsid) is killed by its marker. The sandbox survives.
    `stdout_sink`, when given, receives stdout instead of memory (tar of a workdir); the limit still applies.
    `cancelled` is polled about every 0.25 s: when it turns true the process is killed and `cancelled` is set.
    `address_space_mb` caps the process's virtual memory (RLIMIT_AS): under gVisor the whole sandbox shares one
    memory cgroup with the sentry, so a hog would otherwise take the sandbox down instead of failing its allocation.
    `ledger` = (key, attempt) runs the command through the exec ledger under `key` (a job id): started at most once
    per key, and followed to its end by whichever attempt comes (see `_LEDGER_SCRIPT`).
    """
    api = client()
    marker = ledger_marker(ledger[0]) if ledger is not None else uuid.uuid4().hex
    environment = {**(env or {}), _EXEC_MARKER: marker}
    seconds = max(1, int(timeout_s + 0.999))
    wrapped = ["timeout", "-s", "KILL", str(seconds), *argv]
    if ledger is not None:
        key, attempt = ledger
        wrapped = ["sh", "-c", _LEDGER_SCRIPT, "sh", "run", ledger_dir(key), str(attempt), *wrapped]
    if address_space_mb is not None:
        # `ulimit -v` takes KiB; sh (not prlimit) because every image that can run `timeout` has a shell.
        wrapped = ["sh", "-c", f'ulimit -v {address_space_mb * 1024} && exec "$@"', "sh", *wrapped]
    started = time.monotonic()
    with engine_errors():
        exec_id = api.exec_create(
            container_id,
            wrapped,
            stdin=stdin is not None,
            stdout=True,
            stderr=True,
            user=EXEC_USER,
            workdir=workdir,
            environment=environment,
        )["Id"]
        raw_sock = api.exec_start(exec_id, socket=True)
    sock: socket.socket = getattr(raw_sock, "_sock", raw_sock)
    result = ExecResult(exit_code=None)
    writer: threading.Thread | None = None
    if stdin is not None:
        writer = threading.Thread(target=_write_stdin, args=(sock, stdin), daemon=True)
        writer.start()
    kept = {"stdout": bytearray(), "stderr": bytearray()}
    kept_total = 0
    # The stream must end by this time; after a marker kill it gets a short grace instead.
    deadline = [started + seconds + _KILL_GRACE_S]

    def kill() -> None:
        result.killed = True
        _kill_marked(container_id, marker)
        deadline[0] = time.monotonic() + _KILL_GRACE_S

    polled = [time.monotonic()]

    def current_deadline() -> float:
        if cancelled is not None and not result.killed and time.monotonic() - polled[0] >= 0.25:
            polled[0] = time.monotonic()
            if cancelled():
                result.cancelled = True
                return 0.0
        return deadline[0]

    try:
        for stream, chunk in _frames(sock, current_deadline):
            if stream is None:  # deadline passed with the stream open: cancelled, or something escaped the wrapper
                if not result.killed:
                    result.timed_out = not result.cancelled
                    kill()
                    continue
                break  # even the marker kill did not end the stream: give up on it (destroy/reaper will)
            result.output_bytes += len(chunk)
            piece = chunk[: max(0, output_limit - kept_total)]
            if piece:
                kept_total += len(piece)
                if stream == "stdout" and stdout_sink is not None:
                    stdout_sink.write(piece)
                else:
                    kept[stream] += piece
                if on_output is not None:
                    on_output(stream, piece)
            if len(piece) < len(chunk) and not result.truncated:
                result.truncated = True
                kill()
    finally:
        # Shut the connection down but leave closing the file object to the SDK's response (closing it here makes
        # the response's own close fail noisily at garbage collection).
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    result.exit_code = _exit_code(api, exec_id)
    result.duration_ms = (time.monotonic() - started) * 1000
    runtime_said = any(mark in kept["stderr"] for mark in _RUNTIME_FAILURE_MARKS)
    if result.exit_code in _SANDBOX_DOWN_CODES and _stopping(container_id, wait_s=2 if runtime_said else 0):
        # The container itself stopped under the exec (gVisor stops a sandbox that outgrows its memory as a whole):
        # the exit code is the runtime's, not the program's.
        raise ContainerGone(f"container {container_id[:12]} stopped during the exec")
    timeout_like = result.exit_code in (124, 137) and result.duration_ms >= seconds * 1000 - 50
    if timeout_like and not result.truncated and not result.cancelled:
        result.timed_out = True
    result.stdout, result.stderr = bytes(kept["stdout"]), bytes(kept["stderr"])
    if writer is not None:
        writer.join(timeout=1)
    return result


def _stopping(container_id: str, *, wait_s: float) -> bool:
    """True when the container is not running, or stops within `wait_s` (the engine notices a dead sandbox late)."""
    deadline = time.monotonic() + wait_s
    while container_running(container_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _write_stdin(sock: socket.socket, stdin: bytes | IO[bytes]) -> None:
    try:
        if isinstance(stdin, bytes | bytearray):
            sock.sendall(stdin)
        else:
            while chunk := stdin.read(256 * 1024):
                sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the process exited (or was killed) before reading everything: its exit code tells the story


def _frames(sock: socket.socket, deadline: Callable[[], float]) -> Iterator[tuple[str | None, bytes]]:
    """Docker's multiplexed stream: 8-byte header (stream type, 0, 0, 0, big-endian size) then the payload.

    Yields (None, b"") whenever `deadline()` passes without the stream ending.
    """
    buffer = bytearray()
    names = {1: "stdout", 2: "stderr"}
    while True:
        remaining = deadline() - time.monotonic()
        if remaining <= 0:
            yield None, b""
            continue
        ready, _, _ = select.select([sock], [], [], min(remaining, 0.25))
        if not ready:
            continue
        try:
            data = sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            continue
        except OSError:
            return
        if not data:
            return
        buffer += data
        while len(buffer) >= 8:
            kind, size = buffer[0], struct.unpack(">L", buffer[4:8])[0]
            if len(buffer) < 8 + size:
                break
            payload = bytes(buffer[8 : 8 + size])
            del buffer[: 8 + size]
            if kind in names:
                yield names[kind], payload


def _exit_code(api: docker.APIClient, exec_id: str) -> int | None:
    for _ in range(500):  # the stream can close a moment before the daemon records the exit
        with engine_errors():
            info = api.exec_inspect(exec_id)
        if not info.get("Running"):
            code = info.get("ExitCode")
            return int(code) if code is not None else None
        time.sleep(0.002)
    return None


_OOM_SCRIPT = (
    "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null | grep '^oom_kill ' || true"
)


def oom_kills(container_id: str) -> int | None:
    """How many processes the kernel has OOM-killed in this container (cgroup v1 or v2), None if unknown.

    An exec killed for memory exits 137 but the engine's `OOMKilled` only covers the main process (spikes.md).
    """
    result = exec_run(container_id, ["sh", "-c", _OOM_SCRIPT], timeout_s=5, output_limit=1024)
    for line in result.stdout.decode().splitlines():
        _, _, count = line.partition(" ")
        if count.strip().isdigit():
            return int(count)
    return None


# Kill every process of the exec user whose environment carries this exec's marker (its children inherit it).
_KILL_SCRIPT = (
    'for p in /proc/[0-9]*; do grep -qsxz "' + _EXEC_MARKER + '=$1" "$p/environ" && kill -9 "${p#/proc/}"; done; true'
)


def _kill_marked(container_id: str, marker: str) -> None:
    with contextlib.suppress(EngineUnavailable, ContainerGone, RuntimeFailure), engine_errors():
        api = client()
        exec_id = api.exec_create(container_id, ["sh", "-c", _KILL_SCRIPT, "sh", marker], user=EXEC_USER)["Id"]
        api.exec_start(exec_id, detach=True)  # never wait: the stream we are reading must keep draining


# ----------------------------------------------------------------------------------------- files / tar


def tar_of_files(files: Mapping[str, bytes]) -> bytes:
    """A tar of relative paths → contents, owned by the exec user. Paths are validated by the caller."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        now = int(time.time())
        directories: set[str] = set()
        for path, content in files.items():
            parts = path.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.DIRTYPE, 0o755, now, 10001, 10001
                    archive.addfile(info)
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(content), 0o644, now, 10001, 10001
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def files_put(container_id: str, archive: bytes | IO[bytes], *, timeout_s: float = 60) -> ExecResult:
    """Unpack a tar into the workdir through an exec's stdin (put_archive fails on a read-only root)."""
    return exec_run(
        container_id,
        ["tar", "-x", "-m", "--no-same-owner", "--no-same-permissions", "-C", WORKDIR, "-f", "-"],
        stdin=archive,
        timeout_s=timeout_s,
        output_limit=64 * 1024,
    )


def workdir_capture(container_id: str, sink: IO[bytes], *, limit: int, timeout_s: float = 120) -> ExecResult:
    """Write a tar of the workdir to `sink` (commit does not include tmpfs, get_archive of a tmpfs is empty)."""
    return exec_run(
        container_id,
        ["tar", "-c", "-C", WORKDIR, "."],
        timeout_s=timeout_s,
        output_limit=limit,
        stdout_sink=sink,
    )


# --------------------------------------------------------------------------------------------- images


def image_commit(container_id: str, *, repository: str, tag: str, labels: Mapping[str, str]) -> str:
    with engine_errors():
        committed = client().commit(container_id, repository=repository, tag=tag, conf={"Labels": dict(labels)})
    return str(committed["Id"])


def image_save(ref: str, sink: IO[bytes]) -> int:
    """`docker save` into `sink`; returns the byte count."""
    size = 0
    with engine_errors():
        for chunk in client().get_image(ref, chunk_size=1024 * 1024):
            sink.write(chunk)
            size += len(chunk)
    return size


def image_load(source: IO[bytes]) -> None:
    with engine_errors():
        for _ in client().load_image(source):
            pass


def image_remove(ref: str) -> None:
    with contextlib.suppress(ContainerGone, RuntimeFailure), engine_errors():
        client().remove_image(ref, force=True)
