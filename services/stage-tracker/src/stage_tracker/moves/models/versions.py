"""A lead's version as an HTTP entity tag, and If-Match (pure): moves and owner changes that
cannot overwrite a colleague's (RFC 9110 sections 8.8.3 and 13.1.1)."""

from __future__ import annotations

from dataclasses import dataclass


def etag(version: int) -> str:
    """The strong entity tag of a lead's version: `"7"`."""
    return f'"{version}"'


@dataclass(frozen=True)
class IfMatch:
    """What an If-Match header accepts: any current lead (`*`), or these entity tags."""

    tags: frozenset[str]
    any: bool = False

    @classmethod
    def parse(cls, header: str | None) -> IfMatch | None:
        """None without the header (no precondition). Weak tags (W/"7") never match: If-Match
        compares strongly; a value that is no entity tag matches nothing."""
        if header is None:
            return None
        tags = frozenset(t.strip() for t in header.split(",") if t.strip())
        return cls(tags, any="*" in tags)

    def matches(self, version: int) -> bool:
        return self.any or etag(version) in self.tags


class VersionMismatch(Exception):
    """If-Match named another version of the lead than the current one: nothing was written."""

    def __init__(self, current_stage: str, current_version: int) -> None:
        super().__init__(f"the lead is at version {current_version} (in {current_stage})")
        self.current_stage = current_stage
        self.current_version = current_version
