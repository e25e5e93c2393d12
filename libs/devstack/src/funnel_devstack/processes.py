"""Managed child processes: start with a log file, check, stop; a JSON state file of pids."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil


class StartupError(RuntimeError):
    """A managed process failed to start or to become ready."""


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def start_process(
    cmd: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, stdout and stderr appended to ``log_file``.

    ``env`` is added on top of the current environment. ``user`` (root only) runs the
    command as that OS user, with its primary group and no supplementary groups.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=_primary_group(user) if user else None,
            extra_groups=[] if user else None,
        )


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def is_alive(pid: int, create_time: float | None = None) -> bool:
    """Return whether ``pid`` runs (zombies count as dead).

    With ``create_time`` (from :func:`process_create_time`), a reused pid counts as dead too.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def process_create_time(pid: int) -> float | None:
    """Return the start time of ``pid`` as psutil reports it, or None if it is gone."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; return whether it did."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if not is_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def terminate(
    pid: int, timeout: float = 10.0, *, sig: int = signal.SIGTERM, group: bool = False
) -> bool:
    """Send ``sig`` (SIGTERM) to ``pid``, SIGKILL it after ``timeout``.

    With ``group`` the signals go to the process group ``pid`` leads (children started with
    :func:`start_process` lead their own). Returns True if it exited before the SIGKILL.
    """
    send = os.killpg if group else os.kill
    try:
        send(pid, sig)
    except ProcessLookupError:
        return True
    if wait_for_exit(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        send(pid, signal.SIGKILL)
    wait_for_exit(pid, 5.0)
    return False


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and the process group it leads (it was started in a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def stop_popen(proc: subprocess.Popen[bytes], timeout: float, sig: int) -> bool:
    """Stop our child ``proc`` with ``sig``; after ``timeout`` SIGKILL its process group.

    Returns True if it exited before the SIGKILL.
    """
    if proc.poll() is not None:
        return True
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        proc.wait()
        return False


def kill_popen(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL our child ``proc`` and its process group at once, and reap it."""
    if proc.poll() is None:
        _kill_tree(proc)
    proc.wait()


State = dict[str, dict[str, Any]]


def read_state(path: Path) -> State:
    """Read the state file (name -> {"pid": ..., ...}); an absent file is an empty state."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def write_state(path: Path, state: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the state file atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def record_process(path: Path, name: str, pid: int, **info: Any) -> None:
    """Add or replace ``name`` in the state file, with ``pid``, its start time and ``info``."""
    state = read_state(path)
    state[name] = {"pid": pid, "create_time": process_create_time(pid), **info}
    write_state(path, state)


def forget_process(path: Path, name: str) -> None:
    """Remove ``name`` from the state file (no error if absent)."""
    state = read_state(path)
    if state.pop(name, None) is not None:
        write_state(path, state)
