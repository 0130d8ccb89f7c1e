"""`make run`: migrate, ensure the first admin, then supervise the gateway and the workers.

Children run in their own process groups (so a terminal's Ctrl-C reaches only us and we stop them in
order) and die with us if we are killed (PR_SET_PDEATHSIG). Their output is prefixed with their name.
A child that exits on its own is restarted with back-off (processes.RestartPolicy); the embedded PostgreSQL and
Redis this process owns are restarted when they die. Only when restarts keep failing does everything stop, naming
what failed (docs/reliability.md, "Supervision").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError

from apps.accounts.services import first_contact_config
from mcpplat import embedded, env
from mcpplat.processes import Process, RestartPolicy, platform_processes

_COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93"]
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _check_port_free(bind: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"port {port} on {bind} is in use: stop what listens there (`ss -ltnp 'sport = :{port}'`) "
                    f"or choose another with PORT={port + 1} make run"
                ) from None
            raise CommandError(f"cannot listen on {bind}:{port}: {exc.strerror}; check BIND and PORT") from None


class Command(BaseCommand):
    help = "Run the whole platform (gateway + workers) in the foreground; Ctrl-C stops everything."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        bind, port = env.get_str("BIND"), env.get_int("PORT")
        _check_port_free(bind, port)
        if not options["no_migrate"]:
            try:
                call_command("migrate", interactive=False, verbosity=0)
            except OperationalError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CommandError(
                    f"cannot reach PostgreSQL ({first}): check DATABASE_URL, or unset it for the embedded one"
                ) from None
        call_command("ensure_admin")
        public = settings.PUBLIC_BASE_URL
        self.stdout.write(f"mcpplat: MCP endpoint {public}/mcp · admin {public}/admin/ · readiness {public}/readyz")
        self.stdout.write("mcpplat: client configuration (mcp.json) with a fresh admin token, valid 30 days:")
        self.stdout.write(json.dumps(first_contact_config(public), indent=2))
        code = asyncio.run(self._supervise(platform_processes(bind=bind, port=port)))
        if code:
            sys.exit(code)

    async def _supervise(self, processes: list[Process]) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        width = max(len(p.name) for p in processes)
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._gave_up: str | None = None
        self._reapers: dict[int, asyncio.Task[None]] = {}
        self._pumps: set[asyncio.Task[None]] = set()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        keepers = [
            asyncio.create_task(
                self._keep(
                    proc,
                    f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{proc.name.ljust(width)} |\x1b[0m ",
                    environment,
                    stop,
                )
            )
            for index, proc in enumerate(processes)
        ]
        watcher = asyncio.create_task(self._watch_embedded(stop))
        await stop.wait()
        watcher.cancel()
        await self._terminate(self._children)
        await asyncio.gather(*keepers, watcher, return_exceptions=True)
        for pgid, reaper in self._reapers.items():
            reaper.cancel()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._pumps, return_exceptions=True), 5)
        self.stdout.write("mcpplat: stopped")
        return 1 if self._gave_up else 0

    def _give_up(self, what: str, stop: asyncio.Event) -> None:
        if self._gave_up is None:
            self._gave_up = what
            self.stderr.write(f"mcpplat: {what}; stopping the platform")
        stop.set()

    async def _keep(self, proc: Process, prefix: str, environment: dict[str, str], stop: asyncio.Event) -> None:
        """Run one child; restart it with back-off when it exits on its own (processes.RestartPolicy)."""
        policy = RestartPolicy()
        while not stop.is_set():
            child = await asyncio.create_subprocess_exec(
                *proc.argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(settings.BASE_DIR),
                env=environment,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            self._children[proc.name] = child
            if stop.is_set():  # the stop came while it was starting: _terminate did not see it
                os.kill(child.pid, signal.SIGTERM)
            started = time.monotonic()
            pump = asyncio.create_task(self._pump(child, prefix))
            returncode = await child.wait()
            if stop.is_set():
                self._pumps.add(pump)
                return
            # The leader is gone; what it started in its group (a dramatiq worker process whose main was killed,
            # say) must not outlive it beside the replacement: it may drain, then it is killed.
            self._reapers[child.pid] = asyncio.create_task(self._reap_group(child.pid))
            self._pumps.add(pump)  # it ends when the last process holding the pipe does
            uptime = time.monotonic() - started
            delay = policy.after_exit(now=time.monotonic(), uptime_s=uptime)
            if delay is None:
                self._give_up(
                    f"{proc.name} exited {policy.recent_failures} times within {policy.window_s:.0f} s "
                    f"(last exit code {returncode})",
                    stop,
                )
                return
            self.stderr.write(
                f"mcpplat: {proc.name} exited with {returncode} after {uptime:.1f} s; restarting it in {delay:.1f} s"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _reap_group(self, pgid: int, grace_s: float = 12) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                os.killpg(pgid, 0)
                await asyncio.sleep(0.2)
            os.killpg(pgid, signal.SIGKILL)

    async def _watch_embedded(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """Restart the embedded PostgreSQL / Redis this process owns when they die (checked every `every_s`)."""
        postgres, redis = settings.USE_EMBEDDED_DB, settings.USE_EMBEDDED_REDIS
        if not (postgres or redis) or not embedded.owns():
            return
        names = {"postgres": "embedded PostgreSQL", "redis": "embedded Redis"}
        policy = RestartPolicy()
        started = time.monotonic()
        pause = every_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            if stop.is_set():
                return
            try:
                revived = await asyncio.to_thread(embedded.revive, settings.VAR_PATHS, postgres=postgres, redis=redis)
            except embedded.EmbeddedError as exc:
                delay = policy.after_exit(now=time.monotonic(), uptime_s=0)
                if delay is None:
                    self._give_up(f"could not restart an embedded server {policy.recent_failures} times ({exc})", stop)
                    return
                self.stderr.write(f"mcpplat: {exc}; trying again in {delay:.1f} s")
                pause = delay
                continue
            pause = every_s
            if revived:
                now = time.monotonic()
                policy.after_exit(now=now, uptime_s=now - started)
                started = now
                self.stderr.write(f"mcpplat: {' and '.join(names[n] for n in revived)} had stopped; restarted")

    async def _pump(self, child: asyncio.subprocess.Process, prefix: str) -> None:
        if child.stdout is None:
            return
        async for raw in child.stdout:
            sys.stdout.write(prefix + raw.decode(errors="replace"))
            sys.stdout.flush()

    async def _terminate(self, children: dict[str, asyncio.subprocess.Process], grace_s: float = 15) -> None:
        # SIGTERM to each child alone, not its group: a dramatiq main forwards it to its worker processes, and a
        # second SIGTERM makes a dramatiq worker process exit at once ("Killing worker process…") instead of draining.
        for child in children.values():
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(c.wait() for c in children.values())), grace_s)
        except TimeoutError:
            for name, child in children.items():
                if child.returncode is None:
                    self.stderr.write(f"mcpplat: {name} did not stop in {grace_s:.0f} s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
            await asyncio.gather(*(c.wait() for c in children.values()))
        for child in children.values():  # anything left in a group (its leader exited first) goes with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
