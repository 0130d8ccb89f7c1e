"""browser.open latency, warm pool vs cold launch, and sessions per worker at steady state.

Run: .venv/bin/python -m pytest benchmarks/browser/bench_browser.py -p no:cacheprovider --no-cov -s
(pytest only for the embedded services and the test database; nothing here asserts on timing.)
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.accounts.principal import Principal
from apps.browser import leases, services
from apps.browser.models import BrowserPolicy
from apps.browser.runtime import runtime
from apps.browser.tests.conftest import _Site

pytestmark = pytest.mark.django_db

WARM_NEW = int(os.environ.get("BENCH_WARM_NEW", "30"))
WARM_SAME = int(os.environ.get("BENCH_WARM_SAME", "50"))
COLD = int(os.environ.get("BENCH_COLD", "5"))
STEADY = [int(n) for n in os.environ.get("BENCH_STEADY", "1,10,20,40").split(",")]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(_pct(ms, 0.95), 1)}


def _browser_rss_mb() -> float:
    """Resident memory of this process's Chromium tree (all its processes), in MB."""
    root = runtime.browser_pid()
    if root is None:
        return 0.0
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


async def _drop_spares() -> None:
    while runtime._spares:
        spare = runtime._spares.pop()
        await spare.context.close()
        await spare.proxy.close()


def test_browser_open_benchmark(redis_client, settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    BrowserPolicy.objects.create(
        role="bench", allow="*", allow_internal=f"127.0.0.1:{server.server_address[1]}", max_sessions=1000
    )
    who = Principal(id="test:bench", kind="test", name="bench", identity_source="internal", roles=frozenset({"bench"}))
    url = base + "/form"

    def close_all() -> None:
        for sid in list(runtime.sessions):
            runtime.call(lambda s=sid: runtime.session_close(s), timeout=15)
            leases.lease_release(sid)

    load_before = os.getloadavg()
    # cold: a fresh Chromium launch + context + page + navigation + snapshot
    cold = []
    for _ in range(COLD):
        close_all()
        runtime.call(runtime.shutdown, timeout=30)
        start = time.perf_counter()
        services.browser_open(principal=who, url=url)
        cold.append(time.perf_counter() - start)
    close_all()

    # warm browser, no pool: new context + page + navigation + snapshot on the running Chromium
    settings.BROWSER_WARM_CONTEXTS = 0
    runtime.call(_drop_spares, timeout=30)
    warm_browser = []
    for _ in range(WARM_NEW):
        start = time.perf_counter()
        sid = services.browser_open(principal=who, url=url)["session"]
        warm_browser.append(time.perf_counter() - start)
        services.browser_close(principal=who, session_id=sid)

    # warm pool: a pre-created context is claimed; navigation + snapshot. Opens arrive 1.5 s apart (the pool
    # refills 1 s after a claim; a burst larger than BROWSER_WARM_CONTEXTS pays the no-pool price).
    settings.BROWSER_WARM_CONTEXTS = 2
    runtime.call(runtime._spares_fill, timeout=30)
    warm_new = []
    for _ in range(WARM_NEW):
        time.sleep(1.5)
        start = time.perf_counter()
        sid = services.browser_open(principal=who, url=url)["session"]
        warm_new.append(time.perf_counter() - start)
        services.browser_close(principal=who, session_id=sid)

    # warm, same session: navigation + snapshot in an open session
    sid = services.browser_open(principal=who, url=url)["session"]
    warm_same = []
    for i in range(WARM_SAME):
        start = time.perf_counter()
        services.browser_open(principal=who, url=url if i % 2 else base + "/table", session_id=sid)
        warm_same.append(time.perf_counter() - start)
    close_all()

    # steady state: N open sessions held by one worker; latency of one more open and memory per session
    steady = []
    base_rss = _browser_rss_mb()
    for target in STEADY:
        while len(runtime.sessions) < target:
            services.browser_open(principal=who, url=url)
        samples = []
        for _ in range(10):
            start = time.perf_counter()
            services.browser_open(principal=who, url=base + "/table", session_id=next(iter(runtime.sessions)))
            samples.append(time.perf_counter() - start)
        rss = _browser_rss_mb()
        steady.append(
            {
                "sessions": target,
                "open_in_session": _summary(samples),
                "chromium_pss_mb": rss,
                "pss_per_session_mb": round((rss - base_rss) / target, 1) if target else None,
            }
        )
    close_all()

    results = {
        "load_average_at_start": [round(x, 1) for x in load_before],
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "cold_launch_open": _summary(cold),
        "warm_browser_open_new_context": _summary(warm_browser),
        "warm_pool_open_new_session": _summary(warm_new),
        "warm_open_existing_session": _summary(warm_same),
        "chromium_pss_idle_mb": base_rss,
        "steady_state": steady,
    }
    print("\nBENCH browser " + json.dumps(results, indent=2))
    (Path(__file__).parent / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    server.shutdown()
    services.housekeeper.stop()
    runtime.stop()
