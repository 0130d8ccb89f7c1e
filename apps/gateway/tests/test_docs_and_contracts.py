from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from jsonschema import Draft202012Validator

from apps.gateway.docs import ERRORS_MD, TOOLS_MD, errors_markdown, tools_markdown

CONTRACTS = Path(__file__).resolve().parents[3] / "docs" / "contracts"


def test_generated_docs_are_current():
    # then: regenerate with `manage.py tools_doc` when this fails
    assert TOOLS_MD.read_text() == tools_markdown(), "docs/tools.md is stale: run `manage.py tools_doc`"
    assert ERRORS_MD.read_text() == errors_markdown(), "docs/errors.md is stale: run `manage.py tools_doc`"


def test_tools_doc_check_fails_when_stale(tmp_path, monkeypatch):
    # given a stale copy of the tool reference
    stale = tmp_path / "tools.md"
    stale.write_text("old\n")
    monkeypatch.setattr("apps.gateway.management.commands.tools_doc.TOOLS_MD", stale)
    # when / then
    with pytest.raises(SystemExit) as exited:
        call_command("tools_doc", "--check")
    assert exited.value.code == 1
    assert stale.read_text() == "old\n"


@pytest.mark.parametrize("name", ["envelope.v1", "job-state.v1", "job-event.v1"])
def test_contract_schemas_are_valid(name):
    schema = json.loads((CONTRACTS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)


def test_envelope_accepts_real_messages_and_rejects_batches():
    validator = Draft202012Validator(json.loads((CONTRACTS / "envelope.v1.schema.json").read_text()))
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "platform.whoami", "_meta": {"io.mcpplat/idempotencyKey": "k"}},
    }
    error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    assert validator.is_valid(request)
    assert validator.is_valid(error)
    assert not validator.is_valid([request])
    assert not validator.is_valid({"jsonrpc": "2.0", "id": 1, "method": ""})
