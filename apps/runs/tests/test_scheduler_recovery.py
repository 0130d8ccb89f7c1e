"""The scheduler survives Redis blips: a short lease, a leader that takes it back, a standby that asks often, and
periodic actors that never wait on each other's period (docs/reliability.md, "Scheduler")."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from apps.runs import scheduler
from conftest import wait_for
from mcpplat import embedded


class OwnRedis:
    """A redis-server of this test's own on a unix socket, stopped and started again by the test."""

    def __init__(self, folder: Path):
        self.socket = folder / "r.sock"
        self.url = f"unix://{self.socket}?db=0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [str(embedded.redis_binary()), "--port", "0", "--unixsocket", str(self.socket), "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.socket.exists, timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    folder = Path(tempfile.mkdtemp(prefix="mcpplat-sched-"))
    server = OwnRedis(folder)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def run_scheduler() -> Iterator[Callable[..., threading.Event]]:
    """Run scheduler.run_forever in a thread; stopped at the end of the test."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(**options: object) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run_forever, args=(stop,), kwargs=options, daemon=True)
        thread.start()
        running.append((stop, thread))
        return stop

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(10)


def _schedule(monkeypatch: pytest.MonkeyPatch, sent: list[str], *, fail_first: str | None = None) -> None:
    """A fast entry and an hourly one, as in production (audit_digest is hourly)."""
    failed: set[str] = set()

    def sender(name: str) -> Callable[[], None]:
        def send() -> None:
            if name == fail_first and name not in failed:
                failed.add(name)
                # A fake only for the error: the broker's connection failing as the message is sent.
                raise redis.ConnectionError("fake: connection refused while sending")
            sent.append(name)

        return send

    monkeypatch.setattr(
        scheduler,
        "SCHEDULE",
        {
            "fast": scheduler.Periodic("fast", 0.2, sender("fast")),
            "hourly": scheduler.Periodic("hourly", 3600, sender("hourly")),
        },
    )


def test_the_lease_lasts_seconds_not_a_multiple_of_the_longest_period(own_redis, run_scheduler, monkeypatch):
    # given a schedule with an hourly entry
    sent: list[str] = []
    _schedule(monkeypatch, sent)
    # when a scheduler leads
    run_scheduler(redis_url=own_redis.url, tick_s=0.05)
    wait_for(lambda: "fast" in sent, 5)
    # then its lease is the 15 s lease, not 3 hours
    ttl_ms = own_redis.client().pttl(scheduler.LEADER_KEY)
    assert 0 < ttl_ms <= scheduler.LEASE_S * 1000


def test_a_leader_that_loses_redis_takes_its_lease_back_and_keeps_sending(own_redis, run_scheduler, monkeypatch):
    # given a leading scheduler with an hourly entry in its schedule
    sent: list[str] = []
    _schedule(monkeypatch, sent)
    run_scheduler(redis_url=own_redis.url, tick_s=0.05, retry_s=0.2)
    wait_for(lambda: own_redis.client().get(scheduler.LEADER_KEY), 5)
    leader = own_redis.client().get(scheduler.LEADER_KEY)
    # when Redis dies (its data with it) and comes back
    own_redis.stop()
    time.sleep(1.0)
    own_redis.start()
    before = len(sent)
    # then the same scheduler holds the lease again and the fast entry is sent again
    wait_for(lambda: own_redis.client().get(scheduler.LEADER_KEY) == leader, 5)
    wait_for(lambda: sent[before:].count("fast") >= 3, 5)


def test_a_standby_takes_over_soon_after_its_leader_died(own_redis, run_scheduler, monkeypatch):
    # given the lease held by a leader that was killed (no release; the lease runs out in 1 s)
    sent: list[str] = []
    _schedule(monkeypatch, sent)
    own_redis.client().set(scheduler.LEADER_KEY, "dead-host:1:0", px=1000)
    # when a second scheduler starts as standby
    run_scheduler(redis_url=own_redis.url, tick_s=0.05, standby_check_s=0.2)
    # then it leads as soon as the lease ran out and sends every entry
    wait_for(lambda: {"fast", "hourly"} <= set(sent), 5)
    assert own_redis.client().get(scheduler.LEADER_KEY) != b"dead-host:1:0"


def test_a_send_that_failed_is_retried_soon_not_after_its_period(own_redis, run_scheduler, monkeypatch):
    # given an hourly entry whose first send fails
    sent: list[str] = []
    _schedule(monkeypatch, sent, fail_first="hourly")
    # when the scheduler runs
    run_scheduler(redis_url=own_redis.url, tick_s=0.05, retry_s=0.2)
    # then the hourly entry is sent after the retry delay, and the fast entry never waited for it
    wait_for(lambda: "hourly" in sent, 5)
    assert sent.count("fast") >= 1
