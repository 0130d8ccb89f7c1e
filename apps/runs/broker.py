"""Dramatiq's Redis broker with push wake-ups instead of short polling.

Dramatiq's `RedisBroker` only polls: after an empty fetch a consumer sleeps up to `worker_timeout`, so delivery
latency is a trade against idle CPU (research/spikes.md: 5 ms polls give p50 ≈ 2.3 ms delivery at ≈ 13 % of a core
per idle worker process, and we run one pool per queue). Here an idle consumer blocks in Redis instead of sleeping:
`BLPOP` on a per-queue wake list with `worker_timeout` as its timeout, and every enqueue pushes one token onto the
list of the queue the message lands in. A message is picked up as soon as Redis hands the token to one blocked
consumer (one token wakes one consumer: no thundering herd), and an idle worker costs one fetch per `worker_timeout`.

The message itself still goes through Dramatiq's own Lua `enqueue`/`fetch`, acks, heartbeats and dead-worker
maintenance, so delivery guarantees are Dramatiq's. A lost token (Redis restarted, consumer busy) only costs the
fallback poll: messages requeued by maintenance and the rest are found by the next timed fetch, as before.

Maintenance (requeue the unacked messages of workers silent for `heartbeat_timeout`) runs in Dramatiq on a random
1 in `maintenance_chance` broker calls, and only for the queue of that call: with about one call per second per idle
queue that left a dead worker's prefetched messages waiting for minutes. Here it runs on the first call for a queue
after `maintenance_interval_ms` since this process last ran it for that queue, so the bound is deterministic:
`heartbeat_timeout` + one interval + one fallback poll (docs/reliability.md, "Redelivery").
"""

from __future__ import annotations

import time
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import MAINTENANCE_COMMAND_BLACKLIST, RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

# Tokens kept per queue: enough to wake every consumer of a burst, bounded so an idle queue's list stays tiny.
WAKE_TOKENS = 64
# While every worker thread of a process is busy (prefetch full) the consumer cannot take a message anyway; it
# re-checks this often instead of blocking, so a freed thread gets the next message promptly.
_BUSY_BACKOFF_MS = 10


def wake_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.wake"


class WakingRedisBroker(RedisBroker):
    """`RedisBroker` whose enqueue wakes one blocked consumer of the target queue, with maintenance by time."""

    def __init__(self, *, maintenance_interval_ms: int = 1000, **options: Any) -> None:
        super().__init__(**options)
        self.maintenance_interval_ms = maintenance_interval_ms
        self._maintained_at: dict[str, int] = {}  # queue → when this process last ran maintenance for it (ms)

    def _maintenance_due(self, command: str, queue_name: str, now_ms: int) -> int:
        if command in MAINTENANCE_COMMAND_BLACKLIST:
            return 0
        last = self._maintained_at.get(queue_name)
        if last is not None and now_ms - last < self.maintenance_interval_ms:
            return 0
        self._maintained_at[queue_name] = now_ms  # a race between threads costs one extra, harmless maintenance
        return 1

    def _dispatch(self, command: str) -> Any:
        """Dramatiq 2.x `RedisBroker._dispatch`, with `_maintenance_due` instead of a random draw."""
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            timestamp = current_millis()
            return dispatch(
                args=[
                    command,
                    timestamp,
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    self._maintenance_due(command, queue_name, timestamp),
                    self._max_unpack_size(),
                    *args,
                ],
                keys=keys,
            )

        return do_dispatch

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _WakingConsumer

    def do_enqueue(self, queue_name: str, message_id: str, payload: bytes) -> Any:
        result = self._dispatch("enqueue")(queue_name, message_id, payload)
        key = wake_key(self.namespace, queue_name)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(key, 1)
            pipe.ltrim(key, 0, WAKE_TOKENS - 1)
            pipe.execute()
        except redis.RedisError:
            pass  # the message is enqueued; without the token it is found by the next timed fetch
        return result


class _WakingConsumer(_RedisConsumer):
    """Dramatiq's consumer loop (dramatiq 2.x `_RedisConsumer.__next__`) with the idle sleep replaced by BLPOP."""

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                if self.outstanding_message_count >= self.prefetch:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=_BUSY_BACKOFF_MS)
                    time.sleep(backoff_ms / 1000)
                    return None
                self.message_cache = self.broker.do_fetch(
                    self.queue_name, self.prefetch - self.outstanding_message_count
                )
                if not self.message_cache:
                    # Block until an enqueue wakes us, at most `worker_timeout` (then the caller fetches again).
                    # A delay-queue consumer comes back sooner: its caller moves due messages only between calls.
                    timeout_ms = self.timeout if not self.queue_name.endswith(".DQ") else min(self.timeout, 100)
                    key = wake_key(self.broker.namespace, self.queue_name)
                    self.broker.client.blpop([key], timeout=max(timeout_ms, 10) / 1000)
                    return None
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None
