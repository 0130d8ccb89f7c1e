from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from apps.accounts.principal import Principal
from apps.tasks import services
from apps.tasks.models import Project, Task

_counter = itertools.count(1)


def make_principal(name: str | None = None, *, roles: tuple[str, ...] = ("agent",)) -> Principal:
    name = name or f"agent{next(_counter)}"
    return Principal(
        id=f"service:{name}",
        kind="service",
        name=name,
        identity_source="internal",
        roles=frozenset(roles),
        grants=frozenset({"task.*"}),
    )


@pytest.fixture
def owner() -> Principal:
    return make_principal("owner")


@pytest.fixture
def project(db, owner) -> Project:
    return services.project_create(principal=owner, key="alpha", name="Alpha")


@pytest.fixture
def new_task(owner, project) -> Callable[..., Task]:
    def create(title: str = "a task", **kwargs) -> Task:
        return services.task_create(principal=owner, project=project.key, title=title, **kwargs)

    return create
