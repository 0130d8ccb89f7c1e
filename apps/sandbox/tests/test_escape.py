"""Escape corpus: each attempt is contained, under runc and (when registered with the engine) gVisor's runsc.

The containers are started exactly as services start them (runtime.container_start with the default limits);
every attempt runs as the exec user through runtime.exec_run, as sandbox.exec does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings

from apps.sandbox import runtime, services
from tests import capability

pytestmark = pytest.mark.usefixtures("docker_engine")


def _runtimes() -> list[str]:
    # Both by default; scripts/provision.d/30-sandbox.sh installs gVisor (runsc 2024-07 or newer) and registers it.
    return [name for name in os.environ.get("SANDBOX_TEST_RUNTIMES", "runc,runsc").split(",") if name]


@dataclass(frozen=True)
class Box:
    id: str
    runtime: str
    address_space_mb: int | None


@pytest.fixture(params=_runtimes())
def container(request, docker_engine) -> Iterator[Box]:
    name = request.param
    try:
        registered = name in runtime.client().info().get("Runtimes", {})
    except runtime.EngineUnavailable:
        registered = False
    capability.require(
        "gvisor" if name == "runsc" else "sandbox",
        None if registered else f"runtime {name} is not registered with the engine",
        "run scripts/provision.d/30-sandbox.sh as root",
    )
    limits = {**settings.SANDBOX_DEFAULT_LIMITS, "pids": 64, "memory_mb": 128, "disk_mb": 16}
    spec = runtime.ContainerSpec(
        sandbox_id=f"escape-{name}",
        image=settings.SANDBOX_DEFAULT_IMAGE,
        owner="test:escape",
        expires_epoch=int(time.time()) + 300,
        runtime=name,
        **limits,
    )
    container_id = runtime.container_start(spec)
    yield Box(container_id, name, services.exec_address_space_mb(name, limits["memory_mb"]))
    runtime.container_remove(container_id)


def run(box: Box, command: str, timeout_s: float = 10) -> runtime.ExecResult:
    """As sandbox.exec runs a command: the exec user, the timeout wrapper, the runtime's memory cap."""
    return runtime.exec_run(
        box.id, ["sh", "-c", command], timeout_s=timeout_s, output_limit=1 << 20, address_space_mb=box.address_space_mb
    )


def alive(box: Box) -> bool:
    result = run(box, "echo alive")
    return result.exit_code == 0 and result.stdout == b"alive\n"


def _alive_or_stopped(box: Box) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not runtime.container_running(box.id):
            return True
        try:
            if alive(box):
                return True
        except runtime.ContainerGone:
            return True
        time.sleep(0.5)
    return False


def test_no_network(container):
    # when code looks for interfaces and tries an outside address (a TEST-NET address: no route exists, so no packet)
    interfaces = run(container, "cat /proc/net/dev")
    dial = run(
        container,
        "python3 -c \"import socket\ntry:\n socket.create_connection(('192.0.2.1', 80), 2)\n"
        'except OSError as e: print(e.errno)"',
    )
    # then only loopback exists and the connect fails at once: network (runc) or host (gVisor) unreachable
    names = {line.split(":")[0].strip() for line in interfaces.stdout.decode().splitlines()[2:]}
    assert names <= {"lo"}
    assert dial.stdout.strip() in {b"101", b"113"}


def test_fork_bomb_is_stopped_at_the_pids_limit(container):
    # when a fork bomb runs until its timeout
    try:
        bomb = run(container, 'python3 -c "import os\nwhile True:\n  try: os.fork()\n  except OSError: pass"', 4)
    except runtime.ContainerGone:
        assert container.runtime != "runc"
        bomb = runtime.ExecResult(exit_code=137, timed_out=True)
    # then the timeout killed it and the host carries on; under runc the sandbox survives too. gVisor has no OOM
    # killer inside the sentry: 64 forked interpreters outgrow the sandbox's 128 MiB and the host's cgroup stops the
    # sandbox as a whole (sandbox.exec then reports it destroyed, with the reason): contained either way.
    assert bomb.timed_out is True or bomb.exit_code != 0
    if container.runtime == "runc":
        assert alive(container)
    else:
        assert _alive_or_stopped(container)


def test_memory_hog_is_killed_not_the_sandbox(container):
    # when code allocates (and touches) far more than the 128 MiB limit
    hog = run(container, 'python3 -c "b = bytearray(1 << 30)\nfor i in range(0, len(b), 4096): b[i] = 1"', 20)
    # then the process dies (OOM kill 137, or MemoryError) and the sandbox survives
    assert hog.exit_code != 0
    assert alive(container)


def test_writes_outside_the_workdir_fail_and_the_workdir_is_bounded(container):
    # when code writes to the root filesystem, system folders and past the workdir's 16 MiB
    outside = run(container, "for p in /x /etc/x /usr/bin/x /root/x /var/x; do touch $p 2>/dev/null && echo $p; done")
    inside = run(container, "touch /workspace/ok && echo ok")
    flood = run(container, "head -c 64000000 /dev/zero > /workspace/big; echo $?")
    # then nothing outside was written, the workdir works, and it is full at its size
    assert outside.stdout == b""
    assert inside.stdout == b"ok\n"
    assert flood.stdout.strip() != b"0"
    assert b"No space left" in flood.stderr
    run(container, "rm -f /workspace/big")


def test_privilege_escalation_fails(container):
    # when code tries to become root, mount, or gain capabilities
    attempt = run(
        container,
        "python3 -c \"import os\ntry:\n os.setuid(0); print('root')\nexcept PermissionError: print('denied')\"; "
        "mount -t tmpfs none /mnt 2>/dev/null && echo mounted; "
        "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; id -u",
    )
    # then there is no root, no mount, no capability, and no-new-privileges holds
    lines = attempt.stdout.decode().split("\n")
    assert lines[0] == "denied"
    assert "mounted" not in lines
    assert "CapEff:\t0000000000000000" in lines
    assert "CapPrm:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines or "gVisor" in run(container, "dmesg 2>/dev/null | head -1").stdout.decode()
    assert lines[-2] == "10001"


def test_host_files_and_engine_are_out_of_reach(container):
    # when code looks for the host's files, the engine socket and the keep-alive's secrets
    probe = run(
        container,
        "ls /work /root/.docker /var/run/docker.sock /run/docker.sock 2>/dev/null; "
        "cat /proc/1/environ 2>/dev/null && echo read-pid1; "
        "cat /etc/shadow 2>/dev/null && echo read-shadow; echo done",
    )
    # then none of them is there or readable. gVisor shows /proc/<pid>/environ world-readable (0444): there the
    # keep-alive's environment must hold nothing but the image's and Docker's own variables (a sandbox's `env` is
    # given to each exec, never to the container)
    if container.runtime == "runc":
        assert probe.stdout == b"done\n"
    else:
        environ, _, rest = probe.stdout.partition(b"read-pid1\n")
        assert rest == b"done\n"
        names = {item.split(b"=", 1)[0].decode() for item in environ.split(b"\0") if item}
        image_env = runtime.client().inspect_image(settings.SANDBOX_DEFAULT_IMAGE)["Config"].get("Env") or []
        assert names <= {"PATH", "HOME", "HOSTNAME", *(item.split("=", 1)[0] for item in image_env)}


def test_kill_all_cannot_take_the_keepalive_down(container):
    # when user code signals every process it can see
    run(container, "kill -9 -1")
    # then the keep-alive (another uid) survives and the sandbox still runs code
    assert runtime.container_running(container.id)
    assert alive(container)
