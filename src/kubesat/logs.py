"""The server log: one stderr handler whose formatter escapes control characters, so no logged value
(a request path, a header, a name from a body) can forge, split or hide a log line."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from types import TracebackType

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# C0, DEL, C1 and the Unicode line/paragraph separators: whatever a terminal or a line-splitting
# reader could take for a line break or a control sequence.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = {
    chr(n): _NAMED.get(chr(n)) or (f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}")
    for n in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}
# Every line of a traceback is indented, so a line break inside an exception's message
# cannot start a line that passes for a record: records, and only records, start at column 0.
_CONTINUATION = "  "


def _escape_char(m: re.Match[str]) -> str:
    return _ESCAPES[m.group()]


def escape(text: str) -> str:
    """`text` with every control character written as a visible escape (a newline as `\\n`)."""
    return _CONTROL.sub(_escape_char, text)


def escape_block(text: str) -> str:
    """A multi-line block (a traceback): one escaped, indented log line per line of `text`."""
    return "\n".join(_CONTINUATION + escape(line) for line in text.split("\n"))


class EscapingFormatter(logging.Formatter):
    """Escapes the record's line (message and args included); tracebacks stay multi-line but indented."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def formatException(self, ei: ExcInfo) -> str:
        return escape_block(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return escape_block(super().formatStack(stack_info))


def configure(level: str) -> None:
    """Send every logger's records (uvicorn's included, which propagate here) through one escaping handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)


class RateLimit:
    """A token bucket for one kind of log line that a client can cause at will (a failed authentication):
    `burst` lines at once, then `per_second` a second. A flood of bad requests then costs a counter
    update each, not a formatted line and a write each, and cannot fill the disk. Lines let through
    after a drop say how many were dropped (`allow()` returns that count).
    """

    __slots__ = ("per_second", "burst", "clock", "_tokens", "_last", "_dropped")

    def __init__(self, per_second: float = 10.0, burst: int = 50, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._dropped = 0

    def allow(self) -> int | None:
        """None: leave this line out (it is counted). Else log it: the count of lines left out before it."""
        now = self.clock()
        tokens = min(float(self.burst), self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            self._dropped += 1
            return None
        self._tokens = tokens - 1.0
        dropped, self._dropped = self._dropped, 0
        return dropped
