"""Sandbox fixtures: the real Docker Engine with the offline-built image (scripts/provision.d/30-sandbox.sh sets both
up).

Each test session labels its containers with its own SANDBOX_SCOPE, so the reaper and the clean-up below never
touch containers of a platform (or another suite) sharing the engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from apps.accounts.principal import Principal
from apps.sandbox import runtime
from tests import capability

SETUP = "scripts/provision.d/30-sandbox.sh"


def _engine_problem() -> str | None:
    try:
        runtime.ping()
    except runtime.EngineUnavailable as exc:
        return str(exc)
    if not runtime.image_present(settings.SANDBOX_DEFAULT_IMAGE):
        return f"the sandbox image {settings.SANDBOX_DEFAULT_IMAGE} is not built"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    original = settings.SANDBOX_SCOPE
    settings.SANDBOX_SCOPE = f"test-{uuid.uuid4().hex[:12]}"
    capability.require(
        "sandbox", _engine_problem(), f"run {SETUP} as root (installs and starts the engine, builds the image)"
    )
    yield
    for container in runtime.containers_labelled():
        runtime.container_remove(container.id)
    settings.SANDBOX_SCOPE = original


def snapshot_images() -> set[str]:
    return {image["Id"] for image in runtime.client().images(filters={"label": "io.mcpplat.sandbox.snapshot"})}


@pytest.fixture
def engine(docker_engine: None, settings) -> Iterator[None]:
    """The engine, with this test's containers and snapshot images removed afterwards whatever happened; no warm
    pool unless asked."""
    settings.SANDBOX_POOL_SIZE = 0
    before = {container.id for container in runtime.containers_labelled()}
    images_before = snapshot_images()
    yield
    for container in runtime.containers_labelled():
        if container.id not in before:
            runtime.container_remove(container.id)
    for image in snapshot_images() - images_before:
        runtime.image_remove(image)


def make_principal(*roles: str, pid: str | None = None) -> Principal:
    return Principal(
        id=pid or f"user:{uuid.uuid4().hex[:8]}",
        kind="test",
        name="sandbox test",
        identity_source="internal",
        roles=frozenset(roles),
        grants=frozenset({"sandbox.*"}),
    )


@pytest.fixture
def agent() -> Principal:
    return make_principal("agent")
