"""Random (version 4) UUIDs for jti claims, audit IDs and object uids, from a buffered OS CSPRNG.

`uuid.uuid4()` makes one getrandom() system call per UUID, which costs several microseconds
under a hypervisor; these come from the same source (os.urandom), read 4 KiB at a time.
"""

from __future__ import annotations

import os
import threading

_POOL_BYTES = 4096
_lock = threading.Lock()
_pool = b""
_pos = 0


def _take16() -> bytes:
    global _pool, _pos
    with _lock:
        if _pos + 16 > len(_pool):
            _pool, _pos = os.urandom(_POOL_BYTES), 0
        chunk = _pool[_pos:_pos + 16]
        _pos += 16
    return chunk


def uuid4() -> str:
    """A random UUID in its canonical text form, as str(uuid.uuid4()) gives it."""
    b = bytearray(_take16())
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _after_fork() -> None:
    # A forked child must not hand out the parent's remaining bytes again.
    global _pool, _pos
    _pool, _pos = b"", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
