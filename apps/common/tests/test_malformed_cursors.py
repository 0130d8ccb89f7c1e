"""Every resume cursor a caller can send back is bad input when it is not ours: a clear error naming `cursor`.

Generated: arbitrary text, and cursors in the old unsigned encoding (base64 JSON) whose values have the wrong types
or shapes — those used to reach the query as bounds (`priority > "x"`, a non-UUID id) and fail inside the database.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.accounts.principal import Principal
from apps.gateway.registry import ToolContext, ToolError, registry

pytestmark = pytest.mark.django_db

BUDGET = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-01-01", "0001-01-01T00:00:00+23:59", str(uuid.uuid4())]),
)
_ORDERS = st.sampled_from(["rank", "created", "-created", "updated", "-updated", "due"])


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


_COLUMNS = {"rank": 4, "created": 2, "-created": 2, "updated": 2, "-updated": 2, "due": 2}


def forged(order: str | None) -> st.SearchStrategy[str]:
    """Cursors this server never returned; for task.list also ones of the right sort and length (old format)."""
    shaped = (
        [st.lists(_SCALARS, min_size=_COLUMNS[order], max_size=_COLUMNS[order]).map(lambda v: _b64([order, v]))]
        if order
        else [
            st.tuples(st.sampled_from(["2026-01-01T00:00:00+00:00", "0001-01-01T00:00:00+23:59"]), _SCALARS).map(
                lambda t: _b64(list(t))
            )
        ]
    )
    return st.one_of(
        st.text(min_size=1, max_size=200),
        st.tuples(_ORDERS, st.lists(_SCALARS, max_size=5)).map(lambda t: _b64([t[0], t[1]])),
        st.lists(_SCALARS, min_size=2, max_size=2).map(_b64),
        st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6).map(_b64),
        *shaped,
        *shaped,  # weighted: these reach the query on a decoder that only checks the shape
    )


class _Context(ToolContext):
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.request_id = self.run_id = self.job_id = None


def _principal(grants: str) -> Principal:
    return Principal(
        id=f"service:cursor-{uuid.uuid4().hex[:8]}",
        kind="service",
        name="cursor-prober",
        identity_source="internal",
        roles=frozenset({"cursor-role"}),
        grants=frozenset({grants}),
    )


@pytest.mark.parametrize(
    ("tool_name", "grants", "extra"),
    [
        ("task.list", "task.*", {}),
        ("task.list", "task.*", {"sort": "created"}),
        ("task.list", "task.*", {"sort": "due"}),
        ("memory.timeline", "memory.*", {}),
        ("memory.timeline", "memory.*", {"order": "desc"}),
    ],
)
def test_generated_forged_cursors_are_a_clear_error(tool_name, grants, extra, redis_client):
    registry.autodiscover()
    tool = registry.get(tool_name)
    ctx = _Context(_principal(grants))
    if tool_name == "task.list":
        from apps.tasks import services

        project = services.project_create(principal=ctx.principal, key=f"cur-{uuid.uuid4().hex[:8]}")
        services.task_create(principal=ctx.principal, title="t", project=project.key)
        extra = {**extra, "project": project.key}

    @BUDGET
    @given(cursor=forged(extra.get("sort", "rank") if tool_name == "task.list" else None))
    def check(cursor: str) -> None:
        # when
        with pytest.raises(ToolError) as err:
            tool.handler(ctx, {**extra, "cursor": cursor})
        # then bad input, naming the cursor and what to do
        assert err.value.code in ("invalid_argument", "invalid_arguments")
        assert err.value.message.startswith("cursor: ")

    check()


def test_a_cursor_we_returned_still_pages(redis_client):
    # given more tasks than a page
    from apps.tasks import services

    registry.autodiscover()
    ctx = _Context(_principal("task.*"))
    project = services.project_create(principal=ctx.principal, key=f"cur-{uuid.uuid4().hex[:8]}")
    titles = {services.task_create(principal=ctx.principal, title=f"t{i}", project=project.key).title for i in range(5)}
    tool = registry.get("task.list")
    # when paging with the cursors it returns
    seen, cursor = [], None
    while True:
        page = tool.handler(ctx, {"project": project.key, "limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += [t["title"] for t in page["tasks"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    # then every task once
    assert sorted(seen) == sorted(titles)
