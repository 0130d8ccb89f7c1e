"""The supervisor's restart policy (mcpplat/processes.py): back-off, its reset, and when to give up.

The supervisor's loop runs here with small real children; tests/chaos runs it over the whole platform.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from apps.common.management.commands.run_platform import Command
from mcpplat import embedded
from mcpplat.processes import Process, RestartPolicy


def test_a_child_that_keeps_dying_is_restarted_after_doubling_delays_up_to_the_cap():
    # given a policy that tolerates many failures
    policy = RestartPolicy(initial_s=0.5, max_s=4, max_failures=100, window_s=60)
    # when a child dies right after each start, a minute apart (so the window never fills)
    delays = [policy.after_exit(now=60.0 * i, uptime_s=0.1) for i in range(6)]
    # then the delay doubles and stops at the cap
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_child_that_stayed_up_starts_again_from_the_first_delay():
    # given a child that failed three times in a row
    policy = RestartPolicy(initial_s=0.5, stable_after_s=30, max_failures=100)
    for i in range(3):
        policy.after_exit(now=100.0 * i, uptime_s=1)
    # when it then ran for longer than stable_after_s before dying
    delay = policy.after_exit(now=1000.0, uptime_s=45)
    # then the back-off starts over
    assert delay == 0.5


def test_too_many_exits_within_the_window_give_up():
    # given a policy of 5 exits within 60 s
    policy = RestartPolicy(max_failures=5, window_s=60)
    # when a child exits 5 times within a minute
    results = [policy.after_exit(now=10.0 * i, uptime_s=1) for i in range(5)]
    # then the first four are restarted and the fifth gives up
    assert all(r is not None for r in results[:4])
    assert results[4] is None
    assert policy.recent_failures == 5


def test_exits_spread_wider_than_the_window_never_give_up():
    # given a policy of 5 exits within 60 s
    policy = RestartPolicy(max_failures=5, window_s=60)
    # when a child exits every 20 s (3 in any window), twenty times
    results = [policy.after_exit(now=20.0 * i, uptime_s=19) for i in range(20)]
    # then it is always restarted
    assert None not in results
    assert policy.recent_failures == 3


@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    """The supervisor's event loop takes SIGINT/SIGTERM and resets them to the defaults when it closes."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _supervisor() -> tuple[Command, io.StringIO]:
    errors = io.StringIO()
    return Command(stdout=io.StringIO(), stderr=errors), errors


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.slow
def test_the_supervisor_restarts_a_killed_child_and_keeps_the_others():
    # given the supervisor running a long-lived child and a steady one
    command, errors = _supervisor()
    processes = [
        Process("victim", _python("import time; time.sleep(60)")),
        Process("steady", _python("import time; time.sleep(60)")),
    ]

    async def scenario() -> int:
        supervising = asyncio.create_task(command._supervise(processes))
        await _eventually(lambda: "victim" in getattr(command, "_children", {}))
        first = command._children["victim"].pid
        steady = command._children["steady"].pid
        # when the victim is killed
        os.kill(first, signal.SIGKILL)
        # then it is started again (a new pid), the steady one untouched, and the supervisor said so
        await _eventually(
            lambda: command._children["victim"].pid != first and command._children["victim"].returncode is None
        )
        assert command._children["steady"].pid == steady
        os.kill(os.getpid(), signal.SIGTERM)  # stop, as an orchestrator would
        return await supervising

    assert asyncio.run(scenario()) == 0
    assert "mcpplat: victim exited with -9 after" in errors.getvalue()
    assert "restarting it in 0.5 s" in errors.getvalue()


@pytest.mark.slow
def test_the_supervisor_stops_the_platform_naming_a_child_whose_restarts_keep_failing():
    # given a child that exits at once every time
    command, errors = _supervisor()
    processes = [
        Process("broken", _python("import sys; sys.exit(3)")),
        Process("steady", _python("import time; time.sleep(60)")),
    ]
    # when the supervisor runs
    code = asyncio.run(command._supervise(processes))
    # then it restarted it with growing delays, then gave up naming it, and stopped the rest
    lines = errors.getvalue().splitlines()
    assert [line.rsplit("in ", 1)[1] for line in lines if "restarting it" in line] == [
        "0.5 s",
        "1.0 s",
        "2.0 s",
        "4.0 s",
    ]
    assert lines[-1] == "mcpplat: broken exited 5 times within 60 s (last exit code 3); stopping the platform"
    assert code == 1
    assert command._children["steady"].returncode is not None


async def _eventually(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_revive_starts_a_killed_embedded_redis_again_and_leaves_a_live_one_alone():
    # given an embedded Redis of its own var dir (sockets in a short path)
    var = Path(tempfile.mkdtemp(prefix="mcpplat-revive-"))
    p = embedded.paths(str(var))
    try:
        embedded.ensure_started(p, postgres=False, redis=True)
        pid = embedded._redis_pid(p)
        assert pid is not None
        # when it is killed
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while embedded._redis_pid(p) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        # then revive starts it again, and a second revive finds nothing to do
        assert embedded.revive(p, postgres=False, redis=True) == ["redis"]
        assert embedded._redis_ping(p)
        assert embedded._redis_pid(p) != pid
        assert embedded.revive(p, postgres=False, redis=True) == []
    finally:
        embedded.stop(p)
        shutil.rmtree(var, ignore_errors=True)
