"""A throwaway or persistent PostgreSQL server run from the distribution's binaries."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

from funnel_devstack.processes import StartupError, kill_popen, start_process, stop_popen, tail

_HOST = "127.0.0.1"
_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_OS_USER = "postgres"  # initdb and postgres refuse root; as root we run them as this user


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def find_pg_bin_dir() -> Path | None:
    """Return a folder holding ``initdb`` and ``postgres``, or None.

    Looks at ``$FUNNEL_PG_BIN``, then the highest version under Debian's
    ``/usr/lib/postgresql/<version>/bin``, then ``PATH``.
    """
    candidates: list[Path] = []
    if env := os.environ.get("FUNNEL_PG_BIN"):
        candidates.append(Path(env))
    if _DEBIAN_PG_ROOT.is_dir():
        versions = [p for p in _DEBIAN_PG_ROOT.iterdir() if _version_key(p.name)]
        candidates += [
            p / "bin" for p in sorted(versions, key=lambda p: _version_key(p.name))[::-1]
        ]
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def ensure_postgres_installed() -> Path:
    """Return the PostgreSQL bin folder, installing the Debian package first if root may."""
    found = find_pg_bin_dir()
    if found is not None:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "postgresql"], check=True, env=env)
        found = find_pg_bin_dir()
        if found is not None:
            return found
    raise StartupError(
        "PostgreSQL server binaries (initdb, postgres) not found. Install them, e.g. "
        "'apt-get install postgresql' on Debian/Ubuntu, or set FUNNEL_PG_BIN to their folder."
    )


def _make_traversable(path: Path, uid: int) -> None:
    """Give user ``uid`` search (x) permission on every ancestor of ``path`` it lacks it on."""
    for folder in path.parents:
        info = folder.stat()
        if info.st_uid == uid or info.st_mode & stat.S_IXOTH:
            continue
        os.chmod(folder, stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """One ``postgres`` server process on 127.0.0.1 with its own data folder."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        user: str = "funnel",
        password: str = "funnel",  # noqa: S107 - a local dev/test server
        database: str = "funnel",
        *,
        fast: bool = False,
        log_file: Path | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.fast = fast
        self.log_file = (log_file or self.data_dir.parent / f"{self.data_dir.name}.log").absolute()
        self._bin_dir = bin_dir
        # More server settings (`-c name=value`), e.g. a bench's shared_preload_libraries.
        self.extra_settings = dict(settings or {})
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://user:password@127.0.0.1:port/database``."""
        user, password = quote(self.user, safe=""), quote(self.password, safe="")
        return f"postgresql://{user}:{password}@{_HOST}:{self.port}/{quote(self.database, safe='')}"

    def dsn_of(self, database: str) -> str:
        """The DSN of another database on this server."""
        return self.dsn.rsplit("/", 1)[0] + "/" + quote(database, safe="")

    async def create_database(self, prefix: str) -> str:
        """A new, empty database named `prefix` plus a random suffix; its DSN."""
        import asyncpg

        name = f"{prefix}_{uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
        finally:
            await conn.close()
        return self.dsn_of(name)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while started, else None."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def postmaster_pid(self) -> int | None:
        """The pid recorded in ``postmaster.pid`` (any server on this data dir), or None."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def _run_as(self) -> str | None:
        return _OS_USER if os.geteuid() == 0 else None

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_file.touch(exist_ok=True)
        if (owner := self._run_as()) is not None:
            entry = pwd.getpwnam(owner)
            _make_traversable(self.data_dir, entry.pw_uid)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        os.chmod(self.data_dir, 0o700)

    def _initdb(self, bin_dir: Path) -> None:
        fd, pwfile = tempfile.mkstemp(prefix=".pwfile-", dir=self.data_dir.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.password + "\n")
            if (owner := self._run_as()) is not None:
                entry = pwd.getpwnam(owner)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            cmd = [
                str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale",
                "--no-instructions", *(["--no-sync"] if self.fast else []),
            ]  # fmt: skip
            proc = start_process(
                cmd, log_file=self.log_file, cwd=self.data_dir, user=self._run_as()
            )
            if proc.wait() != 0:
                raise StartupError(
                    f"initdb failed; tail of {self.log_file}:\n{tail(self.log_file)}"
                )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pwfile)

    def start(self) -> None:
        """Run initdb on first use, then launch ``postgres`` in the background."""
        if self.is_running():
            return
        bin_dir = self._bin_dir or ensure_postgres_installed()
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb(bin_dir)
        settings = {
            "listen_addresses": _HOST,
            "unix_socket_directories": "",
            "max_connections": "200",
        }
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= self.extra_settings
        cmd = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        self._proc = start_process(
            cmd, log_file=self.log_file, cwd=self.data_dir, user=self._run_as()
        )

    async def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the server accepts logins; create the application database if missing."""
        import asyncpg

        deadline = time.monotonic() + timeout
        last_error = "not tried"
        while time.monotonic() < deadline:
            self._raise_if_exited()
            try:
                conn = await asyncpg.connect(
                    host=_HOST, port=self.port, user=self.user, password=self.password,
                    database="postgres", timeout=5,
                )  # fmt: skip
                try:
                    exists = await conn.fetchval(
                        "SELECT 1 FROM pg_database WHERE datname = $1", self.database
                    )
                    if not exists:
                        await conn.execute(f"CREATE DATABASE {_quote_ident(self.database)}")
                finally:
                    await conn.close()
                conn = await asyncpg.connect(self.dsn, timeout=5)
                try:
                    await conn.fetchval("SELECT 1")
                finally:
                    await conn.close()
                return
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                last_error = repr(exc)
            await asyncio.sleep(0.2)
        raise StartupError(
            f"PostgreSQL on port {self.port} not ready after {timeout:.0f}s ({last_error});"
            f" tail of {self.log_file}:\n{tail(self.log_file)}"
        )

    def _raise_if_exited(self) -> None:
        if self._proc is None:
            raise StartupError("PostgreSQL was not started")
        code = self._proc.poll()
        if code is not None:
            raise StartupError(
                f"PostgreSQL exited with code {code}; tail of {self.log_file}:\n"
                f"{tail(self.log_file)}"
            )

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT), SIGKILL after ``timeout`` seconds."""
        if self._proc is not None:
            stop_popen(self._proc, timeout, signal.SIGINT)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once (for fault tests)."""
        if self._proc is not None:
            kill_popen(self._proc)
            self._proc = None
