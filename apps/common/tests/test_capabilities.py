"""`/readyz` names each capability's state (engine + image, Chromium, embedding model) beside the services."""

from __future__ import annotations

import pytest
from django.test import override_settings


@pytest.mark.django_db
def test_readyz_reports_every_capability_ready_on_a_provisioned_machine(client):
    # given a process that loaded its model at start, as the gateway does
    from apps.memory import embeddings

    embeddings.backend().warm()
    # when readiness is asked on a machine scripts/provision.sh set up
    body = client.get("/readyz").json()
    caps = body["capabilities"]
    # then each capability is there and ready, with what it checked
    assert set(caps) == {"sandbox", "browser", "embeddings"}
    assert caps["sandbox"]["ok"] is True, caps["sandbox"]
    assert caps["sandbox"]["engine"] == "reachable"
    assert caps["sandbox"]["image_present"] is True
    assert {"runc", "runsc"} <= set(caps["sandbox"]["runtimes"])
    assert caps["browser"]["ok"] is True, caps["browser"]
    assert caps["embeddings"] == {
        "ok": True,
        "backend": "local",
        "model": "local:sentence-transformers/all-MiniLM-L6-v2",
        "loaded": True,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("capability", "overrides", "fix"),
    [
        ("sandbox", {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "30-sandbox.sh"),
        ("sandbox", {"SANDBOX_DEFAULT_IMAGE": "mcpplat/not-built:0"}, "make sandbox-image"),
        ("browser", {"BROWSER_EXECUTABLE": "/nonexistent/chromium"}, "apt-get install chromium"),
        ("embeddings", {"EMBEDDING_MODEL": "/nonexistent/model"}, "scripts/venv.sh run"),
        ("embeddings", {"EMBEDDING_BACKEND": "none"}, "EMBEDDING_BACKEND=local"),
    ],
)
def test_an_unavailable_capability_is_named_with_its_fix_without_failing_readiness(client, capability, overrides, fix):
    # given one capability's prerequisite missing
    with override_settings(**overrides):
        response = client.get("/readyz")
    body = response.json()
    # then readiness still passes on its services, and the capability says it is not ok and how to fix it
    assert response.status_code == 200
    assert body["failing"] == []
    assert body["capabilities"][capability]["ok"] is False
    assert fix in body["capabilities"][capability]["fix"]
    others = {name: cap["ok"] for name, cap in body["capabilities"].items() if name != capability}
    assert all(others.values()), others


@pytest.mark.django_db
def test_a_model_still_loading_is_reported_as_loading_without_holding_readiness(client, monkeypatch):
    # given a process whose model takes longer to load than a readiness check waits
    import threading

    from apps.common import capabilities
    from apps.memory import embeddings

    release = threading.Event()
    monkeypatch.setattr(embeddings.LocalBackend, "loaded", lambda self: False)
    monkeypatch.setattr(embeddings.LocalBackend, "warm", lambda self: release.wait(10))
    monkeypatch.setattr(capabilities, "_warming", {})
    try:
        # when readiness is asked while it loads
        body = client.get("/readyz").json()
        # then the gateway is ready and the embeddings capability says it is loading
        assert body["failing"] == []
        assert body["capabilities"]["embeddings"]["ok"] is False
        assert body["capabilities"]["embeddings"]["state"] == "loading"
    finally:
        release.set()
    # and once the load is done, the next check reports the model ready
    assert client.get("/readyz").json()["capabilities"]["embeddings"]["ok"] is True
