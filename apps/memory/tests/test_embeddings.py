"""Embedding backends: OpenAI-compatible over HTTP (against a FAKE loopback server), unavailable backends,
wrong dimensions, re-embedding after a model change, and the `memory` actor in a real worker."""

from __future__ import annotations

import socket
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from apps.memory import embeddings, services
from apps.memory.models import EmbeddingState, Memory
from apps.memory.tests.conftest import fake_vector
from apps.memory.tools import memory_search, memory_store
from conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def openai_settings(settings, fake_embedding_server):
    settings.EMBEDDING_BACKEND = "openai"
    settings.EMBEDDING_URL = fake_embedding_server.url
    settings.EMBEDDING_MODEL = "fake-embedder"
    settings.EMBEDDING_API_KEY = "sk-test"
    settings.EMBEDDING_BATCH_SIZE = 2
    return fake_embedding_server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_openai_compatible_backend_embeds_in_batches(alice, openai_settings):
    # given three memories and a batch size of two
    stored = memory_store(alice, {"items": [{"content": f"fact number {i}"} for i in range(3)]})
    # when the worker's service embeds them
    report = services.memory_embed_pending()
    # then two calls carried them, with the key and model, and the vectors are the server's
    assert report.embedded == 3
    assert [len(r["input"]) for r in openai_settings.requests] == [2, 1]
    assert {r["model"] for r in openai_settings.requests} == {"fake-embedder"}
    assert openai_settings.headers[0]["authorization"] == "Bearer sk-test"
    memory = Memory.objects.get(pk=stored["items"][0]["id"])
    assert memory.embedding_model == "openai:fake-embedder"
    assert list(memory.embedding) == pytest.approx(fake_vector("fact number 0", 384), abs=1e-6)
    # and a search for the exact text ranks it first by vector (the fake's vectors match equal texts only)
    hit = memory_search(alice, {"query": "fact number 2", "mode": "vector", "top_k": 1})["hits"][0]
    assert hit["content"] == "fact number 2"
    assert hit["scores"]["vector_similarity"] == pytest.approx(1.0, abs=1e-4)


def test_unreachable_backend_store_succeeds_pending_and_search_degrades(alice, settings):
    # given an embedding URL where nothing listens
    settings.EMBEDDING_BACKEND = "openai"
    settings.EMBEDDING_URL = f"http://127.0.0.1:{_closed_port()}/v1"
    settings.EMBEDDING_MODEL = "nomic-embed-text"
    # when storing
    stored = memory_store(alice, {"items": [{"content": "The printer on floor 2 jams on A3 paper."}]})
    # then the store succeeds with the embedding pending
    assert stored["stored"] == 1
    assert stored["items"][0]["embedding"] == "pending"
    # when the worker tries, it fails retryably and the memory stays pending with the reason
    with pytest.raises(embeddings.EmbeddingUnavailable, match="unreachable"):
        services.memory_embed_pending()
    memory = Memory.objects.get()
    assert (memory.embedding_state, memory.embedding_attempts) == (EmbeddingState.PENDING, 1)
    assert "EMBEDDING_URL" in memory.embedding_error
    # when searching, words still find it and the answer says the search is text-only and why
    result = memory_search(alice, {"query": "printer jams"})
    assert result["mode"] == "text"
    assert result["degraded"].startswith("text-only search: the query could not be embedded")
    assert "unreachable" in result["degraded"]
    assert result["hits"][0]["id"] == stored["items"][0]["id"]


def test_unavailable_backend_marks_failed_after_the_last_attempt(alice, settings):
    settings.EMBEDDING_BACKEND = "openai"
    settings.EMBEDDING_URL = f"http://127.0.0.1:{_closed_port()}/v1"
    settings.EMBEDDING_MODEL = "m"
    memory_store(alice, {"items": [{"content": "x"}]})
    Memory.objects.update(embedding_attempts=services.MAX_EMBEDDING_ATTEMPTS - 1)
    with pytest.raises(embeddings.EmbeddingUnavailable):
        services.memory_embed_pending()
    assert Memory.objects.get().embedding_state == EmbeddingState.FAILED


def test_backend_switched_off(alice, settings):
    # given EMBEDDING_BACKEND=none
    settings.EMBEDDING_BACKEND = "none"
    # when
    stored = memory_store(alice, {"items": [{"content": "Mondays are for planning."}]})
    result = memory_search(alice, {"query": "planning"})
    # then store says so, search is text-only and says why, vector mode is refused by name
    assert stored["embedding"]["state"] == "unavailable"
    assert "EMBEDDING_BACKEND=none" in stored["embedding"]["detail"]
    assert (result["mode"], len(result["hits"])) == ("text", 1)
    assert "EMBEDDING_BACKEND=none" in result["degraded"]
    from apps.gateway.registry import ToolError

    with pytest.raises(ToolError) as error:
        memory_search(alice, {"query": "planning", "mode": "vector"})
    assert error.value.code == "embedding_unavailable"


