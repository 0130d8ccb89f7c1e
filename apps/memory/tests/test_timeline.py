"""memory.timeline: event-time order, cursor pages, buckets."""

from __future__ import annotations

import pytest

from apps.gateway.registry import ToolError
from apps.memory.tools import memory_store, memory_timeline

pytestmark = pytest.mark.django_db

# Stored out of order on purpose: ingestion order must not leak into the timeline.
EVENTS = [
    ("standup notes day 3", "2026-03-04T09:00:00Z"),
    ("standup notes day 1", "2026-03-02T09:00:00Z"),
    ("retro notes", "2026-03-06T15:00:00Z"),
    ("standup notes day 2", "2026-03-03T09:00:00Z"),
    ("planning notes", "2026-03-02T14:00:00Z"),
    ("incident review", "2026-03-10T11:00:00Z"),
    ("same instant A", "2026-03-05T12:00:00Z"),
    ("same instant B", "2026-03-05T12:00:00Z"),
]


@pytest.fixture
def stored(alice):
    memory_store(alice, {"items": [{"content": c, "event_time": t} for c, t in EVENTS]})


def _walk(ctx, **args):
    pages, cursor = [], None
    while True:
        page = memory_timeline(ctx, {**args, **({"cursor": cursor} if cursor else {})})
        pages.append([item["content"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_timeline_pages_in_event_time_order(alice, stored):
    # when walking the timeline three at a time
    pages = _walk(alice, limit=3)
    # then every memory comes once, in event-time order, and the last page ends the walk
    flat = [content for page in pages for content in page]
    expected = [c for c, t in sorted(EVENTS, key=lambda e: e[1])]
    assert [len(page) for page in pages] == [3, 3, 2]
    assert flat[:4] == expected[:4]
    assert set(flat[4:6]) == {"same instant A", "same instant B"}  # tie broken by id, stable across pages
    assert flat[6:] == ["retro notes", "incident review"]
    assert len(set(flat)) == len(EVENTS)


def test_timeline_descending_and_range(alice, stored):
    # when
    pages = _walk(alice, limit=2, order="desc", event_after="2026-03-03T00:00:00Z", event_before="2026-03-07T00:00:00Z")
    flat = [content for page in pages for content in page]
    # then
    assert flat[0] == "retro notes"
    assert flat[-2:] == ["standup notes day 3", "standup notes day 2"]
    assert len(flat) == 5


def test_timeline_buckets_count_the_whole_range(alice, stored):
    # when
    days = memory_timeline(alice, {"limit": 1, "bucket": "day"})
    weeks = memory_timeline(alice, {"limit": 1, "bucket": "week"})
    # then buckets cover every memory, not only the page
    assert len(days["items"]) == 1
    assert [(b["start"][:10], b["count"]) for b in days["buckets"]] == [
        ("2026-03-02", 2),
        ("2026-03-03", 1),
        ("2026-03-04", 1),
        ("2026-03-05", 2),
        ("2026-03-06", 1),
        ("2026-03-10", 1),
    ]
    assert [(b["start"][:10], b["count"]) for b in weeks["buckets"]] == [("2026-03-02", 7), ("2026-03-09", 1)]


def test_timeline_rejects_a_forged_cursor(alice, stored):
    with pytest.raises(ToolError) as error:
        memory_timeline(alice, {"cursor": "not-a-cursor"})
    assert error.value.code == "invalid_arguments"
    assert error.value.message.startswith("cursor:")
