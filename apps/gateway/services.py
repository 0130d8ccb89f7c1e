"""Writes of the gateway app. Tool settings are mirrored to Redis so the hot path never touches the ORM."""

from __future__ import annotations

from typing import Any

import orjson
import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.gateway.models import ToolSetting
from apps.gateway.registry import registry

TOOL_SETTINGS_KEY = "mcpplat:gateway:tool-settings"


def tool_settings_publish() -> None:
    """Replace the Redis mirror of every ToolSetting row (the gateway re-reads it within a few seconds)."""
    rows: dict[Any, Any] = {
        row.tool: orjson.dumps({"enabled": row.enabled, "rate_limit": row.rate_limit or None})
        for row in ToolSetting.objects.all()
    }
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.delete(TOOL_SETTINGS_KEY)
        pipe.hset(TOOL_SETTINGS_KEY, "__loaded__", b"1")
        if rows:
            pipe.hset(TOOL_SETTINGS_KEY, mapping=rows)
        pipe.execute()
    finally:
        client.close()


@transaction.atomic
def tool_setting_update(*, tool: str, enabled: bool, rate_limit: str = "") -> ToolSetting:
    if registry.get(tool) is None:
        raise ValidationError({"tool": f"no registered tool is named {tool!r}"})
    setting, _ = ToolSetting.objects.get_or_create(tool=tool)
    setting.enabled = enabled
    setting.rate_limit = rate_limit.strip()
    setting.full_clean()
    setting.save()
    transaction.on_commit(tool_settings_publish)
    return setting


@transaction.atomic
def tool_setting_delete(*, tool: str) -> None:
    ToolSetting.objects.filter(tool=tool).delete()
    transaction.on_commit(tool_settings_publish)
