"""The waking Redis broker: an idle worker blocks in Redis and an enqueue wakes it (apps/runs/broker.py)."""

from __future__ import annotations

import time
import uuid

import dramatiq
import pytest

from apps.common.actors import broker_echo
from apps.runs.broker import WAKE_TOKENS, WakingRedisBroker, wake_key
from conftest import wait_for


def test_the_platform_broker_is_the_waking_one():
    # then the settings put the waking broker in front of Dramatiq's Redis broker
    assert isinstance(dramatiq.get_broker(), WakingRedisBroker)


def test_an_enqueue_leaves_one_bounded_wake_token_per_message(redis_client):
    # given the broker and an empty wake list
    broker = dramatiq.get_broker()
    key = wake_key(broker.namespace, "default")
    redis_client.delete(key)
    # when more messages are enqueued than tokens are kept (nobody consumes them here)
    for i in range(WAKE_TOKENS + 10):
        broker_echo.send(f"echo:{uuid.uuid4()}", str(i))
    # then the list holds a token per message, up to its bound
    assert redis_client.llen(key) == WAKE_TOKENS
    broker.flush("default")
    redis_client.delete(key)


@pytest.mark.slow
def test_an_idle_worker_is_woken_long_before_its_fallback_poll(redis_client, start_worker):
    # given a real worker whose fallback poll is 60 s, idle after a first message
    start_worker("default", worker_timeout_ms=60_000)
    first = f"echo:{uuid.uuid4()}"
    broker_echo.send(first, "1")
    wait_for(lambda: redis_client.get(first), timeout=60)
    time.sleep(0.5)  # now blocked in BLPOP
    # when a burst of messages is enqueued
    keys = [f"echo:{uuid.uuid4()}" for _ in range(5)]
    for key in keys:
        broker_echo.send(key, "2")
    # then all of them ran well before the 60 s poll could have found them (wait_for raises after 20 s)
    wait_for(lambda: all(redis_client.get(key) for key in keys), timeout=20)


def _broker(heartbeat_timeout: int, maintenance_interval_ms: int = 1000) -> WakingRedisBroker:
    """A second broker on the suite's Redis, as another worker process would hold."""
    live: WakingRedisBroker = dramatiq.get_broker()
    return WakingRedisBroker(
        client=live.client, heartbeat_timeout=heartbeat_timeout, maintenance_interval_ms=maintenance_interval_ms
    )


def test_a_dead_workers_prefetched_message_is_requeued_by_the_next_call_after_its_heartbeat_timeout(redis_client):
    # given a worker that fetched a message and died without acking it (its broker makes no more calls)
    queue = f"redelivery-{uuid.uuid4().hex[:8]}"
    dead = _broker(heartbeat_timeout=200, maintenance_interval_ms=100)
    survivor = _broker(heartbeat_timeout=200, maintenance_interval_ms=100)
    for broker in (dead, survivor):
        broker.declare_queue(queue)
    dead.enqueue(dramatiq.Message(queue_name=queue, actor_name="broker_echo", args=("k", "v"), kwargs={}, options={}))
    assert len(dead.do_fetch(queue, 1)) == 1
    assert survivor.do_fetch(queue, 1) == []  # what the dead worker holds is not handed out again while it may live
    # when its heartbeat is older than the timeout and the survivor makes its next call for that queue after an interval
    time.sleep(0.3)
    survivor.do_qsize(queue)
    # then the message is back on the queue for the survivor to fetch
    assert len(survivor.do_fetch(queue, 1)) == 1
    survivor.flush(queue)


def test_maintenance_runs_once_per_interval_per_queue_not_on_every_call():
    # given a broker whose interval is 1 s
    broker = _broker(heartbeat_timeout=10_000)
    # when it makes calls for two queues at the same millisecond, and one an interval later
    first = [broker._maintenance_due("fetch", q, 5_000) for q in ("a", "a", "b")]
    later = broker._maintenance_due("fetch", "a", 5_000 + broker.maintenance_interval_ms)
    # then each queue got one maintenance, acks never run it, and the interval brings it back
    assert first == [1, 0, 1]
    assert broker._maintenance_due("ack", "c", 5_000) == 0
    assert later == 1
