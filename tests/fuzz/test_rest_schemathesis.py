"""The REST API fuzzed from its own OpenAPI schema (drf-spectacular at /api/schema/): no 5xx, whatever is sent.

In-process over WSGI, as an authenticated superuser (HTTP Basic, one of DRF's default authentications), with
a fixed seed and a bounded number of examples per operation.
"""

from __future__ import annotations

import base64

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

PASSWORD = "fuzz-password-1"  # a throwaway user of the test database


@pytest.fixture
def basic_auth(transactional_db) -> str:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("fuzz", "fuzz@example.invalid", PASSWORD)
    return "Basic " + base64.b64encode(f"fuzz:{PASSWORD}".encode()).decode()


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_rest_api_never_answers_a_server_error(case, basic_auth):
    # when any request its schema describes (and mutations of it) is sent
    response = case.call(headers={"Authorization": basic_auth})
    # then it is answered without a server error
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
