"""The image, built without a Docker daemon: the Dockerfile's own instructions are replayed
into a clean folder (its COPY lines with .dockerignore's exclusions, its RUN lines with its ENV,
the build stage's /opt/funnel copied to the run stage), then a service is started from the
result as the image's user, on the real PostgreSQL and Kafka, and must turn ready.

What differs from `docker build`: the base image is this machine's Python of the same minor
version (not the pinned slim image), and pip may use its download cache."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from funnel_devstack.stack import Stack
from tests.deploy.rendering import REPO

pytestmark = pytest.mark.e2e

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def _ignored(relative: str) -> bool:
    patterns = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith(("#", "!")) and p.strip() != "*"
    ]
    parts = relative.split("/")
    for pattern in patterns:
        name = pattern.removeprefix("**/").rstrip("/")
        if any(fnmatch.fnmatch(part, name) for part in parts):
            return True
    return False


def _copy(source: Path, target: Path) -> None:
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return
    for path in source.rglob("*"):
        relative = path.relative_to(REPO).as_posix()
        if path.is_file() and not _ignored(relative):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def _env_pairs(arguments: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(arguments))


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Path, dict[str, str], int | None]]:
    """The replayed image: (its run stage's WORKDIR, its runtime environment, its user id)."""
    root = Path(tempfile.mkdtemp(prefix="funnel-image-"))
    root.chmod(0o755)
    opt = str(root / "opt")
    build, run = stages()
    # The base image's python: this interpreter's base, of the pinned image's minor version.
    [arg] = [a for w, a in instructions() if w == "ARG"]
    version = re.search(r"python:(\d+\.\d+)", arg)
    assert version, arg
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == version.group(1)
    bin_dir = root / "base-bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}
    workdir = root
    for word, arguments in build[1:]:
        arguments = arguments.replace("/opt/", f"{opt}/")
        if word == "ENV":
            env |= _env_pairs(arguments)
            env.pop("PIP_NO_CACHE_DIR", None)  # the cache only saves downloads
        elif word == "WORKDIR":
            workdir = root / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            source, target = shlex.split(arguments)[-2:]
            _copy(REPO / source, workdir / target)
        elif word == "RUN":
            result = subprocess.run(
                ["bash", "-ec", arguments], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, f"RUN {arguments}\n{result.stdout}\n{result.stderr}"
    run_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    user: int | None = None
    run_dir = root
    for word, arguments in run[1:]:
        arguments = arguments.replace("/opt/", f"{opt}/").replace("$PATH", "/usr/bin:/bin")
        if word == "ENV":
            run_env |= _env_pairs(arguments)
        elif word == "USER":
            user = int(arguments.split(":")[0])
        elif word == "WORKDIR":
            run_dir = root / arguments.lstrip("/")
            run_dir.mkdir(parents=True, exist_ok=True)
            run_dir.chmod(0o1777)
        elif word == "COPY":
            assert arguments.startswith("--from=build")  # the same folder: already in place
    # A read-only root filesystem, as in the pods: nothing under /opt is writable.
    for path in [Path(opt), *Path(opt).rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            path.chmod(mode & ~0o222 | 0o444 | (0o111 if mode & 0o111 else 0))
    yield run_dir, run_env, user
    for path in [Path(opt), *Path(opt).rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.lstat().st_mode | 0o200)
    shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_user(user: int | None) -> dict[str, object]:
    """Run as the image's USER when this machine allows it: root can switch, and the stand-in
    base interpreter is reachable by others (a pyenv under /root is not)."""
    interpreter = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    reachable = all(p.stat().st_mode & 0o001 for p in interpreter.parents)
    if user is None or os.getuid() != 0 or not reachable:
        return {}
    return {"user": user, "group": user}


def test_the_image_has_the_services_and_no_build_tools(
    built: tuple[Path, dict[str, str], int | None],
) -> None:
    workdir, env, _ = built
    python = shutil.which("python", path=env["PATH"])
    assert python is not None
    assert not (Path(python).parent / "pip").exists()
    for module in ("lead_intake", "stage_tracker", "notifier", "reporting"):
        result = subprocess.run(
            ["python", "-m", module, "--help"], env=env, capture_output=True, text=True, cwd=workdir
        )
        assert result.returncode == 0, result.stderr
        assert "migrate" in result.stdout


async def test_a_service_from_the_image_migrates_starts_turns_ready_and_stops_cleanly(
    built: tuple[Path, dict[str, str], int | None], infra: Stack, fresh_dsn: str
) -> None:
    workdir, image_env, user = built
    port = _free_port()
    env = image_env | {
        "FUNNEL_DATABASE_URL": fresh_dsn,
        "FUNNEL_KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "FUNNEL_HTTP_HOST": "127.0.0.1",
        "FUNNEL_HTTP_PORT": str(port),
        "FUNNEL_DRAIN_SECONDS": "3",
    }
    migrate = subprocess.run(
        ["python", "-m", "stage_tracker", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        cwd=workdir,
        **_as_user(user),  # type: ignore[call-overload]
    )
    assert migrate.returncode == 0, migrate.stderr
    server = subprocess.Popen(
        ["python", "-m", "stage_tracker", "serve"],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **_as_user(user),  # type: ignore[call-overload]
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    status = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
                except httpx.TransportError:
                    status = None
                if status == 200:
                    break
                await asyncio.sleep(0.5)
            assert status == 200, "the service from the image never turned ready"
            metrics = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert "funnel_http_requests_total" in metrics.text
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode()
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean stop.
    assert server.returncode in (0, -signal.SIGTERM), output[-2000:]
    assert "Application shutdown complete." in output
