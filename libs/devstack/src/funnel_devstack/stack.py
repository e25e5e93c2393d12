"""The whole local stack: PostgreSQL, Kafka, the mailbox and the four services as processes.

`funnel up` and the test fixtures both drive this class, so tests run on exactly what a
developer runs: fresh data folders and free ports in tests, `.funnel/` and fixed ports locally.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from funnel_devstack.kafka import KafkaBroker, default_cache_dir, ensure_kafka_jars
from funnel_devstack.mailbox import DEFAULT_REFUSAL, accept_mail, read_messages, refuse_mail
from funnel_devstack.ports import free_port, wait_for_port
from funnel_devstack.postgres import PostgresServer
from funnel_devstack.processes import (
    StartupError,
    kill_popen,
    record_process,
    start_process,
    stop_popen,
    tail,
)

# name -> (python module, default port)
SERVICES: dict[str, tuple[str, int]] = {
    "lead-intake": ("lead_intake", 8001),
    "stage-tracker": ("stage_tracker", 8002),
    "notifier": ("notifier", 8003),
    "reporting": ("reporting", 8004),
}
DEMO_FORM = ("demo", "digital-sales", "Demo landing page")


@dataclass(frozen=True)
class StackPorts:
    kafka: int = 9092
    kafka_controller: int = 9093
    postgres: int = 55432
    smtp: int = 2525
    services: dict[str, int] = field(
        default_factory=lambda: {name: port for name, (_, port) in SERVICES.items()}
    )

    @classmethod
    def free(cls) -> StackPorts:
        """Ports nobody listens on now (tests, or a second stack beside a running one)."""
        return cls(
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            {name: free_port() for name in SERVICES},
        )


# Each service's own database role: rows of its own schema, nothing else (decision 0044).
# The schemas belong to the server's owner role, which only `migrate` and the admin commands
# (`seed-form`, `rebuild`) use, through FUNNEL_MIGRATION_DATABASE_URL.
SERVICE_ROLES: dict[str, str] = {
    "lead-intake": "funnel_intake",
    "stage-tracker": "funnel_tracker",
    "notifier": "funnel_notifier",
    "reporting": "funnel_reporting",
}

TEAM_SCOPES: dict[str, list[str]] = {
    "ana": ["leads:read", "leads:write", "pii:read", "reports:read"],
    "ben": ["leads:read", "leads:write", "reports:read"],
}


def _secret(path: Path, env_var: str | None = None) -> str:
    """A value from the environment, else the one generated on the first start, kept.

    A value from the environment is written to the file too, so that the commands run later
    against this stack (`funnel demo`, `funnel report rebuild`) use the key it runs with.
    """
    if env_var and os.environ.get(env_var):
        value = os.environ[env_var]
    elif path.is_file():
        return path.read_text().strip()
    else:
        value = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


class Stack:
    """One local Funnel stack rooted in a data folder."""

    def __init__(
        self,
        root: Path,
        ports: StackPorts | None = None,
        *,
        partitions: int = 6,
        fast_postgres: bool = False,
        cache_dir: Path | None = None,
        service_env: dict[str, str] | None = None,
        postgres_settings: dict[str, str] | None = None,
    ) -> None:
        self.root = root.absolute()
        self.ports = ports or StackPorts()
        self.partitions = partitions
        self.cache_dir = cache_dir or default_cache_dir()
        self.extra_env = dict(service_env or {})
        self.state_file = self.root / "state.json"
        self.logs = self.root / "logs"
        self.mail_dir = self.root / "mail"
        self.admin_api_key = _secret(self.root / "admin-api-key", "FUNNEL_ADMIN_API_KEY")
        # The notifier's own intake key, scope pii:decrypt only: it reads people's data keys.
        self.notifier_intake_key = _secret(self.root / "notifier-intake-api-key")
        self.intake_tracker_key = _secret(self.root / "intake-tracker-api-key")
        # lead-intake's blind-index key for finding people (decision 0024).
        self.search_index_key = _secret(self.root / "search-index-key")
        # The demo team: named keys every service knows, so that moves, owners, calls and
        # tasks name who did them. ana may read contact details; ben may not.
        self.team_keys = {name: _secret(self.root / f"team-{name}-api-key") for name in TEAM_SCOPES}
        self.db_passwords = {
            service: _secret(self.root / f"db-{role}-password")
            for service, role in SERVICE_ROLES.items()
        }
        self.postgres = PostgresServer(
            self.root / "postgres",
            self.ports.postgres,
            password=_secret(self.root / "postgres-password"),
            fast=fast_postgres,
            log_file=self.logs / "postgres.log",
            settings=postgres_settings,
        )
        self.kafka: KafkaBroker | None = None
        self.mailbox: subprocess.Popen[bytes] | None = None
        self.services: dict[str, subprocess.Popen[bytes]] = {}

    # -- infrastructure -------------------------------------------------------------------

    async def start_infrastructure(self) -> None:
        """PostgreSQL, Kafka and the mailbox, each waited for until truly ready."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        libs = await asyncio.to_thread(ensure_kafka_jars, self.cache_dir)
        self.kafka = KafkaBroker(
            self.root / "kafka",
            self.ports.kafka,
            self.ports.kafka_controller,
            libs,
            num_partitions=self.partitions,
        )
        self.postgres.start()
        self._record("postgres", self.postgres.pid, signal="SIGINT")
        self.kafka.start()
        self._record("kafka", self.kafka.pid)
        self.start_mailbox()
        await asyncio.gather(self.postgres.wait_ready(), self.kafka.wait_ready())
        await self.ensure_service_roles()
        await asyncio.to_thread(wait_for_port, "127.0.0.1", self.ports.smtp, 20)

    async def ensure_service_roles(self) -> None:
        """A login role per service (its password kept beside the stack), allowed nothing
        until its service's `migrate` grants it the rows of its own schema."""
        from funnel_servicekit.roles import ensure_roles

        await ensure_roles(
            self.postgres.dsn,
            {role: self.db_passwords[service] for service, role in SERVICE_ROLES.items()},
        )

    def service_dsn(self, service: str) -> str:
        """The DSN a service runs with: its own role."""
        role, password = SERVICE_ROLES[service], quote(self.db_passwords[service], safe="")
        return (
            f"postgresql://{role}:{password}@127.0.0.1:{self.ports.postgres}"
            f"/{quote(self.postgres.database, safe='')}"
        )

    def start_mailbox(self) -> None:
        self.mailbox = start_process(
            [
                sys.executable,
                "-m",
                "funnel_devstack.mailbox",
                "--port",
                str(self.ports.smtp),
                "--dir",
                str(self.mail_dir),
            ],
            log_file=self.logs / "mailbox.log",
        )
        self._record("mailbox", self.mailbox.pid)

    # -- outages (fault tests): each part stopped and started again on its own data ------

    def stop_kafka(self) -> None:
        """Shut the broker down cleanly; its data stays for `start_kafka`."""
        if self.kafka is not None:
            self.kafka.stop()

    async def start_kafka(self) -> None:
        """Start the broker again on the same data and port, and wait until it answers."""
        assert self.kafka is not None, "start_infrastructure first"
        self.kafka.start()
        self._record("kafka", self.kafka.pid)
        await self.kafka.wait_ready()

    def stop_postgres(self) -> None:
        """Fast shutdown of PostgreSQL (every connection is cut); its data stays."""
        self.postgres.stop()

    async def start_postgres(self) -> None:
        """Start PostgreSQL again on the same data and port, and wait until it takes logins."""
        self.postgres.start()
        self._record("postgres", self.postgres.pid, signal="SIGINT")
        await self.postgres.wait_ready()

    def refuse_mail(self, reply: str = DEFAULT_REFUSAL) -> None:
        """The mailbox answers every recipient with `reply` (4xx or 5xx) until `accept_mail`."""
        refuse_mail(self.mail_dir, reply)

    def accept_mail(self) -> None:
        accept_mail(self.mail_dir)

    async def prepare(self) -> None:
        """Migrations of every service, the topics, and the demo form."""
        for name in SERVICES:
            await self._run_command(name, "migrate")
        from funnel_servicekit.kafka import ensure_topics

        await ensure_topics(self.kafka_bootstrap, self.partitions)
        form_id, funnel_id, title = DEMO_FORM
        await self._run_command(
            "lead-intake",
            "seed-form",
            "--form-id",
            form_id,
            "--funnel-id",
            funnel_id,
            "--name",
            title,
        )

    # -- services -------------------------------------------------------------------------

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.services[service]}"

    def _own_env(self, service: str) -> dict[str, str]:
        """What one service needs of another: the notifier reads data keys from lead-intake,
        lead-intake reads funnels from stage-tracker (to refuse a form naming an unknown one),
        reporting's workspace pages reach the other three; and every service knows the team."""
        from funnel_servicekit.auth import hash_key

        keys = [
            {"name": name, "sha256": hash_key(key), "scopes": TEAM_SCOPES[name]}
            for name, key in self.team_keys.items()
        ]
        env: dict[str, str] = {}
        if service == "lead-intake":
            keys.append(
                {
                    "name": "notifier",
                    "sha256": hash_key(self.notifier_intake_key),
                    "scopes": ["pii:decrypt"],
                }
            )
            env = {
                "FUNNEL_TRACKER_URL": self.url("stage-tracker"),
                "FUNNEL_TRACKER_API_KEY": self.intake_tracker_key,
                "FUNNEL_SEARCH_INDEX_KEY": self.search_index_key,
            }
        if service == "stage-tracker":
            keys.append(
                {
                    "name": "lead-intake",
                    "sha256": hash_key(self.intake_tracker_key),
                    "scopes": ["leads:read"],
                }
            )
        if service == "notifier":
            env = {
                "FUNNEL_INTAKE_URL": self.url("lead-intake"),
                "FUNNEL_INTAKE_API_KEY": self.notifier_intake_key,
            }
        if service == "reporting":
            env = {
                "FUNNEL_TRACKER_URL": self.url("stage-tracker"),
                "FUNNEL_INTAKE_URL": self.url("lead-intake"),
                "FUNNEL_NOTIFIER_URL": self.url("notifier"),
            }
        return {"FUNNEL_API_KEYS": json.dumps(keys), **env}

    def service_env(self, service: str) -> dict[str, str]:
        return {
            "FUNNEL_DATABASE_URL": self.service_dsn(service),
            "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "FUNNEL_HTTP_HOST": "127.0.0.1",
            "FUNNEL_HTTP_PORT": str(self.ports.services[service]),
            # The services check the admin key by its hash: they never hold the key itself.
            "FUNNEL_ADMIN_API_KEY_SHA256": hashlib.sha256(self.admin_api_key.encode()).hexdigest(),
            "FUNNEL_SMTP_HOST": "127.0.0.1",
            "FUNNEL_SMTP_PORT": str(self.ports.smtp),
            "FUNNEL_ENVIRONMENT": "development",
            **self._own_env(service),
            **self.extra_env,
        }

    def command_env(self, service: str) -> dict[str, str]:
        """What a service's commands run with (`migrate`, `seed-form`, `rebuild`): its settings
        and the schema owner's DSN, which `serve` never gets."""
        return {**self.service_env(service), "FUNNEL_MIGRATION_DATABASE_URL": self.postgres.dsn}

    async def _run_command(self, service: str, *args: str) -> None:
        module, _ = SERVICES[service]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            env={**os.environ, **self.command_env(service)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        (self.logs / f"{service}.log").parent.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{service}.log").open("ab") as log:
            log.write(out)
        if proc.returncode != 0:
            raise StartupError(f"{service} {' '.join(args)} failed:\n{out.decode()[-3000:]}")

    def start_service(self, service: str) -> None:
        module, _ = SERVICES[service]
        proc = start_process(
            [sys.executable, "-m", module, "serve"],
            log_file=self.logs / f"{service}.log",
            env=self.service_env(service),
        )
        self.services[service] = proc
        self._record(service, proc.pid)

    async def wait_service_ready(self, service: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                proc = self.services.get(service)
                if proc is not None and proc.poll() is not None:
                    raise StartupError(
                        f"{service} exited with {proc.returncode}:\n"
                        f"{tail(self.logs / f'{service}.log')}"
                    )
                try:
                    response = await client.get(f"{self.url(service)}/readyz")
                    if response.status_code == 200:
                        return
                    last = response.text
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.2)
        raise StartupError(
            f"{service} not ready after {timeout:.0f}s: {last}\n"
            f"{tail(self.logs / f'{service}.log')}"
        )

    async def start_services(self) -> None:
        for service in SERVICES:
            self.start_service(service)
        await asyncio.gather(*(self.wait_service_ready(s) for s in SERVICES))

    def stop_service(self, service: str, timeout: float = 30) -> bool:
        """SIGTERM a service; True when it drained and exited before `timeout` seconds."""
        proc = self.services.pop(service, None)
        if proc is None:
            return True
        return stop_popen(proc, timeout, signal.SIGTERM)

    def kill_service(self, service: str) -> None:
        """SIGKILL a service (fault tests): no drain, no goodbye."""
        proc = self.services.pop(service, None)
        if proc is not None:
            kill_popen(proc)

    # -- whole stack ----------------------------------------------------------------------

    async def up(self) -> None:
        await self.start_infrastructure()
        await self.prepare()
        await self.start_services()

    def down(self) -> None:
        """Stop everything this object started, services first."""
        for service in list(self.services):
            self.stop_service(service)
        if self.mailbox is not None:
            stop_popen(self.mailbox, 10, signal.SIGTERM)
            self.mailbox = None
        if self.kafka is not None:
            self.kafka.stop()
        self.postgres.stop()
        self.state_file.unlink(missing_ok=True)

    def mail(self) -> list[object]:
        return list(read_messages(self.mail_dir))

    def _record(self, name: str, pid: int | None, **info: str) -> None:
        if pid is not None:
            record_process(self.state_file, name, pid, **info)