def test_openai_backend_without_url_names_the_variable(settings):
    settings.EMBEDDING_BACKEND = "openai"
    settings.EMBEDDING_URL = ""
    settings.EMBEDDING_MODEL = ""
    with pytest.raises(embeddings.EmbeddingUnavailable, match="EMBEDDING_URL and EMBEDDING_MODEL"):
        embeddings.backend().embed(["x"])


def test_wrong_dimension_vectors_fail_clearly_and_lose_nothing(alice, openai_settings):
    # given a backend answering 256-dimensional vectors for a 384-dimensional column
    openai_settings.dims = 256
    stored = memory_store(alice, {"items": [{"content": "Backups run at 02:00 UTC."}]})
    # when the worker embeds
    with pytest.raises(embeddings.EmbeddingDimensionError):
        services.memory_embed_pending()
    # then the memory is kept, marked failed with what to change, and still found by words
    memory = Memory.objects.get(pk=stored["items"][0]["id"])
    assert memory.embedding_state == EmbeddingState.FAILED
    assert "returned 256-dimensional vectors but the memory column holds 384" in memory.embedding_error
    assert "EMBEDDING_MODEL" in memory.embedding_error
    result = memory_search(alice, {"query": "backups"})
    assert result["mode"] == "text"
    assert "256-dimensional" in result["degraded"]
    assert result["hits"][0]["id"] == str(memory.pk)


def test_configured_dimensions_must_match_the_column(settings):
    settings.EMBEDDING_DIMENSIONS = 768
    with pytest.raises(embeddings.EmbeddingUnavailable, match="EMBEDDING_DIMENSIONS=768"):
        embeddings.backend().embed(["x"])


def test_reembed_after_a_model_change(alice, embed_now):
    # given memories embedded by an older model (and one that failed)
    stored = memory_store(alice, {"items": [{"content": f"note {i} about tea"} for i in range(5)]})
    embed_now()
    Memory.objects.update(embedding_model="local:an-old-model")
    Memory.objects.filter(pk=stored["items"][0]["id"]).update(embedding_state=EmbeddingState.FAILED, embedding=None)
    dry = StringIO()
    call_command("reembed", "--dry-run", stdout=dry)
    # when re-embedding
    out = StringIO()
    call_command("reembed", "--batch-size", "2", stdout=out)
    # then every memory carries the current model's vector and the bar reached the end
    assert dry.getvalue().strip() == "5 memories would be re-embedded with local:sentence-transformers/all-MiniLM-L6-v2"
    assert set(Memory.objects.values_list("embedding_model", "embedding_state")) == {
        ("local:sentence-transformers/all-MiniLM-L6-v2", "ready")
    }
    assert "5/5 100.0%" in out.getvalue()
    assert "done: 5 embedded, 0 failed" in out.getvalue()
    # and a second run finds nothing to do
    again = StringIO()
    call_command("reembed", stdout=again)
    assert "re-embedding 0 memories" in again.getvalue()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_memory_worker_embeds_after_store(alice, redis_client, start_worker):
    # given a real worker on the memory queue
    start_worker("memory", db_name=connection.settings_dict["NAME"])
    # when memories are stored (the actor is enqueued after commit)
    stored = memory_store(
        alice,
        {
            "items": [
                {"content": "The office wifi password changes monthly."},
                {"content": "Parking is free after 6pm."},
            ]
        },
    )
    ids = [item["id"] for item in stored["items"]]
    # then the worker embeds them with the local model and search finds one by meaning
    wait_for(lambda: Memory.objects.filter(pk__in=ids, embedding_state="ready").count() == 2, timeout=90)
    embeddings.backend().embed(["load the model in this (the test's) process too"])
    hit = memory_search(alice, {"query": "when can I leave my car without paying", "top_k": 1})["hits"][0]
    assert hit["content"] == "Parking is free after 6pm."
    assert hit["scores"]["vector_rank"] == 1


def test_a_model_directory_gives_the_packaged_models_vectors(tmp_path):
    # given a directory with an ONNX graph and a tokenizer (the layout EMBEDDING_MODEL points at)
    packaged = embeddings._packaged_dir()
    (tmp_path / "model.onnx").symlink_to(embeddings._onnx_for(packaged))
    (tmp_path / "tokenizer.json").symlink_to(packaged / "tokenizer.json")
    backend = embeddings.LocalBackend(model=str(tmp_path), batch_size=8)
    assert not backend.loaded()
    # when it is warmed and used
    backend.warm()
    vector = backend.embed_query("the parking lot is free after six")
    # then it is loaded, records its own model id, and its vector equals the packaged backend's
    packaged = embeddings.LocalBackend(model="", batch_size=8).embed_query("the parking lot is free after six")
    assert backend.loaded()
    assert backend.model_id == str(tmp_path)
    assert len(vector) == 384
    assert sum(a * b for a, b in zip(vector, packaged, strict=True)) > 0.9999


def test_batched_and_single_embeddings_agree():
    # given texts of very different lengths (batches are padded to their longest member)
    backend = embeddings.LocalBackend(model="", batch_size=3)
    texts = ["hi", "a much longer sentence about the quarterly budget review meeting", "ok", "tea " * 300]
    # when embedded together and one by one
    together = backend.embed(texts)
    alone = [backend.embed_query(text) for text in texts]
    # then each vector is the same (padding is masked out; the order is kept)
    for a, b in zip(together, alone, strict=True):
        assert sum(x * y for x, y in zip(a, b, strict=True)) > 0.9999


