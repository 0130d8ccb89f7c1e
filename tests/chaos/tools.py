"""Chaos-suite tools, one per worker pool, loaded by the platform under test through RUNS_EXTRA_TOOL_MODULES.

Each sleeps `sleep_s`, then appends one line to the file `mark` (if given): `<pid> started` before the sleep and
`<pid> finished` after it, so a test sees across processes which worker ran it and whether it was cut.
"""

from __future__ import annotations

import os
import time
from typing import Any

from apps.gateway.registry import ToolContext, tool

CHAOS_QUEUES = ("default", "sandbox", "browser", "memory", "maintenance")


def _work(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    mark = args.get("mark")
    if mark:
        with open(mark, "a") as out:
            out.write(f"{os.getpid()} started\n")
    time.sleep(float(args.get("sleep_s", 0)))
    if mark:
        with open(mark, "a") as out:
            out.write(f"{os.getpid()} finished\n")
    return {"nonce": args.get("nonce"), "pid": os.getpid()}


for _queue in CHAOS_QUEUES:
    tool(
        name=f"chaos.{_queue}",
        title=f"chaos {_queue}",
        description=f"Sleeps sleep_s on the {_queue} pool and notes start and finish in the file `mark`.",
        input_schema={"type": "object"},
        execution="queued",
        queue=_queue,
        task_support="optional",
        timeout_s=60,
        rerun="safe",  # a sleep: the suite checks that interrupted calls complete
    )(_work)
