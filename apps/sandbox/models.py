"""Sandboxes (one container each), the image allowlist and snapshots.

The database is the authority on a sandbox's owner and deadlines: container labels are fixed at create time
(a warm-pool container is labelled before anyone owns it), so the reaper reads TTLs from here.
"""

from __future__ import annotations

import uuid

from django.db import models


class SandboxState(models.TextChoices):
    POOLED = "pooled", "pooled (warm, unassigned)"
    STARTING = "starting", "starting"
    RUNNING = "running", "running"
    DESTROYED = "destroyed", "destroyed"
    FAILED = "failed", "failed"


LIVE_STATES = (SandboxState.POOLED, SandboxState.STARTING, SandboxState.RUNNING)


class Sandbox(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner_id = models.CharField(
        max_length=300, blank=True, db_index=True, help_text="Principal id; empty while pooled."
    )
    image = models.CharField(max_length=300)
    snapshot = models.ForeignKey(
        "sandbox.Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="sandboxes"
    )
    state = models.CharField(max_length=16, choices=SandboxState.choices, default=SandboxState.STARTING)
    runtime = models.CharField(max_length=16, default="runc")
    container_id = models.CharField(max_length=80, blank=True)
    limits = models.JSONField(default=dict, help_text="memory_mb, cpus, pids, disk_mb as applied to the container.")
    env = models.JSONField(default=dict, blank=True, help_text="Environment given to every exec (not secrets).")
    ttl_s = models.PositiveIntegerField()
    idle_ttl_s = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    idle_expires_at = models.DateTimeField(db_index=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)
    destroy_reason = models.CharField(max_length=200, blank=True)
    exec_count = models.PositiveIntegerField(default=0)
    oom_kills = models.PositiveIntegerField(default=0, help_text="Processes the kernel killed for memory so far.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["state", "expires_at"],
                name="sandbox_live_expiry",
                condition=models.Q(state__in=["pooled", "starting", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"sandbox {self.id} ({self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES


class ImageAllowlist(models.Model):
    """Images sandboxes may use besides the default image and SANDBOX_IMAGE_ALLOWLIST."""

    image = models.CharField(max_length=300, unique=True, help_text="Exact reference, e.g. `python:3.12-slim`.")
    description = models.CharField(max_length=300, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image"]
        verbose_name = "allowed image"

    def __str__(self) -> str:
        return self.image


class Snapshot(models.Model):
    """A sandbox captured for reuse: the committed image plus the workdir (tmpfs is not part of a commit)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner_id = models.CharField(max_length=300, db_index=True)
    source_sandbox = models.ForeignKey(
        Sandbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots"
    )
    base_image = models.CharField(max_length=300, help_text="The allowlisted image the source sandbox ran.")
    image_ref = models.CharField(max_length=300, help_text="Committed image (`mcpplat/sandbox-snapshot:<id>`).")
    image_id = models.CharField(max_length=100, blank=True)
    workdir_artifact = models.CharField(max_length=500, help_text="Path in artifact storage of the workdir tar.")
    workdir_bytes = models.PositiveBigIntegerField(default=0)
    image_artifact = models.CharField(max_length=500, blank=True, help_text="`docker save` tar, when exported.")
    image_bytes = models.PositiveBigIntegerField(default=0)
    limits = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"snapshot {self.id}"
