"""Effects at most once for sandbox.exec: a job's command runs once per sandbox even when the worker running it dies.

Real Docker Engine, real PostgreSQL, a real worker process killed with SIGKILL: the retry adopts the command the
lost attempt started (its whole output and exit status) or, when that command was killed, fails with worker_lost.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from django.db import connection

from apps.gateway.registry import registry
from apps.runs import execution, services
from apps.runs.models import Job, JobEvent
from apps.sandbox import runtime
from apps.sandbox import services as sandbox_services
from apps.sandbox.models import Sandbox
from conftest import wait_for

pytestmark = pytest.mark.usefixtures("engine")

# Appends one line to /workspace/ran each time it starts, then works a while and exits 7.
COMMAND = "echo started; echo run >> /workspace/ran; sleep {sleep}; echo finished; exit 7"


def _lines(sandbox: Sandbox) -> int:
    out = runtime.exec_run(
        sandbox.container_id, ["sh", "-c", "cat ran 2>/dev/null | wc -l"], timeout_s=10, output_limit=64
    )
    return int(out.stdout.decode().strip())


def _lose_worker(job: Job) -> None:
    """What the runs sweep does RUNS_JOB_STALE_S after a worker's last heartbeat, without waiting for it."""
    Job.objects.filter(pk=job.pk).update(heartbeat_at=services.timezone.now() - services.timedelta(seconds=60))
    assert services.runs_sweep()["recovered_jobs"] == [str(job.pk)]


def _submit(agent, sandbox: Sandbox, sleep: float) -> Job:
    arguments = {"sandbox_id": str(sandbox.pk), "command": COMMAND.format(sleep=sleep), "timeout_s": 60}
    return services.job_submit(tool=registry.get("sandbox.exec"), arguments=arguments, principal=agent)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_retry_after_the_worker_was_killed_adopts_the_running_command_instead_of_starting_it_again(
    agent, start_worker, redis_client
):
    # given a sandbox and a sandbox.exec job running on a real worker process
    sandbox = sandbox_services.sandbox_create(principal=agent)
    worker = start_worker("sandbox", threads=1, db_name=connection.settings_dict["NAME"])
    job = _submit(agent, sandbox, sleep=4)
    wait_for(lambda: runtime.ledger_inspect(sandbox.container_id, str(job.pk)).state == "running", 60)
    wait_for(lambda: JobEvent.objects.filter(job=job, kind="progress").exists(), 10)
    # when that worker is killed with SIGKILL while the command still runs in the container
    os.killpg(os.getpgid(worker.pid), signal.SIGKILL)
    worker.wait(10)
    _lose_worker(job)
    execution.job_execute(job_id=str(job.pk))
    # then the retry did not start the command again: it reported the lost attempt's command, to its end
    job.refresh_from_db()
    assert (job.state, job.attempts, job.lost_count) == ("succeeded", 2, 1)
    assert _lines(sandbox) == 1
    assert (job.result["exit_code"], job.result["adopted_attempt"]) == (7, 1)
    assert job.result["stdout"] == "started\nfinished\n"
    # and the progress both attempts published only increased
    published = [e.payload["progress"] for e in JobEvent.objects.filter(job=job, kind="progress").order_by("seq")]
    assert published == sorted(set(published))
    assert published[-1] == len("started\nfinished\n")


@pytest.mark.django_db(transaction=True)
def test_a_retry_adopts_the_outcome_of_a_command_that_finished_after_its_worker_died(agent, redis_client):
    # given a job whose attempt 1 ran its command to the end in the sandbox, but whose worker died before it recorded
    # the result
    sandbox = sandbox_services.sandbox_create(principal=agent)
    job = _submit(agent, sandbox, sleep=0)
    services.job_claim(job_id=str(job.pk), worker_id="dead-worker")
    lost = runtime.exec_run(
        sandbox.container_id,
        ["sh", "-c", COMMAND.format(sleep=0)],
        timeout_s=10,
        output_limit=4096,
        ledger=(str(job.pk), 1),
    )
    assert lost.exit_code == 7
    # when the sweep finds the worker lost and the retry runs
    _lose_worker(job)
    execution.job_execute(job_id=str(job.pk))
    # then the retry reports that outcome: exit status and output, and the command ran once
    job.refresh_from_db()
    assert job.state == "succeeded"
    assert (job.result["exit_code"], job.result["stdout"], job.result["adopted_attempt"]) == (
        7,
        "started\nfinished\n",
        1,
    )
    assert _lines(sandbox) == 1


@pytest.mark.django_db(transaction=True)
def test_a_retry_fails_worker_lost_when_the_lost_attempts_command_was_killed(agent, redis_client):
    # given a job whose attempt 1 started its command, then the command was killed with its exec
    sandbox = sandbox_services.sandbox_create(principal=agent)
    job = _submit(agent, sandbox, sleep=30)
    services.job_claim(job_id=str(job.pk), worker_id="dead-worker")
    attempt = threading.Thread(
        target=runtime.exec_run,
        args=(sandbox.container_id, ["sh", "-c", COMMAND.format(sleep=30)]),
        kwargs={"timeout_s": 60, "output_limit": 4096, "ledger": (str(job.pk), 1)},
        daemon=True,
    )
    attempt.start()
    wait_for(lambda: runtime.ledger_inspect(sandbox.container_id, str(job.pk)).state == "running", 20)
    runtime._kill_marked(sandbox.container_id, runtime.ledger_marker(str(job.pk)))
    attempt.join(10)
    # when its worker is found lost and the retry runs
    _lose_worker(job)
    started = time.monotonic()
    execution.job_execute(job_id=str(job.pk))
    # then the job failed worker_lost at once, without running the command a second time
    job.refresh_from_db()
    assert (job.state, job.error["code"], job.error["data"]["attempt"]) == ("failed", "worker_lost", 1)
    assert "it was not run again" in job.error["message"]
    assert time.monotonic() - started < 5
    assert _lines(sandbox) == 1


@pytest.mark.django_db(transaction=True)
def test_a_first_attempt_through_the_ledger_behaves_like_a_plain_exec(agent, redis_client):
    # given a sandbox
    sandbox = sandbox_services.sandbox_create(principal=agent)
    arguments = {"sandbox_id": str(sandbox.pk), "command": "read x; echo got $x; echo oops >&2; exit 3", "stdin": "v\n"}
    job = services.job_submit(tool=registry.get("sandbox.exec"), arguments=arguments, principal=agent)
    # when the job runs
    execution.job_execute(job_id=str(job.pk))
    # then stdin, stdout, stderr and the exit status pass through the ledger unchanged
    job.refresh_from_db()
    assert job.state == "succeeded"
    result = job.result
    assert (result["stdout"], result["stderr"], result["exit_code"]) == ("got v\n", "oops\n", 3)
    assert (result["adopted_attempt"], result["timed_out"], result["truncated"]) == (None, False, False)
