"""PostgreSQL text cannot hold NUL (U+0000): input carrying one is refused as a 422, not a 500."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator

NUL = "\x00"


def nul_path(value: object, path: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first string (or key) holding a NUL character, or None."""
    if isinstance(value, str):
        return ".".join(path) or "body" if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            if NUL in name:
                return ".".join((*path, name.replace(NUL, "?"))) or "body"
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
