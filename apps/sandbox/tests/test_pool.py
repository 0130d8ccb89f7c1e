"""The warm pool: pre-started unassigned containers handed out by sandbox.create and refilled in the background."""

from __future__ import annotations

import time

import pytest

from apps.sandbox import runtime, services
from apps.sandbox.models import Sandbox, SandboxState
from apps.sandbox.tests.conftest import make_principal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


def pooled() -> list[Sandbox]:
    return list(Sandbox.objects.filter(state=SandboxState.POOLED))


def wait_pooled(count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while len(pooled()) != count:
        assert time.monotonic() < deadline, f"pool did not reach {count}"
        time.sleep(0.05)


def test_create_takes_a_warm_container_and_the_pool_refills(settings):
    # given a pool of two warm containers
    settings.SANDBOX_POOL_SIZE = 2
    assert services.pool_refill() == 2
    warm = {s.container_id for s in pooled()}
    caller = make_principal("agent")
    # when a default sandbox is created
    sandbox = services.sandbox_create(principal=caller, env={"A": "1"}, ttl_s=60)
    # then it is one of the warm containers, now owned by the caller with the caller's TTL and env
    assert sandbox.container_id in warm
    assert (sandbox.owner_id, sandbox.state, sandbox.ttl_s) == (caller.id, SandboxState.RUNNING, 60)
    result = services.sandbox_exec(principal=caller, sandbox_id=str(sandbox.id), command="echo $A")
    assert result.stdout == b"1\n"
    # and the pool is back to two in the background, with a fresh container
    wait_pooled(2)
    assert sandbox.container_id not in {s.container_id for s in pooled()}


def test_non_default_limits_do_not_use_the_pool(settings):
    # given a warm pool
    settings.SANDBOX_POOL_SIZE = 1
    services.pool_refill()
    # when a sandbox with other limits is created
    sandbox = services.sandbox_create(principal=make_principal("agent"), limits={"memory_mb": 128})
    # then it got its own container with those limits, and the pool is untouched
    assert sandbox.container_id not in {s.container_id for s in pooled()}
    assert runtime.client().inspect_container(sandbox.container_id)["HostConfig"]["Memory"] == 128 * 1024 * 1024
    assert len(pooled()) == 1


def test_pooled_sandboxes_are_nobodys_and_the_reaper_recycles_dead_ones(settings):
    # given a pooled container that died
    settings.SANDBOX_POOL_SIZE = 1
    services.pool_refill()
    (warm,) = pooled()
    runtime.container_remove(warm.container_id)
    # then nobody can address it by id
    with pytest.raises(services.SandboxError):
        services.sandbox_exec(principal=make_principal("agent"), sandbox_id=str(warm.id), command="true")
    # when the reaper runs, it marks the dead one and starts a replacement
    report = services.sandbox_reap()
    assert (report.vanished, report.pool_started) == (1, 1)
    (fresh,) = pooled()
    assert runtime.container_running(fresh.container_id)
