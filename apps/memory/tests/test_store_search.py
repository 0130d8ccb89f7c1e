"""memory.store and memory.search on real PostgreSQL + pgvector with the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import pytest

from apps.gateway.registry import ToolError
from apps.memory.models import Memory
from apps.memory.tools import memory_search, memory_store

pytestmark = pytest.mark.django_db

FACTS = [
    "The deploy pipeline broke because the staging database ran out of disk space.",
    "Alice prefers her coffee black with no sugar.",
    "The quarterly budget review moved to Thursday afternoon.",
    "Our API rate limit for the billing service is 500 requests per minute.",
    "The cat knocked a glass of water onto the laptop keyboard.",
    "Bob is allergic to peanuts and carries an epinephrine pen.",
]


def _store(ctx, contents, **extra):
    return memory_store(ctx, {"items": [{"content": c, **extra} for c in contents]})


def test_store_returns_ids_at_once_and_search_finds_by_paraphrase(alice, embed_now):
    # given memories stored and embedded by the memory worker's service
    stored = _store(alice, FACTS)
    assert stored["stored"] == len(FACTS)
    assert {item["embedding"] for item in stored["items"]} == {"pending"}
    assert stored["embedding"]["state"] == "queued"
    assert embed_now() == len(FACTS)
    # when searching with words the memory does not contain
    found = memory_search(alice, {"query": "storage on the test server was full", "top_k": 3})
    words_only = memory_search(alice, {"query": "storage on the test server was full", "mode": "text"})
    drink = memory_search(alice, {"query": "How does she take her morning drink?", "top_k": 1})
    # then the meaning finds it; words alone do not
    assert found["mode"] == "hybrid"
    assert found["degraded"] is None
    assert found["hits"][0]["content"] == FACTS[0]
    assert found["hits"][0]["scores"]["vector_rank"] == 1
    assert found["hits"][0]["scores"]["vector_similarity"] > 0.3
    assert found["hits"][0]["scores"]["text_rank"] is None
    assert words_only["hits"] == []
    assert drink["hits"][0]["content"] == FACTS[1]


def test_new_memories_are_searchable_by_words_before_embedding(alice):
    # given memories not embedded yet
    _store(alice, FACTS)
    # when searching by words
    result = memory_search(alice, {"query": "peanut allergy"})
    # then the text half finds them and the answer says how many still wait for embeddings
    assert result["hits"][0]["content"] == FACTS[5]
    assert result["hits"][0]["embedding"] == "pending"
    assert result["hits"][0]["scores"]["text_rank"] == 1
    assert result["pending_embeddings"] == len(FACTS)


def test_exact_duplicates_are_not_stored_twice(alice, bob):
    # given a memory already stored
    first = _store(alice, [FACTS[0]])
    # when the same content is stored again (twice in one call, once padded with spaces)
    again = memory_store(
        alice, {"items": [{"content": FACTS[0]}, {"content": f"  {FACTS[0]} "}, {"content": FACTS[1]}]}
    )
    other_namespace = _store(bob, [FACTS[0]])
    # then the existing id comes back, and another namespace keeps its own copy
    original = first["items"][0]["id"]
    assert [item["status"] for item in again["items"]] == ["duplicate", "duplicate", "stored"]
    assert again["items"][0]["id"] == again["items"][1]["id"] == original
    assert (again["stored"], again["duplicates"]) == (1, 2)
    assert other_namespace["items"][0]["status"] == "stored"
    assert Memory.objects.filter(namespace="user:alice").count() == 2


def test_search_filters_kinds_metadata_and_event_time(alice, embed_now):
    # given memories of different kinds, metadata and event times
    memory_store(
        alice,
        {
            "items": [
                {
                    "content": "Deploys happen on Tuesdays.",
                    "kind": "fact",
                    "metadata": {"team": "ops"},
                    "event_time": "2026-01-10T09:00:00Z",
                },
                {
                    "content": "Deploys used to happen on Fridays.",
                    "kind": "fact",
                    "metadata": {"team": "ops"},
                    "event_time": "2025-06-01T09:00:00Z",
                },
                {
                    "content": "I like deploys to be boring.",
                    "kind": "preference",
                    "metadata": {"team": "dev"},
                    "event_time": "2026-02-01T09:00:00Z",
                },
            ]
        },
    )
    embed_now()

    def contents(**args):
        return [hit["content"] for hit in memory_search(alice, {"query": "deploys", **args})["hits"]]

    # then every filter narrows the hits
    assert contents(kinds=["preference"]) == ["I like deploys to be boring."]
    assert set(contents(metadata={"team": "ops"})) == {
        "Deploys happen on Tuesdays.",
        "Deploys used to happen on Fridays.",
    }
    assert set(contents(event_after="2026-01-01T00:00:00Z")) == {
        "Deploys happen on Tuesdays.",
        "I like deploys to be boring.",
    }
    assert contents(event_before="2026-01-01T00:00:00+00:00") == ["Deploys used to happen on Fridays."]
    assert len(contents(top_k=1)) == 1


def test_score_threshold_gates_matches_by_meaning(alice, embed_now):
    # given embedded memories
    _store(alice, FACTS)
    embed_now()
    # when the similarity threshold is above anything an unrelated query reaches
    result = memory_search(alice, {"query": "volcanic eruptions in Iceland", "score_threshold": 0.9, "mode": "vector"})
    loose = memory_search(alice, {"query": "volcanic eruptions in Iceland", "mode": "vector", "top_k": 3})
    # then nothing passes, while without it the nearest are still ranked
    assert result["hits"] == []
    assert len(loose["hits"]) == 3
    assert all(hit["scores"]["vector_similarity"] < 0.9 for hit in loose["hits"])


@pytest.mark.parametrize(
    ("args", "field", "phrase"),
    [
        ({"query": "   "}, "query", "non-space"),
        ({"query": "x", "event_after": "yesterday"}, "event_after", "ISO 8601"),
        ({"query": "x", "event_after": "2026-01-01T00:00:00"}, "event_after", "timezone"),
    ],
)
def test_bad_search_input_names_the_field(alice, args, field, phrase):
    # when / then
    with pytest.raises(ToolError) as error:
        memory_search(alice, args)
    assert error.value.code == "invalid_arguments"
    assert error.value.message.startswith(f"{field}:")
    assert phrase in error.value.message


def test_oversized_content_is_refused_with_the_limit(alice, settings):
    # given the configured limit
    settings.MEMORY_MAX_CONTENT_CHARS = 100
    # when one item of a batch is too long
    with pytest.raises(ToolError) as error:
        memory_store(alice, {"items": [{"content": "fine"}, {"content": "x" * 101}]})
    # then the error names the item, the limit and the setting, and nothing was stored
    assert error.value.code == "invalid_arguments"
    assert error.value.data == {"field": "items[1].content"}
    assert "101 characters is more than the limit of 100 (MEMORY_MAX_CONTENT_CHARS)" in error.value.message
    assert Memory.objects.count() == 0


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"content": " \n "}, "items[0].content"),
        ({"content": "ok", "kind": "Not A Kind!"}, "items[0].kind"),
        ({"content": "ok", "event_time": "2026-01-01T10:00:00"}, "items[0].event_time"),
    ],
)
def test_bad_store_items_name_the_field(alice, item, field):
    with pytest.raises(ToolError) as error:
        memory_store(alice, {"items": [item]})
    assert error.value.message.startswith(f"{field}:")
    assert Memory.objects.count() == 0


def test_too_many_items_in_one_call(alice, settings):
    settings.MEMORY_MAX_ITEMS_PER_STORE = 2
    with pytest.raises(ToolError) as error:
        memory_store(alice, {"items": [{"content": f"m{i}"} for i in range(3)]})
    assert "MEMORY_MAX_ITEMS_PER_STORE" in error.value.message


def test_store_records_provenance(alice):
    # when
    result = memory_store(alice, {"items": [{"content": "The VPN certificate expires in March.", "ttl_seconds": 60}]})
    # then
    memory = Memory.objects.get(pk=result["items"][0]["id"])
    assert memory.source == {"principal_id": "user:alice", "tool": "memory.store", "request_id": "req-1"}
    assert memory.expires_at is not None
    assert memory.ingested_at <= memory.expires_at
