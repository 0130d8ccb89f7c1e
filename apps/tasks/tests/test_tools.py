"""The MCP tools as the gateway calls them: arguments valid against input_schema, results against output_schema."""

from __future__ import annotations

import pytest

from apps.gateway.registry import ToolContext, registry
from apps.tasks.errors import TaskError


def call(principal, name: str, args: dict) -> dict:
    spec = registry.get(name)
    assert spec is not None, f"{name} is not registered"
    errors = [e.message for e in spec.input_validator.iter_errors(args)]
    assert errors == [], errors
    ctx = ToolContext()
    ctx.principal = principal
    result = spec.handler(ctx, args)
    assert [e.message for e in spec.output_validator.iter_errors(result)] == []
    return result


def test_the_five_tools_are_registered_with_task_permissions():
    names = {t.name for t in registry.all() if t.name.startswith("task.")}
    assert names == {"task.create", "task.update", "task.list", "task.dep_graph", "task.next_action"}
    assert {registry.get(n).permission for n in names} == names
    assert registry.get("task.list").annotations.read_only is True


def test_tools_round_trip(owner, project):
    # given
    a = call(owner, "task.create", {"project": "alpha", "title": "a", "priority": "high", "due_date": "2026-12-01"})
    b = call(owner, "task.create", {"project": "alpha", "title": "b", "depends_on": [a["task"]["id"]], "labels": ["x"]})
    # when / then
    assert a["task"]["priority"] == "high"
    assert a["task"]["due_date"] == "2026-12-01"
    listed = call(owner, "task.list", {"project": "alpha", "label": "x"})
    assert [t["id"] for t in listed["tasks"]] == [b["task"]["id"]]
    graph = call(owner, "task.dep_graph", {"project": "alpha", "format": ["mermaid", "dot"]})
    assert graph["edges"] == [{"task": b["task"]["id"], "depends_on": a["task"]["id"]}]
    assert f"t{a['task']['id']} -> t{b['task']['id']};" in graph["dot"]
    claimed = call(owner, "task.next_action", {"project": "alpha", "claim": True})
    assert claimed["claimed"]["id"] == a["task"]["id"]
    assert claimed["ready"][0]["reason"] == "no dependencies; priority high, due 2026-12-01"
    done = call(owner, "task.update", {"id": a["task"]["id"], "version": 2, "status": "done"})
    assert done["task"]["version"] == 3
    ready = call(owner, "task.next_action", {"project": "alpha"})
    assert [t["id"] for t in ready["ready"]] == [b["task"]["id"]]


def test_tool_errors_are_tool_errors_naming_the_task(owner, project):
    with pytest.raises(TaskError) as caught:
        call(owner, "task.update", {"id": 31337, "version": 1, "title": "x"})
    assert (caught.value.code, caught.value.data) == ("task_not_found", {"task": 31337})
