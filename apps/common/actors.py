"""Platform actors that belong to no capability."""

from __future__ import annotations

import dramatiq
import redis
from django.conf import settings


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=10_000)
def broker_echo(key: str, value: str) -> None:
    """Writes `value` at `key` in Redis: the smallest proof that the broker and a worker are wired end to end.

    Used by the foundation's tests and by operators (`manage.py shell`) to check a deployment's workers.
    """
    with redis.Redis.from_url(settings.REDIS_URL) as client:  # closed: workers run this for every probe
        client.set(key, value, ex=300)
