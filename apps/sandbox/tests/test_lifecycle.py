"""create → exec → snapshot → create from snapshot → destroy, through the tool handlers on the real engine."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from apps.gateway.registry import ToolContext, ToolError, registry
from apps.sandbox import runtime
from apps.sandbox.models import Sandbox, SandboxState, Snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("engine")]


class RecordingContext(ToolContext):
    """A test ToolContext (the jobs runtime provides the real one): records progress notifications."""

    def __init__(self, principal: Any, cancel_after: float | None = None) -> None:
        self.principal = principal
        self.messages: list[str] = []
        self.cancel_at = time.monotonic() + cancel_after if cancel_after is not None else None

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        self.messages.append(message or "")

    def cancelled(self) -> bool:
        return self.cancel_at is not None and time.monotonic() >= self.cancel_at


def call(ctx: ToolContext, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Validate like the gateway does, run the handler, validate its structured result."""
    registry.autodiscover()
    spec = registry.get(name)
    assert spec is not None
    assert spec.execution == "queued"
    assert spec.queue == "sandbox"
    errors = [e.message for e in spec.input_validator.iter_errors(args)]
    assert errors == [], errors
    result = spec.handler(ctx, args)
    assert spec.output_validator is not None
    assert [e.message for e in spec.output_validator.iter_errors(result)] == []
    return result


def test_create_exec_snapshot_restore_destroy(agent):
    # given a sandbox with a file and an environment variable
    ctx = RecordingContext(agent)
    created = call(
        ctx,
        "sandbox.create",
        {
            "files": [
                {"path": "pkg/data.txt", "content": "hello"},
                {"path": "blob.bin", "content": base64.b64encode(b"\x00\x01").decode(), "encoding": "base64"},
            ],
            "env": {"GREETING": "hi"},
            "ttl_s": 120,
        },
    )
    sandbox_id = created["sandbox_id"]
    assert created["state"] == "running"
    assert created["network"] == "none"

    # when code runs in it, writing state into the workdir
    ran = call(
        ctx,
        "sandbox.exec",
        {
            "sandbox_id": sandbox_id,
            "code": "import os,sys\nprint(open('pkg/data.txt').read(), os.environ['GREETING'], os.getuid())\n"
            "open('state.txt','w').write('kept')\nprint('to stderr', file=sys.stderr)",
        },
    )
    # then output, exit code and streamed progress come back
    assert ran["exit_code"] == 0
    assert ran["stdout"] == "hello hi 10001\n"
    assert ran["stderr"] == "to stderr\n"
    assert ran["truncated"] is False
    assert ran["timed_out"] is False
    assert any("hello hi 10001" in m for m in ctx.messages)

    # when it is snapshotted and a new sandbox starts from the snapshot
    snap = call(ctx, "sandbox.snapshot", {"sandbox_id": sandbox_id})
    snapshot = Snapshot.objects.get(pk=snap["snapshot_id"])
    assert snap["workdir_bytes"] > 0
    assert runtime.image_present(snapshot.image_ref)
    clone = call(ctx, "sandbox.create", {"snapshot_id": snap["snapshot_id"]})
    again = call(ctx, "sandbox.exec", {"sandbox_id": clone["sandbox_id"], "command": "cat state.txt pkg/data.txt"})
    # then the workdir came along
    assert again["stdout"] == "kepthello"
    assert clone["snapshot_id"] == snap["snapshot_id"]

    # when both are destroyed (twice)
    first = call(ctx, "sandbox.destroy", {"sandbox_id": sandbox_id})
    second = call(ctx, "sandbox.destroy", {"sandbox_id": sandbox_id})
    call(ctx, "sandbox.destroy", {"sandbox_id": clone["sandbox_id"]})
    # then destroy is idempotent and the containers are gone
    assert (first["already_destroyed"], second["already_destroyed"]) == (False, True)
    assert Sandbox.objects.get(pk=sandbox_id).state == SandboxState.DESTROYED
    mine = {c.sandbox_id for c in runtime.containers_labelled()}
    assert sandbox_id not in mine
    assert clone["sandbox_id"] not in mine
    runtime.image_remove(snapshot.image_ref)


