from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


def _validate_limit(value: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from apps.gateway.config import parse_limit

    try:
        parse_limit(value, name="rate limit")
    except ImproperlyConfigured as exc:
        raise ValidationError(str(exc)) from None


class ToolSetting(models.Model):
    """Staff overrides for one registered tool: switch it off, or give it its own rate limit."""

    tool = models.CharField(max_length=128, unique=True, help_text="Registered tool name, e.g. task.create.")
    enabled = models.BooleanField(default=True, help_text="Disabled tools disappear from tools/list and refuse calls.")
    rate_limit = models.CharField(
        max_length=32,
        blank=True,
        validators=[_validate_limit],
        help_text="Per-caller bucket for this tool as COUNT/SECONDS (e.g. 30/60). Empty: MCP_RATE_LIMIT_TOOL.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tool"]

    def __str__(self) -> str:
        return self.tool
