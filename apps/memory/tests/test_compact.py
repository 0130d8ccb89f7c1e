"""memory.compact: merges near-duplicates, supersedes stale facts, expires TTL'd items; keeps provenance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.memory.models import Memory
from apps.memory.tools import memory_compact, memory_search, memory_store, memory_timeline

pytestmark = pytest.mark.django_db


def test_compaction_merges_near_duplicates_and_keeps_provenance(alice, embed_now):
    # given near-duplicate phrasings of one fact (and an unrelated memory)
    memory_store(
        alice,
        {
            "items": [
                {
                    "content": "The production database password rotates every 90 days.",
                    "event_time": "2026-01-01T00:00:00Z",
                },
                {
                    "content": "The production database password is rotated every 90 days.",
                    "event_time": "2026-02-01T00:00:00Z",
                },
                {"content": "Lunch is served at noon in the cafeteria."},
            ]
        },
    )
    embed_now()
    older, newer = (
        Memory.objects.get(content__startswith=p)
        for p in ("The production database password rotates", "The production database password is rotated")
    )
    # when a dry run reports, then the real run compacts
    plan = memory_compact(alice, {"similarity_threshold": 0.9, "dry_run": True})
    unchanged = Memory.objects.filter(superseded_by__isnull=False).count()
    report = memory_compact(alice, {"similarity_threshold": 0.9})
    # then the dry run wrote nothing and announced exactly what the run did
    assert unchanged == 0
    assert plan["dry_run"] is True
    assert plan["merged"] == report["merged"]
    assert report["merged"][0]["canonical"] == str(newer.pk)
    assert report["merged"][0]["superseded"] == [str(older.pk)]
    assert report["merged"][0]["similarity"][0] >= 0.9
    older.refresh_from_db()
    assert older.superseded_by_id == newer.pk
    assert older.supersede_reason.startswith("merged: near-duplicate")
    # and search hides the superseded one unless asked, which still finds it with its link
    default = memory_search(alice, {"query": "database password rotation"})
    everything = memory_search(alice, {"query": "database password rotation", "include_superseded": True})
    assert str(older.pk) not in [hit["id"] for hit in default["hits"]]
    kept = next(hit for hit in everything["hits"] if hit["id"] == str(older.pk))
    assert kept["superseded_by"] == str(newer.pk)
    # and compacting again changes nothing
    again = memory_compact(alice, {"similarity_threshold": 0.9})
    assert (again["merged"], again["stale"], again["expired"], again["superseded_count"]) == ([], [], [], 0)


def test_compaction_supersedes_stale_facts_by_key(alice):
    # given three values of one keyed fact over time
    memory_store(
        alice,
        {
            "items": [
                {
                    "content": "Alice lives in Lisbon.",
                    "kind": "fact",
                    "key": "alice.city",
                    "event_time": "2024-01-01T00:00:00Z",
                },
                {
                    "content": "Alice lives in Berlin.",
                    "kind": "fact",
                    "key": "alice.city",
                    "event_time": "2026-01-01T00:00:00Z",
                },
                {
                    "content": "Alice lives in Porto.",
                    "kind": "fact",
                    "key": "alice.city",
                    "event_time": "2025-01-01T00:00:00Z",
                },
                {"content": "Alice works at Acme.", "kind": "fact", "key": "alice.employer"},
            ]
        },
    )
    # when
    report = memory_compact(alice, {"merge": False})
    # then the latest by event time is current and the others point at it
    berlin = Memory.objects.get(content="Alice lives in Berlin.")
    assert report["stale"] == [
        {
            "kind": "fact",
            "key": "alice.city",
            "current": str(berlin.pk),
            "superseded": [
                str(Memory.objects.get(content="Alice lives in Porto.").pk),
                str(Memory.objects.get(content="Alice lives in Lisbon.").pk),
            ],
        }
    ]
    assert set(Memory.objects.filter(superseded_by=berlin).values_list("content", flat=True)) == {
        "Alice lives in Lisbon.",
        "Alice lives in Porto.",
    }
    timeline = memory_timeline(alice, {})
    assert [item["content"] for item in timeline["items"]] == ["Alice lives in Berlin.", "Alice works at Acme."]


def test_compaction_expires_ttl_items_without_deleting(alice):
    # given a memory whose TTL has passed and one still alive
    result = memory_store(
        alice,
        {"items": [{"content": "Temporary door code 1234.", "ttl_seconds": 3600}, {"content": "Permanent note."}]},
    )
    expired_id = result["items"][0]["id"]
    Memory.objects.filter(pk=expired_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when
    plan = memory_compact(alice, {"dry_run": True})
    report = memory_compact(alice, {})
    # then it is marked expired, kept, and hidden from search and timeline by default
    assert plan["expired"] == report["expired"] == [expired_id]
    memory = Memory.objects.get(pk=expired_id)
    assert memory.expired_at is not None
    assert memory_search(alice, {"query": "door code"})["hits"] == []
    assert [i["id"] for i in memory_timeline(alice, {"include_expired": True})["items"]].count(expired_id) == 1
    assert Memory.objects.count() == 2


def test_compaction_skips_similar_memories_about_different_subjects(alice, embed_now):
    # given two near-identical sentences that carry different keys
    memory_store(
        alice,
        {
            "items": [
                {"content": "The staging server runs Ubuntu 24.04.", "key": "staging.os"},
                {"content": "The staging servers run Ubuntu 24.04.", "key": "staging2.os"},
            ]
        },
    )
    embed_now()
    # when
    report = memory_compact(alice, {"similarity_threshold": 0.9})
    # then the merge is skipped with a reason and nothing is superseded
    assert report["merged"] == []
    assert report["skipped"][0]["reason"].startswith("different keys")
    assert Memory.objects.filter(superseded_by__isnull=False).count() == 0