def test_exported_snapshot_reloads_when_the_image_was_pruned(agent):
    # given a snapshot exported to artifact storage whose image was then removed from the engine
    ctx = RecordingContext(agent)
    sandbox_id = call(ctx, "sandbox.create", {})["sandbox_id"]
    call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "command": "echo v1 > f"})
    snap = call(ctx, "sandbox.snapshot", {"sandbox_id": sandbox_id, "export_image": True})
    snapshot = Snapshot.objects.get(pk=snap["snapshot_id"])
    assert snap["image_bytes"] > 1_000_000
    runtime.image_remove(snapshot.image_ref)
    assert not runtime.image_present(snapshot.image_ref)
    # when a sandbox is created from it
    clone = call(ctx, "sandbox.create", {"snapshot_id": snap["snapshot_id"]})
    # then the image was loaded back from the artifact and the workdir restored
    assert call(ctx, "sandbox.exec", {"sandbox_id": clone["sandbox_id"], "command": "cat f"})["stdout"] == "v1\n"
    runtime.image_remove(snapshot.image_ref)


def test_exec_options_stdin_workdir_argv_and_binary_output(agent):
    # given a sandbox with a subdirectory
    ctx = RecordingContext(agent)
    sandbox_id = call(ctx, "sandbox.create", {"files": [{"path": "sub/x", "content": "1"}]})["sandbox_id"]
    # when execs use stdin, a workdir, an argv list and emit bytes that are not UTF-8
    piped = call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "command": "tr a-z A-Z", "stdin": "shout"})
    where = call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "command": ["pwd"], "workdir": "sub"})
    binary = call(
        ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "code": "import sys; sys.stdout.buffer.write(b'\\xff\\x00')"}
    )
    failing = call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "command": "exit 3"})
    # then each is reflected exactly
    assert piped["stdout"] == "SHOUT"
    assert where["stdout"] == "/workspace/sub\n"
    assert (binary["stdout_encoding"], base64.b64decode(binary["stdout"])) == ("base64", b"\xff\x00")
    assert failing["exit_code"] == 3
    assert Sandbox.objects.get(pk=sandbox_id).exec_count == 4


def test_cancelling_an_exec_kills_its_process_promptly(agent):
    # given a sandbox and a call that will be cancelled half a second in
    sandbox_id = call(RecordingContext(agent), "sandbox.create", {})["sandbox_id"]
    ctx = RecordingContext(agent, cancel_after=0.5)
    started = time.monotonic()
    # when a long command runs
    with pytest.raises(ToolError) as caught:
        call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "command": "sleep 600", "timeout_s": 600})
    # then the call ends within about a second as cancelled, and the sandbox still runs code
    assert caught.value.code == "cancelled"
    assert time.monotonic() - started < 4
    after = call(RecordingContext(agent), "sandbox.exec", {"sandbox_id": sandbox_id, "command": "echo ok"})
    assert after["stdout"] == "ok\n"


def test_under_gvisor_a_hog_fails_its_allocation_and_a_lost_sandbox_is_reported(agent, settings):
    # given sandboxes on gVisor (registered by scripts/provision.d/30-sandbox.sh)
    settings.SANDBOX_RUNTIME = "runsc"
    ctx = RecordingContext(agent)
    limits = {"memory_mb": 128, "pids": 64}
    sandbox_id = call(ctx, "sandbox.create", {"limits": limits})["sandbox_id"]
    assert Sandbox.objects.get(pk=sandbox_id).runtime == "runsc"
    # when one process allocates far past the sandbox's memory
    hog = call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "code": "b = bytearray(1 << 30)"})
    # then its allocation fails inside the sandbox (RLIMIT_AS), and the sandbox runs on
    assert hog["exit_code"] == 1
    assert "MemoryError" in hog["stderr"]
    assert call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "command": "uname -r"})["exit_code"] == 0

    # when many processes together outgrow it (gVisor has no OOM killer of its own: the host stops the sandbox)
    bomb = "import os\nwhile True:\n  try: os.fork()\n  except OSError: pass"
    outcome: dict[str, Any] | ToolError
    try:
        outcome = call(ctx, "sandbox.exec", {"sandbox_id": sandbox_id, "code": bomb, "timeout_s": 4})
    except ToolError as exc:
        outcome = exc
    # then either the sandbox survived, or the caller is told it is gone and why, and nothing is left running
    if isinstance(outcome, ToolError):
        assert outcome.code == "sandbox_destroyed"
        assert "killed" in str(outcome) or "stopped" in str(outcome)
        assert Sandbox.objects.get(pk=sandbox_id).state == SandboxState.DESTROYED
        assert sandbox_id not in {c.sandbox_id for c in runtime.containers_labelled()}
    else:
        assert outcome["timed_out"] is True, outcome
