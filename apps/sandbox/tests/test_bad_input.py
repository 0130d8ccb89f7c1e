"""Bad input gets a clear error naming the field and what to do; nothing leaks."""

from __future__ import annotations

import json

import pytest

from apps.sandbox import runtime, services
from apps.sandbox.models import ImageAllowlist, Sandbox, SandboxState
from apps.sandbox.services import SandboxError
from apps.sandbox.tests.conftest import make_principal

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("engine")]


def labelled() -> set[str]:
    return {container.id for container in runtime.containers_labelled()}


def test_disallowed_image_is_refused_naming_the_allowlist(agent):
    # when an image off the allowlist is asked for
    with pytest.raises(SandboxError) as caught:
        services.sandbox_create(principal=agent, image="evil/miner:latest")
    # then the error names the image, the allowlist and where to add it; no row, no container
    assert caught.value.code == "image_not_allowed"
    assert "evil/miner:latest" in caught.value.message
    assert "mcpplat/sandbox-python:1" in caught.value.message
    assert caught.value.data["field"] == "image"
    assert Sandbox.objects.count() == 0
    assert labelled() == set()


def test_admin_allowlisted_image_that_is_missing_fails_cleanly(agent):
    # given an image allowed in the admin but absent from the engine (nothing can be pulled here)
    ImageAllowlist.objects.create(image="mcpplat/not-built:1")
    # when a sandbox asks for it
    with pytest.raises(SandboxError) as caught:
        services.sandbox_create(principal=agent, image="mcpplat/not-built:1")
    # then the engine's refusal comes back, the row is failed, no container exists
    assert caught.value.code == "sandbox_runtime_error"
    assert "mcpplat/not-built:1 is not in the Docker Engine" in caught.value.message
    assert list(Sandbox.objects.values_list("state", flat=True)) == [SandboxState.FAILED]
    assert labelled() == set()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limits": {"memory_mb": 999_999}}, "limits.memory_mb"),
        ({"limits": {"cpus": 64}}, "limits.cpus"),
        ({"limits": {"pids": 100_000}}, "limits.pids"),
        ({"ttl_s": 10**7}, "ttl_s"),
        ({"idle_ttl_s": 10**7}, "idle_ttl_s"),
    ],
)
def test_limits_over_the_role_quota_are_refused(kwargs, field):
    # given a caller whose only role has the default quota
    viewer = make_principal("viewer")
    # when it asks for more than that
    with pytest.raises(SandboxError) as caught:
        services.sandbox_create(principal=viewer, **kwargs)
    # then the error names the field, the request and the quota
    assert caught.value.code == "quota_exceeded"
    assert caught.value.data["field"] == field
    assert "quota" in caught.value.message
    assert labelled() == set()


def test_a_larger_role_gets_a_larger_quota():
    # given an operator (2048 MiB ceiling) and a viewer (512 MiB)
    operator, viewer = make_principal("operator"), make_principal("viewer")
    # when both ask for 1024 MiB
    with pytest.raises(SandboxError):
        services.limits_resolve(requested={"memory_mb": 1024}, quota=services.selectors.quota_for(viewer.roles))
    limits = services.limits_resolve(requested={"memory_mb": 1024}, quota=services.selectors.quota_for(operator.roles))
    # then only the operator gets it
    assert limits["memory_mb"] == 1024


