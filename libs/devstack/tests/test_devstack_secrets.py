"""The stack's secrets: generated once and kept, or taken from the environment and kept too."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnel_devstack.stack import _secret


def test_a_generated_secret_is_kept_and_private(tmp_path: Path) -> None:
    path = tmp_path / "admin-api-key"
    first = _secret(path)
    assert _secret(path) == first
    assert path.read_text().strip() == first
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_secret_from_the_environment_wins_and_is_written_for_later_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "admin-api-key"
    path.write_text("old-generated\n")
    monkeypatch.setenv("FUNNEL_ADMIN_API_KEY", "from-the-environment")
    assert _secret(path, "FUNNEL_ADMIN_API_KEY") == "from-the-environment"
    monkeypatch.delenv("FUNNEL_ADMIN_API_KEY")
    # A later command without the variable (funnel demo, funnel report rebuild) reads the same.
    assert _secret(path, "FUNNEL_ADMIN_API_KEY") == "from-the-environment"