def test_a_model_directory_without_its_files_names_what_is_missing(tmp_path):
    backend = embeddings.LocalBackend(model=str(tmp_path), batch_size=8)
    with pytest.raises(embeddings.EmbeddingBackendMissing, match=r"tokenizer\.json is missing"):
        backend.embed_query("hello")


# sentence-transformers 6.3.0 / torch 2.15.0, normalize_embeddings=True (recorded 2026-12-03).
REFERENCE_WIFI = [-0.038855, 0.00483, 0.013938, -0.029034, -0.023567, 0.031919, -0.041299, -0.065134]
REFERENCE_PARKING = [0.070011, 0.019605, 0.050528, -0.00969, 0.062037, 0.083131, -0.009813, -0.006503]


def test_the_graph_built_from_the_weights_gives_sentence_transformers_vectors():
    # given reference vectors of all-MiniLM-L6-v2 computed by sentence-transformers 6.3 on torch 2.15 (fp32),
    # first 8 dimensions (benchmarks/memory/bench_backends.py compares whole vectors against the live stack)
    reference = {
        "The office wifi password changes monthly.": REFERENCE_WIFI,
        "Parking is free after 6pm.": REFERENCE_PARKING,
    }
    backend = embeddings.LocalBackend(model="", batch_size=8)
    # when the packaged backend embeds the same texts
    vectors = backend.embed(list(reference))
    # then they match to float rounding
    for vector, expected in zip(vectors, reference.values(), strict=True):
        assert vector[:8] == pytest.approx(expected, abs=2e-5)


def test_a_missing_backend_leaves_memories_pending_without_retries_or_tracebacks(alice, settings, tmp_path, caplog):
    # given a local backend whose model is not installed (EMBEDDING_MODEL points at an empty directory)
    settings.EMBEDDING_MODEL = str(tmp_path)
    stored = memory_store(alice, {"items": [{"content": "The server room code is 4471."}]})
    memory_id = stored["items"][0]["id"]
    # when the memory worker's actor runs (its function, as the worker calls it)
    from apps.memory.actors import memory_embed_pending

    memory_embed_pending.fn()
    # then the memory waits, pending, with the reason; no attempt is counted, nothing is raised for a retry,
    # and one warning line (no traceback) says why
    memory = Memory.objects.get(pk=memory_id)
    assert memory.embedding_state == EmbeddingState.PENDING
    assert memory.embedding_attempts == 0
    assert "tokenizer.json is missing" in memory.embedding_error
    warnings = [r for r in caplog.records if r.name == "apps.memory.actors"]
    assert [(r.levelname, r.exc_info) for r in warnings] == [("WARNING", None)]
    assert "waits for a backend" in warnings[0].getMessage()


def test_a_worker_with_a_backend_resumes_what_failed_for_a_missing_one(alice, settings):
    # given memories an earlier version marked failed because the package was missing, one failed for good
    stored = memory_store(
        alice, {"items": [{"content": "Lunch is at noon."}, {"content": "Standup is at ten."}, {"content": "x"}]}
    )
    ids = [item["id"] for item in stored["items"]]
    Memory.objects.filter(pk__in=ids[:2]).update(
        embedding_state=EmbeddingState.FAILED,
        embedding_attempts=5,
        embedding_error="EMBEDDING_BACKEND=local but the model package is not installed: install it",
    )
    Memory.objects.filter(pk=ids[2]).update(
        embedding_state=EmbeddingState.FAILED, embedding_error="returned 256-dimensional vectors"
    )
    # when a memory worker boots with the backend available
    from apps.memory.middleware import warm_embeddings

    assert warm_embeddings(resume=True) is True
    # then the two are pending again (the boot also enqueued the backlog) and the permanent failure stays failed
    states = {str(pk): state for pk, state in Memory.objects.filter(pk__in=ids).values_list("pk", "embedding_state")}
    assert [states[str(i)] for i in ids] == ["pending", "pending", "failed"]
    assert services.memory_embed_pending().embedded == 2
    assert Memory.objects.filter(pk__in=ids[:2], embedding_state="ready").count() == 2


def test_search_never_compares_vectors_of_another_model(alice, embed_now):
    # given a memory embedded by the current model, then relabelled as another model's vector
    stored = memory_store(alice, {"items": [{"content": "Bike parking is in the courtyard behind the building."}]})
    embed_now()
    memory_id = stored["items"][0]["id"]
    query = {"query": "where can I leave my bicycle", "top_k": 1, "mode": "vector"}
    assert memory_search(alice, query)["hits"][0]["id"] == memory_id
    Memory.objects.filter(pk=memory_id).update(embedding_model="local:some-other-model")
    # when a vector search runs with the current model
    found = memory_search(alice, query)
    # then the other model's vector is not compared (nothing found by meaning)
    assert found["hits"] == []
