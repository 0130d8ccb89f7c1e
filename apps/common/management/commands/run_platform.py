"""`make run`: migrate, ensure the first admin, then supervise the gateway and the workers.

Children run in their own process groups (so a terminal's Ctrl-C reaches only us and we stop them in
order) and die with us if we are killed (PR_SET_PDEATHSIG). Their output is prefixed with their name.
When any child exits on its own, everything stops: a half-running platform is worse than a stopped one.
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
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError

from apps.accounts.services import first_contact_config
from mcpplat import env
from mcpplat.processes import Process, platform_processes

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
        children: dict[str, asyncio.subprocess.Process] = {}
        pumps = []
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for index, proc in enumerate(processes):
            child = await asyncio.create_subprocess_exec(
                *proc.argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(settings.BASE_DIR),
                env=environment,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            children[proc.name] = child
            prefix = f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{proc.name.ljust(width)} |\x1b[0m "
            pumps.append(asyncio.create_task(self._pump(child, prefix)))
        exited = [asyncio.create_task(self._named_wait(name, c)) for name, c in children.items()]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *exited], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if stopper not in done:
            name, returncode = next(t.result() for t in exited if t in done)
            self.stderr.write(f"mcpplat: {name} exited with {returncode}; stopping the platform")
            code = 1
        await self._terminate(children)
        await asyncio.gather(*pumps, return_exceptions=True)
        self.stdout.write("mcpplat: stopped")
        return code

    @staticmethod
    async def _named_wait(name: str, child: asyncio.subprocess.Process) -> tuple[str, int]:
        return name, await child.wait()

    async def _pump(self, child: asyncio.subprocess.Process, prefix: str) -> None:
        if child.stdout is None:
            return
        async for raw in child.stdout:
            sys.stdout.write(prefix + raw.decode(errors="replace"))
            sys.stdout.flush()

    async def _terminate(self, children: dict[str, asyncio.subprocess.Process], grace_s: float = 15) -> None:
        for child in children.values():
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(c.wait() for c in children.values())), grace_s)
        except TimeoutError:
            for name, child in children.items():
                if child.returncode is None:
                    self.stderr.write(f"mcpplat: {name} did not stop in {grace_s:.0f} s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
            await asyncio.gather(*(c.wait() for c in children.values()))
