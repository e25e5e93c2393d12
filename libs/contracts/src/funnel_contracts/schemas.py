"""JSON Schemas of the event models, and the backward-compatibility rule for published ones.

`python -m funnel_contracts.schemas` writes libs/contracts/schemas/<type>.json; it refuses to
overwrite a published schema with an incompatible one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from funnel_contracts.events import EVENT_MODELS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
_NOISE = {"title", "description", "default", "examples"}


def schema_of(event_type: str) -> dict[str, Any]:
    """The JSON Schema of an event type's data, as it is committed."""
    schema = EVENT_MODELS[event_type].model_json_schema(mode="serialization")
    schema["$id"] = f"urn:funnel:event:{event_type}"
    schema["title"] = event_type
    return schema


def render(schema: dict[str, Any]) -> str:
    """Stable text form, so that a diff shows only real changes."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root)
    return node


def _shape(node: Any, root: dict[str, Any]) -> Any:
    """A property's type shape with refs resolved and documentation keys dropped."""
    if isinstance(node, dict):
        node = _resolve(node, root)
        return {k: _shape(v, root) for k, v in node.items() if k not in _NOISE}
    if isinstance(node, list):
        return [_shape(v, root) for v in node]
    return node


def incompatibilities(
    old: dict[str, Any],
    new: dict[str, Any],
    path: str = "",
    *,
    old_root: Any = None,
    new_root: Any = None,
) -> list[str]:
    """Why data valid under `old` could break readers of `new` (or the reverse); [] if none.

    The rule for a published version: no property removed, none retyped, no new required one.
    """
    old_root = old_root or old
    new_root = new_root or new
    old = _resolve(old, old_root)
    new = _resolve(new, new_root)
    problems: list[str] = []
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    for name, old_prop in old_props.items():
        where = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"{where}: removed")
            continue
        old_node, new_node = _resolve(old_prop, old_root), _resolve(new_props[name], new_root)
        if "properties" in old_node and "properties" in new_node:
            problems += incompatibilities(
                old_node, new_node, where, old_root=old_root, new_root=new_root
            )
        elif _shape(old_node, old_root) != _shape(new_node, new_root):
            problems.append(f"{where}: type changed")
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        where = f"{path}.{name}" if path else name
        problems.append(f"{where}: newly required")
    return problems


def write_all(schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Write every event type's schema; return the problems that stopped a write."""
    schema_dir.mkdir(parents=True, exist_ok=True)
    refused: list[str] = []
    for event_type in sorted(EVENT_MODELS):
        target = schema_dir / f"{event_type}.json"
        new = schema_of(event_type)
        if target.exists():
            problems = incompatibilities(json.loads(target.read_text()), new)
            if problems:
                refused += [f"{event_type}: {p}" for p in problems]
                continue
        target.write_text(render(new))
    return refused


if __name__ == "__main__":
    refused = write_all()
    for line in refused:
        print(f"incompatible change refused: {line}", file=sys.stderr)
    sys.exit(1 if refused else 0)