def test_too_many_live_sandboxes_is_refused(settings):
    # given a quota of one live sandbox
    settings.SANDBOX_QUOTAS_JSON = '{"default": {"max_sandboxes": 1}}'
    caller = make_principal()
    services.sandbox_create(principal=caller)
    # when a second is asked for
    with pytest.raises(SandboxError) as caught:
        services.sandbox_create(principal=caller)
    # then it is refused, and only one container exists
    assert caught.value.code == "quota_exceeded"
    assert len(labelled()) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"files": [{"path": "../etc/passwd", "content": "x"}]}, "files[0].path"),
        ({"files": [{"path": "/etc/passwd", "content": "x"}]}, "files[0].path"),
        ({"files": [{"path": "a", "content": "%%%", "encoding": "base64"}]}, "files[0].content"),
        ({"limits": {"gpu": 1}}, "limits.gpu"),
        ({"limits": {"memory_mb": 1}}, "limits.memory_mb"),
        ({"env": {"MCPPLAT_EXEC": "x"}}, "env"),
    ],
)
def test_invalid_create_arguments_name_the_field(agent, kwargs, field):
    with pytest.raises(SandboxError) as caught:
        services.sandbox_create(principal=agent, **kwargs)
    assert caught.value.code == "invalid_arguments"
    assert caught.value.data["field"] == field
    assert labelled() == set()


def test_a_never_ending_command_is_killed_and_the_sandbox_survives(agent):
    # given a sandbox
    sandbox = services.sandbox_create(principal=agent)
    # when a command never ends, even one that detaches into its own session
    forever = services.sandbox_exec(principal=agent, sandbox_id=str(sandbox.id), command="sleep 1000", timeout_s=1)
    escaped = services.sandbox_exec(
        principal=agent, sandbox_id=str(sandbox.id), command="setsid sleep 1000 & sleep 1000", timeout_s=1
    )
    after = services.sandbox_exec(
        principal=agent, sandbox_id=str(sandbox.id), command="ps -e 2>/dev/null | grep -c sleep || ls /proc | wc -l"
    )
    # then both come back timed out within about the timeout, and nothing of them keeps running
    assert (forever.timed_out, forever.exit_code) == (True, 137)
    assert forever.duration_ms < 3000
    assert escaped.timed_out is True
    assert escaped.duration_ms < 6000
    listing = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"
    sleeping = runtime.exec_run(sandbox.container_id, ["sh", "-c", listing], timeout_s=5, output_limit=10000)
    assert b"sleep 1000" not in sleeping.stdout
    assert b"sleep infinity" in sleeping.stdout  # the keep-alive
    assert after.exit_code == 0


def test_output_flood_is_cut_flagged_and_stopped(agent, settings):
    # given an output limit of 64 KiB
    settings.SANDBOX_OUTPUT_LIMIT_BYTES = 65536
    sandbox = services.sandbox_create(principal=agent)
    # when a process floods stdout forever
    flood = services.sandbox_exec(principal=agent, sandbox_id=str(sandbox.id), command="yes", timeout_s=30)
    # then exactly the limit is kept, truncation is flagged, and the process was killed long before its timeout
    assert flood.truncated is True
    assert len(flood.stdout) == 65536
    assert flood.output_bytes >= 65536
    assert flood.duration_ms < 5000
    assert flood.timed_out is False


def test_unknown_other_owners_and_destroyed_sandboxes(agent):
    # given a destroyed sandbox and one that belongs to someone else
    sandbox = services.sandbox_create(principal=agent)
    services.sandbox_destroy(principal=agent, sandbox_id=str(sandbox.id))
    other = services.sandbox_create(principal=make_principal("agent"))
    # when they are used
    errors = {}
    for name, sandbox_id in [
        ("unknown", "00000000-0000-0000-0000-000000000000"),
        ("garbage", "not-a-uuid"),
        ("destroyed", str(sandbox.id)),
        ("others", str(other.id)),
    ]:
        with pytest.raises(SandboxError) as caught:
            services.sandbox_exec(principal=agent, sandbox_id=sandbox_id, command="true")
        errors[name] = caught.value.code
    # then each gets a clear code (someone else's looks exactly like an unknown one)
    assert errors == {
        "unknown": "not_found",
        "garbage": "not_found",
        "destroyed": "sandbox_destroyed",
        "others": "not_found",
    }


