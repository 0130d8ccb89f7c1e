from __future__ import annotations

import uuid

from django.db import models


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


class Deployment(models.Model):
    """One row: facts generated once per deployment and shared by all its processes (they share the database).

    `sandbox_scope` labels this deployment's sandbox containers when SANDBOX_SCOPE is unset, so two deployments on
    one Docker Engine never reap each other's containers."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    deployment_id = models.CharField(max_length=32, default=_new_id, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="common_deployment_singleton")]

    def __str__(self) -> str:
        return f"deployment {self.deployment_id}"
