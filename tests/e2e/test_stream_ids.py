"""A malformed `Last-Event-ID` on the GET stream is bad input: a 400 naming the header, before any stream or Redis.

The old gateway started the SSE stream, handed the header to Redis (XRANGE / XREAD), logged Redis's traceback and
ended the stream, on every request. Generated: ids of every malformed family, and the valid shapes beside them.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.test_http import legacy_headers, legacy_session

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

U64 = 2**64 - 1
_HEX12 = st.text(alphabet="0123456789abcdef", min_size=12, max_size=12)
_PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
# No id this server sends has a capital letter, a space or punctuation other than `.` and `-`.
_FOREIGN = st.sampled_from(list("ABCXYZ!#$%&*+/:;<=>?@[]^_`{|}~ ,'\"\\"))

MALFORMED = st.one_of(
    st.tuples(st.text(_PRINTABLE, max_size=20), _FOREIGN, st.text(_PRINTABLE, max_size=20)).map("".join),
    st.integers(0, 10**30).map(lambda n: f"get.{n}"),  # no `-seq`
    st.tuples(st.integers(U64 + 1, 10**30), st.integers(0, U64)).map(lambda t: f"get.{t[0]}-{t[1]}"),
    st.tuples(st.integers(0, U64), st.integers(U64 + 1, 10**30)).map(lambda t: f"get.{t[0]}-{t[1]}"),
    st.just(f"get.{U64}-{U64}"),  # Redis refuses an exclusive start after the last possible id
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=11).map(lambda h: f"{h}.job.1"),
    _HEX12.map(lambda h: f"{h}.job."),
    _HEX12.map(lambda h: f"{h}.job.1234567890123456789"),  # 19 digits
    st.sampled_from([".", "get.", ".0-0", "get.-", "get.0-", "get.-0", "job.1", "get.0-0.", "get..0-0", "0-0"]),
    st.sampled_from(["get.1-1-1", "get.0x1-0", "get.1e3-0", "get.-1-0", "stream.0-0", "GET.0-0", "get.1.5-0"]),
)
VALID = st.one_of(
    st.tuples(st.integers(0, U64 - 1), st.integers(0, U64)).map(lambda t: f"get.{t[0]}-{t[1]}"),
    st.tuples(_HEX12, st.integers(0, 10**13), st.integers(0, 99)).map(lambda t: f"{t[0]}.{t[1]}-{t[2]}"),
    st.tuples(_HEX12, st.integers(0, 10**18 - 1)).map(lambda t: f"{t[0]}.job.{t[1]}"),
)
BUDGET = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _get_stream(server, headers: dict[str, str], last: str) -> httpx.Response:
    get_headers = {**headers, "accept": "text/event-stream", "last-event-id": last}
    with httpx.stream("GET", server.url, headers=get_headers, timeout=10) as response:
        if response.headers.get("content-type", "").startswith("application/json"):
            response.read()
        return response


def test_generated_malformed_last_event_ids_are_a_clear_400(mcp_server, callers):
    headers = legacy_headers(callers.e2e, legacy_session(mcp_server, callers.e2e))

    @BUDGET
    @given(last=MALFORMED)
    def check(last: str) -> None:
        # when
        response = _get_stream(mcp_server, headers, last)
        # then bad input, named, with what to send instead; the stream never started
        assert response.status_code == 400, (last, response.status_code)
        error = response.json()["error"]
        assert error["code"] == -32600
        assert error["message"].startswith("Invalid Last-Event-ID header: ")
        assert "Send back the id of the last SSE event you received" in error["message"]

    check()


def test_generated_well_formed_last_event_ids_still_open_the_stream(mcp_server, callers):
    headers = legacy_headers(callers.e2e, legacy_session(mcp_server, callers.e2e))

    @settings(BUDGET, max_examples=30)
    @given(last=VALID)
    def check(last: str) -> None:
        # when / then an id of the shape we send resumes (or waits for) events, as before
        response = _get_stream(mcp_server, headers, last)
        assert response.status_code == 200, (last, response.status_code)
        assert response.headers["content-type"].startswith("text/event-stream")

    check()
