"""Event ids: random (version 4) UUIDs as text, as `str(uuid.uuid4())` writes them, cheaper.

`uuid4()` reads 16 bytes from the kernel and builds a `UUID` object (its `__init__` checks
its arguments in Python) only to be turned into text at once: about a third of the cost of
making an outgoing record on a consumer's hot path. Here the random bytes are read from the
kernel (`os.urandom`, the source `uuid4` uses) 4 KiB at a time and written as text directly,
with the same version and variant bits. A forked child drops what its parent had read, so two
processes never hand out the same ids.
"""

from __future__ import annotations

import os

_POOL_BYTES = 4096  # 256 ids per read
# Clear the version nibble and the variant's two bits, then set version 4 and variant RFC 4122
# (what uuid.UUID(bytes=..., version=4) does).
_CLEAR = ~((0xF << 76) | (0xC000 << 48))
_SET = (0x4 << 76) | (0x8000 << 48)


class _Pool:
    __slots__ = ("at", "raw")

    def __init__(self) -> None:
        self.raw = b""
        self.at = 0

    def reset(self) -> None:
        self.raw = b""
        self.at = 0


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.reset)


def new_event_id() -> str:
    """A new random UUID's text (version 4, lower-case hex with hyphens), as str(uuid4())."""
    pool = _pool
    at = pool.at
    if at >= len(pool.raw):
        pool.raw = os.urandom(_POOL_BYTES)
        at = 0
    pool.at = at + 16
    h = "%032x" % (int.from_bytes(pool.raw[at : at + 16]) & _CLEAR | _SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
