"""The per-process browser runtime: one Chromium, one event-loop thread, one context per session.

Dramatiq actors are synchronous and threaded; Playwright's async API is not thread-safe. So every process
has ONE daemon thread running an asyncio loop that owns Playwright, the browser, every context and every
egress proxy; other threads submit coroutines with `runtime.call(...)` and wait for the result. The browser
is launched on first use and relaunched after a crash; a crash ends the sessions it carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings

from apps.browser.egress import EgressProxy
from apps.browser.policy import DomainPolicy, PolicyError, Resolver, system_resolve

log = logging.getLogger(__name__)
T = TypeVar("T")

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    # Chromium keeps only the last --disable-features, so this repeats Playwright's own list (1.65) and adds
    # the browser's own calls home that would otherwise leave through a session's egress proxy (autofill
    # sends form signatures to a Google service on every page with a form).
    "--disable-features="
    + ",".join(
        (
            "AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,HttpsUpgrades,"
            "HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,ThirdPartyStoragePartitioning,"
            "AvoidCorsURLLoaderRestartOnRedirect,TcpPortRandomizationWin,OptimizationHints,"
            "NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch",
            "AutofillServerCommunication,AutofillCrowdsourcing,Translate,InterestFeedContentSuggestions,"
            "CertificateTransparencyComponentUpdater,SafeBrowsingEnhancedProtection",
        )
    ),
)


# What an unclaimed spare context may reach: nothing.
_SPARE_POLICY = DomainPolicy.build(name="unclaimed", allow=())


class CallCancelled(Exception):
    """The caller's job was cancelled while it waited for the browser; the pending browser call was cancelled."""


class BrowserUnavailable(Exception):
    """Chromium is missing or cannot start (names the env var / script that fixes it)."""


class SessionEnded(Exception):
    def __init__(self, session_id: str, reason: str):
        super().__init__(f"browser session {session_id} has ended: {reason}")
        self.session_id = session_id
        self.reason = reason


@dataclass
class LiveSession:
    id: str
    principal_id: str
    policy: DomainPolicy
    context: Any
    page: Any
    proxy: EgressProxy
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refs: frozenset[str] = frozenset()
    blocks: list[dict[str, Any]] = field(default_factory=list)
    tracing: bool = False
    ended: str | None = None
    last_used: float = field(default_factory=time.monotonic)

    def drain_blocks(self) -> list[dict[str, Any]]:
        blocks, self.blocks = self.blocks, []
        return blocks


