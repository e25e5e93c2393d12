"""The playbooks and templates shipped with the notifier (DOMAIN.md's touches)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from notifier.playbooks.models import Playbook

CATALOG_DIR = Path(__file__).parent


@cache
def default_playbooks() -> dict[str, Playbook]:
    """The shipped playbooks by name (validated like any saved one)."""
    raw = yaml.safe_load((CATALOG_DIR / "playbooks.yaml").read_text(encoding="utf-8"))
    books = [Playbook.model_validate(item) for item in raw]
    return {b.name: b for b in books}
