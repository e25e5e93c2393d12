"""The command line every service shares: `migrate`, `serve`, plus its own commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from funnel_servicekit import live, migrations
from funnel_servicekit.db import connect
from funnel_servicekit.json_logging import setup_logging
from funnel_servicekit.settings import ServiceSettings
from funnel_servicekit.telemetry import setup_tracing

log = logging.getLogger(__name__)

Command = Callable[[Any, argparse.Namespace], Coroutine[Any, Any, None]]
Extra = dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]]
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


async def migrate(settings: ServiceSettings, migrations_dir: Path) -> list[str]:
    """Apply the kit's and the service's pending migrations to the service's schema, as its
    owner; then the service's own role (when another) gets data rights on that schema alone."""
    conn = await connect(settings.owner_database_url(), settings.db_schema)
    try:
        applied = await migrations.apply(conn, settings.db_schema, migrations_dir)
        runtime = migrations.role_of(settings.database_url)
        if runtime is not None and runtime != migrations.role_of(settings.owner_database_url()):
            await migrations.grant_runtime(conn, settings.db_schema, runtime)
        return applied
    finally:
        await conn.close()


def run_cli(
    argv: Sequence[str] | None,
    *,
    settings: ServiceSettings,
    migrations_dir: Path,
    app_factory: Callable[[], FastAPI],
    extra: Extra | None = None,
) -> None:
    """Parse argv and run one command."""
    parser = argparse.ArgumentParser(prog=settings.service_name)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("serve", help="run the HTTP API and the background loops")
    for name, (help_text, configure, _) in (extra or {}).items():
        configure(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    setup_logging(settings.service_name, settings.log_level)
    if args.command == "migrate":
        applied = asyncio.run(migrate(settings, migrations_dir))
        log.info("migrations applied", extra={"applied": applied})
    elif args.command == "serve":
        setup_tracing(settings.service_name)
        config = uvicorn.Config(
            app_factory(),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.drain_seconds),
            access_log=False,
        )
        server = _Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)  # as `uvicorn.run` does: the app did not start
    else:
        _, _, command = (extra or {})[args.command]
        asyncio.run(command(settings, args))


class _Server(uvicorn.Server):
    """uvicorn's server, which tells open event streams to end as soon as it is asked to stop
    (uvicorn waits for open connections before the app's shutdown runs)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        live.server_closing()
        super().handle_exit(sig, frame)


class Main(Protocol):
    def __call__(self, argv: Sequence[str] | None = None) -> None: ...


def service_main(
    settings_type: Callable[[], SettingsT],
    create_app: Callable[[SettingsT], FastAPI],
    migrations_dir: Path,
    extra: Extra | None = None,
) -> Main:
    """A service's `python -m <service>` entry point: settings from the environment, then
    `migrate`, `serve` or one of the service's own commands."""

    def main(argv: Sequence[str] | None = None) -> None:
        settings = settings_type()
        run_cli(
            argv if argv is not None else sys.argv[1:],
            settings=settings,
            migrations_dir=migrations_dir,
            app_factory=lambda: create_app(settings),
            extra=extra,
        )

    return main
