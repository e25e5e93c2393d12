"""Text PostgreSQL cannot store is refused as a 422, not a 500: NUL (U+0000), and unpaired
surrogates (U+D800..U+DFFF), which JSON escapes like "\\ud800" and surrogate-encoded bytes
decode to but UTF-8 cannot encode."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, model_validator

NUL = "\x00"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def nul_path(value: object, path: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first string (or key) holding a NUL character (or an unpaired
    surrogate), or None."""
    if isinstance(value, str):
        return ".".join(path) or "body" if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            if _UNSTORABLE.search(name):
                return ".".join((*path, _UNSTORABLE.sub("?", name))) or "body"
            found = nul_path(item, (*path, name))
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = nul_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None


class StorableText(BaseModel):
    """A request model whose strings can all be stored: NUL characters are refused."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        found = nul_path(data)
        if found is not None:
            raise ValueError(f"{found}: must not contain NUL (\\u0000) characters")
        return data
