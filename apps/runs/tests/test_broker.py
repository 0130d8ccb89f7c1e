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
