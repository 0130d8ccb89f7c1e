from __future__ import annotations

import pytest

from apps.audit.redaction import MAX_STRING, REDACTED, is_secret_key, redact


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "apiKey",
        "x-api-key",
        "API_KEY",
        "token",
        "access_token",
        "refreshToken",
        "client_secret",
        "Authorization",
        "cookie",
        "private_key",
        "credentials",
        "otp",
    ],
)
def test_secret_looking_keys_are_recognised(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["title", "max_tokens", "author", "description", "url", "tokenizer_name", "oauth_provider"]
)
def test_ordinary_keys_are_kept(key):
    assert not is_secret_key(key)


def test_redaction_is_recursive_and_catches_credential_values():
    # given arguments with secrets at several depths and a token pasted into a free-text field
    arguments = {
        "title": "deploy",
        "env": [{"name": "X", "password": "hunter2"}, {"headers": {"Authorization": "Bearer abc.def"}}],
        "note": "use mcpp_abcdefghijkl_SECRETSECRETSECRET please",
        "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        "empty_password": "",
        "max_tokens": 100,
    }
    # when redacted
    out = redact(arguments)
    # then every secret is replaced and everything else kept
    assert out == {
        "title": "deploy",
        "env": [{"name": "X", "password": REDACTED}, {"headers": {"Authorization": REDACTED}}],
        "note": f"use {REDACTED} please",
        "jwt": REDACTED,
        "empty_password": "",
        "max_tokens": 100,
    }


def test_large_values_are_cut():
    out = redact({"blob": "x" * (MAX_STRING + 50), "items": list(range(500)), "big": 2**80, "nan": float("nan")})
    assert out["blob"].endswith("…[+50 chars]")
    assert len(out["items"]) == 201
    assert out["items"][-1] == "[truncated: 300 more items]"
    assert out["big"] == str(2**80)
    assert out["nan"] == "nan"
