"""Managed child processes and the JSON state file."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from funnel_devstack.processes import (
    forget_process,
    is_alive,
    read_state,
    record_process,
    start_process,
    tail,
    terminate,
    write_state,
)


def _wait_for_output(log: Path, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in tail(log) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_start_log_and_terminate(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    code = "import os, time; print(os.environ['GREETING'], flush=True); time.sleep(60)"
    proc = start_process([sys.executable, "-c", code], log_file=log, env={"GREETING": "hello"})
    try:
        _wait_for_output(log, "hello")
        assert tail(log) == "hello"
        assert is_alive(proc.pid)
        assert terminate(proc.pid, timeout=5)
        assert not is_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('x', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    proc = start_process([sys.executable, "-c", code], log_file=log)
    try:
        _wait_for_output(log, "x")
        assert not terminate(proc.pid, timeout=0.5, sig=signal.SIGTERM)
        assert not is_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_state_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "processes.json"
    assert read_state(path) == {}
    record_process(path, "mailbox", 1, port=2525)
    state = read_state(path)
    assert state["mailbox"]["pid"] == 1
    assert state["mailbox"]["port"] == 2525
    assert is_alive(1, state["mailbox"]["create_time"])
    assert not is_alive(1, 12345.0)
    write_state(path, {**state, "other": {"pid": 2}})
    forget_process(path, "mailbox")
    assert set(read_state(path)) == {"other"}