def test_a_container_removed_behind_our_back_is_reported_and_marked(agent):
    # given a sandbox whose container was removed outside the platform
    sandbox = services.sandbox_create(principal=agent)
    runtime.container_remove(sandbox.container_id)
    # when it is used
    with pytest.raises(SandboxError) as caught:
        services.sandbox_exec(principal=agent, sandbox_id=str(sandbox.id), command="true")
    # then the caller is told and the row is closed
    assert caught.value.code == "sandbox_destroyed"
    sandbox.refresh_from_db()
    assert (sandbox.state, sandbox.destroy_reason) == (SandboxState.DESTROYED, "container_vanished")


def test_engine_down_is_a_clear_retryable_error_and_leaks_nothing(agent, settings, tmp_path):
    # given DOCKER_HOST pointing at an engine that is not there
    settings.DOCKER_HOST = f"unix://{tmp_path}/docker.sock"
    # when a sandbox is created
    with pytest.raises(SandboxError) as caught:
        services.sandbox_create(principal=agent)
    # then the error names DOCKER_HOST and what to do, may be retried, and the row is closed as failed
    assert caught.value.code == "sandbox_engine_unavailable"
    assert "DOCKER_HOST" in caught.value.message
    assert "start dockerd" in caught.value.message
    assert caught.value.retryable is True
    assert list(Sandbox.objects.values_list("state", flat=True)) == [SandboxState.FAILED]
    settings.DOCKER_HOST = "unix:///var/run/docker.sock"
    assert labelled() == set()


def test_scheduled_reaper_skips_a_down_engine_with_one_warning(settings, tmp_path, caplog, db):
    from apps.sandbox.actors import sandbox_reap

    # given no engine at DOCKER_HOST
    engine = settings.DOCKER_HOST
    settings.DOCKER_HOST = f"unix://{tmp_path}/docker.sock"
    # when the scheduler's periodic reap runs
    sandbox_reap.fn()
    settings.DOCKER_HOST = engine  # the module's leak check needs the real engine back
    # then it says so once and does not raise (no retry storm every 30 s)
    assert [r.levelname for r in caplog.records if "sandbox reaper skipped" in r.getMessage()] == ["WARNING"]


def test_admin_destroy_action_destroys_and_audits(agent, admin_user, rf):
    # given two live sandboxes and a staff member in the admin
    from django.contrib import admin as django_admin
    from django.contrib.messages.storage.fallback import FallbackStorage

    from apps.audit.models import AuditEvent

    first, second = services.sandbox_create(principal=agent), services.sandbox_create(principal=agent)
    model_admin = django_admin.site._registry[Sandbox]
    request = rf.post("/admin/sandbox/sandbox/")
    request.user = admin_user
    request.session = {}
    request._messages = FallbackStorage(request)
    # when the destroy action runs on them
    model_admin.destroy_selected(request, Sandbox.objects.filter(pk__in=[first.pk, second.pk]))
    # then both are destroyed, their containers are gone, and the action is in the audit log
    assert set(Sandbox.objects.values_list("state", flat=True)) == {SandboxState.DESTROYED}
    assert labelled() == set()
    event = AuditEvent.objects.filter(method="admin.sandbox.destroy").get()
    assert sorted(json.loads(event.detail)["sandboxes"]) == sorted([str(first.pk), str(second.pk)])


def test_a_process_killed_for_memory_is_reported_as_oom(agent):
    # given a sandbox with 64 MiB of memory
    sandbox = services.sandbox_create(principal=agent, limits={"memory_mb": 64, "disk_mb": 8})
    hog = "b = bytearray(1 << 28)\nfor i in range(0, len(b), 4096): b[i] = 1"
    # when code touches 256 MiB, then a normal exec follows
    killed = services.sandbox_exec(principal=agent, sandbox_id=str(sandbox.id), code=hog)
    fine = services.sandbox_exec(principal=agent, sandbox_id=str(sandbox.id), command="true")
    # then the first says the kernel killed it for memory, the next does not, and the sandbox lives on
    assert (killed.exit_code, killed.oom_killed, killed.timed_out) == (137, True, False)
    assert (fine.exit_code, fine.oom_killed) == (0, False)
    sandbox.refresh_from_db()
    assert sandbox.oom_kills == 1
