"""What a test does when a capability it needs is missing: fail, naming the fix — unless the user asked to skip it.

`make test` runs every test: scripts/provision.sh installs what each capability needs first, so a missing one is a
provisioning failure, not a reason to skip. To leave capabilities out on purpose (a laptop without Docker, say):

    MCPPLAT_TEST_SKIP=sandbox,browser make test     # any of: sandbox, gvisor, browser, conformance

and the summary lists each skipped test with "skipped on request (MCPPLAT_TEST_SKIP=...)" and the reason.
"""

from __future__ import annotations

import os

import pytest

CAPABILITIES = {"sandbox", "gvisor", "browser", "conformance"}


def requested_skips() -> set[str]:
    names = {part.strip() for part in os.environ.get("MCPPLAT_TEST_SKIP", "").split(",") if part.strip()}
    unknown = names - CAPABILITIES
    if unknown:
        raise pytest.UsageError(
            f"MCPPLAT_TEST_SKIP names {', '.join(sorted(unknown))}: use any of {', '.join(sorted(CAPABILITIES))}"
        )
    return names


def require(capability: str, problem: str | None, fix: str) -> None:
    """Fail (or skip, when asked) a test whose `capability` is unavailable; `problem` None means it is there."""
    if problem is None:
        return
    if capability in requested_skips():
        pytest.skip(f"skipped on request (MCPPLAT_TEST_SKIP={os.environ['MCPPLAT_TEST_SKIP']}): {problem}")
    pytest.fail(f"{capability} unavailable: {problem}: {fix} (or MCPPLAT_TEST_SKIP={capability} to skip on purpose)")
