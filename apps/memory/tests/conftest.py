"""Memory test fixtures: principals, a tool context, and a fake OpenAI-compatible embedding server on loopback.

The fake server stands in for Ollama/TEI/vLLM (none runs here); the local model in the other tests is the real one.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apps.accounts.principal import Principal
from apps.gateway.registry import ToolContext
from apps.memory import tools  # noqa: F401 - registers the tools
from apps.memory.services import memory_embed_pending


class MemoryToolContext(ToolContext):
    """What the gateway hands an inline handler: the caller and request ids."""

    def __init__(self, principal: Principal, request_id: str | None = "req-1") -> None:
        self.principal = principal
        self.request_id = request_id


def make_principal(pid: str, *, roles: tuple[str, ...] = ("agent",)) -> Principal:
    return Principal(
        id=pid,
        kind="user",
        name=pid,
        identity_source="internal",
        roles=frozenset(roles),
        grants=frozenset({"memory.*"}),
    )


@pytest.fixture
def alice() -> MemoryToolContext:
    return MemoryToolContext(make_principal("user:alice"))


@pytest.fixture
def bob() -> MemoryToolContext:
    return MemoryToolContext(make_principal("user:bob", roles=("agent", "research")))


@pytest.fixture
def embed_now() -> Callable[[], int]:
    """Run the `memory` worker's service in-process (the actor is tested once with a real worker)."""

    def run() -> int:
        return memory_embed_pending().embedded

    return run


def fake_vector(text: str, dims: int) -> list[float]:
    """Deterministic unit vector from the text's hash: same text, same vector."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] + i * 31) % 251) / 251 - 0.5 for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


@dataclass
class FakeEmbeddingServer:
    url: str
    dims: int = 384
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def fake_embedding_server() -> Iterator[FakeEmbeddingServer]:
    """A FAKE OpenAI-compatible /v1/embeddings on 127.0.0.1 (set `.dims` to answer with another width)."""
    state = FakeEmbeddingServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path != "/v1/embeddings":
                self.send_response(404)
                self.end_headers()
                return
            data = [
                {"object": "embedding", "index": i, "embedding": fake_vector(text, state.dims)}
                for i, text in enumerate(body["input"])
            ]
            payload = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