class BrowserRuntime:
    def __init__(self) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Replaceable name resolution (tests use a named fake for addresses that cannot be reached here).
        self.resolver: Resolver = system_resolve
        self.sessions: dict[str, LiveSession] = {}
        self.launches = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._playwright: Any = None
        self._browser: Any = None
        self._launch_lock: asyncio.Lock | None = None
        self._pid = os.getpid()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._spares: list[LiveSession] = []
        self._filling = False

    # ----------------------------------------------------------------------------------- loop thread

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._pid != os.getpid():  # forked: the loop thread did not come along
            self.__init__()  # type: ignore[misc]
        with self._start_lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="browser-loop", daemon=True)
                self._thread.start()
                ready.wait(5)
                self._loop = loop
                self._launch_lock = None
            return self._loop

    def call(
        self, factory: Callable[[], Awaitable[T]], timeout: float, *, cancelled: Callable[[], bool] | None = None
    ) -> T:
        """Run a coroutine on the browser loop from any other thread and wait for its result.

        With `cancelled`, the wait checks it every 0.2 s; when it turns true the coroutine is cancelled on the loop
        (Playwright aborts its pending call) and CallCancelled is raised, so a cancelled job ends within a second.
        """
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("runtime.call() from the browser loop itself would deadlock")

        async def run() -> T:
            return await factory()

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                return future.result(max(0.0, min(remaining, 0.2)) if cancelled is not None else timeout)
            except TimeoutError:
                if cancelled is not None and cancelled():
                    future.cancel()
                    raise CallCancelled from None
                if cancelled is None or time.monotonic() >= deadline:
                    future.cancel()
                    raise

    # ------------------------------------------------------------------------------------- browser

    @property
    def executable(self) -> str:
        return str(settings.BROWSER_EXECUTABLE)

    async def browser(self) -> Any:
        if self._launch_lock is None:
            self._launch_lock = asyncio.Lock()
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if not Path(self.executable).exists():
                raise BrowserUnavailable(
                    f"Chromium not found at {self.executable}: install it (scripts/provision.d/40-chromium.sh) or set "
                    "BROWSER_EXECUTABLE"
                )
            if self._playwright is None:
                from playwright.async_api import async_playwright

                self._playwright = await async_playwright().start()
            try:
                browser = await self._playwright.chromium.launch(
                    executable_path=self.executable,
                    args=list(CHROMIUM_ARGS),
                    headless=True,
                    # Every context overrides this with its own egress proxy; nothing ever uses this one.
                    proxy={"server": "http://per-context"},
                    timeout=30_000,
                )
            except Exception as exc:
                raise BrowserUnavailable(f"Chromium at {self.executable} failed to start: {exc}") from exc
            browser.on("disconnected", self._on_disconnected)
            self._browser = browser
            self.launches += 1
            self._background(self._spares_fill())
            return browser

    async def _resolve(self, host: str) -> list[str]:
        return await self.resolver(host)  # looked up per call: the resolver may be replaced at run time

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_disconnected(self, browser: Any) -> None:
        if browser is not self._browser:
            return
        self._browser = None
        self._spares.clear()
        for session in list(self.sessions.values()):
            session.ended = "the browser crashed or was closed; open a new session"
            self.sessions.pop(session.id, None)
            self._background(session.proxy.close())
        log.warning("browser disconnected; %d session(s) ended", len(self.sessions))

    def browser_pid(self) -> int | None:
        """The Chromium main process launched by this process (for operators and the crash test)."""
        if self._browser is None:
            return None
        parents: dict[int, int] = {}
        commands: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")

        def ours(pid: int) -> bool:
            while pid > 1:
                if pid == os.getpid():
                    return True
                pid = parents.get(pid, 0)
            return False

        for pid, command in commands.items():
            parent_is_chromium = "chrom" in commands.get(parents.get(pid, 0), "")
            if "chrom" in command and not parent_is_chromium and ours(pid):
                return pid
        return None

    # ------------------------------------------------------------------------------------ sessions

    async def session_start(self, *, session_id: str, principal_id: str, policy: DomainPolicy) -> LiveSession:
        """A new isolated context for a session: a pre-warmed spare when one fits, else a fresh one."""
        session = None
        if not policy.allow_downloads:
            while self._spares and session is None:
                spare = self._spares.pop()
                if not spare.ended and not spare.page.is_closed():
                    session = spare
        if session is None:
            session = await self._context_new(policy)
        session.id, session.principal_id, session.policy = session_id, principal_id, policy
        session.proxy.policy = policy
        session.blocks.clear()  # whatever an unclaimed context tried is not this caller's business
        # Timeouts as configured now (a spare may have been created under other settings).
        session.context.set_default_timeout(settings.BROWSER_ACTION_TIMEOUT_MS)
        session.context.set_default_navigation_timeout(settings.BROWSER_NAVIGATION_TIMEOUT_MS)
        session.last_used = time.monotonic()
        self.sessions[session_id] = session
        # Refill after the caller's navigation has had the CPU: creating a context competes with it.
        self._background(self._spares_fill(delay=1.0))
        return session

    async def _context_new(self, policy: DomainPolicy) -> LiveSession:
        browser = await self.browser()
        holder: dict[str, LiveSession] = {}

        def on_block(block: PolicyError) -> None:
            if session := holder.get("session"):
                session.blocks.append(block.as_dict())

        proxy = await EgressProxy(policy=policy, resolver=self._resolve, on_block=on_block).start()
        try:
            context = await browser.new_context(
                proxy={"server": proxy.url, "bypass": ""},
                accept_downloads=policy.allow_downloads,
                service_workers="block",  # their fetches would not pass context.route
                java_script_enabled=True,
                viewport={"width": 1280, "height": 800},
            )
        except Exception:
            await proxy.close()
            raise
        session = LiveSession(id="", principal_id="", policy=policy, context=context, page=None, proxy=proxy)
        holder["session"] = session
        await context.route("**/*", lambda route: self._route(session, route))
        page = await context.new_page()
        page.on("crash", lambda _page: self._on_page_crash(session))
        page.on("download", lambda download: self._on_download(session, download))
        session.page = page
        return session

    def _on_download(self, session: LiveSession, download: Any) -> None:
        """Downloads are refused (context created with accept_downloads=False) unless the policy allows them;
        a refused one is reported like any other block."""
        if session.policy.allow_downloads:
            return
        session.blocks.append(
            PolicyError(
                "download_blocked",
                f"the page started a download ({download.suggested_filename}); downloads are off for policy "
                f"{session.policy.name!r}",
                url=download.url,
            ).as_dict()
        )

    async def _spares_fill(self, delay: float = 0.0) -> None:
        """Keep BROWSER_WARM_CONTEXTS unused contexts ready (they refuse every request until claimed)."""
        if delay:
            await asyncio.sleep(delay)
        if self._filling or self._browser is None:
            return
        self._filling = True
        try:
            while len(self._spares) < settings.BROWSER_WARM_CONTEXTS:
                self._spares.append(await self._context_new(_SPARE_POLICY))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed refill must not kill the loop; the next claim retries
            log.warning("could not pre-warm a browser context: %s", exc)
        finally:
            self._filling = False

    async def _route(self, session: LiveSession, route: Any) -> None:
        """Cheap URL-level check of every request (scheme, allow/deny, IP literals); the proxy does the rest."""
        from apps.browser.policy import check_address, check_host, parse_target

        url = route.request.url
        try:
            target = parse_target(url)
            check_host(session.policy, target)
            if target.address is not None:
                check_address(session.policy, target, target.address)
        except PolicyError as block:
            block.url = url
            session.blocks.append(block.as_dict())
            await route.abort("blockedbyclient")
            return
        await route.continue_()

    def _on_page_crash(self, session: LiveSession) -> None:
        session.ended = "the page crashed; open a new session"
        self._background(self.session_close(session.id, reason=session.ended))

    def get(self, session_id: str) -> LiveSession:
        session = self.sessions.get(session_id)
        if session is None or session.ended:
            raise SessionEnded(session_id, (session.ended if session else None) or "it is not open in this worker")
        return session

    async def session_close(self, session_id: str, *, reason: str = "closed") -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        session.ended = session.ended or reason
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.context.close(), 10)
        await session.proxy.close()
        return True

    async def shutdown(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:  # a pool refill must not launch a browser while we tear it down
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        spares, self._spares = self._spares, []
        for spare in spares:
            with contextlib.suppress(Exception):
                await spare.context.close()
            await spare.proxy.close()
        for session_id in list(self.sessions):
            await self.session_close(session_id, reason="worker shutting down")
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await self._playwright.stop()
            self._playwright = None

    def stop(self) -> None:
        """Close everything and stop the loop thread (worker shutdown, tests)."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self.shutdown, timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None


runtime = BrowserRuntime()
