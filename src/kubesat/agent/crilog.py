"""Reading a container's log file in the CRI format, as the kubelet serves `containerLogs`.

A line is `<RFC 3339 nano time> <stdout|stderr> <F|P>[:tags] <content>`: `P` marks a part of a longer line
(the content has no newline), `F` its last part. Docker's JSON lines (`{"log","stream","time"}`) are read too.
The options are the kubelet's: the last `tailLines` lines, none older than `since`, each prefixed with its
time when `timestamps`, at most `limitBytes` bytes in all, and with `follow` the file is read as it grows
(and reopened when the runtime rotates it) until the container stops.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

# The kubelet polls a followed file this often when nothing woke it (it also waits on fsnotify).
FOLLOW_POLL = 0.25
# A single log line longer than this is cut (runtimes split lines at 16 KiB; a file is not trusted blindly).
MAX_LINE = 1 << 20
_READ = 64 * 1024


class LogFormatError(Exception):
    """A line that is neither CRI nor Docker JSON (the kubelet's messages)."""


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None  # None: the whole file
    since_ns: int | None = None  # no line older than this (Unix time in nanoseconds)
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass(frozen=True)
class LogLine:
    time_ns: int
    stream: str
    partial: bool
    content: bytes


def parse_time_ns(text: str) -> int:
    """An RFC 3339 time with up to nine fraction digits as Unix nanoseconds (ValueError when it is not one)."""
    if len(text) < 20 or text[10] not in "Tt":
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}")
    head, rest = text[:19], text[19:]
    frac = ""
    if rest.startswith("."):
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, rest = rest[1:i], rest[i:]
        if not frac or len(frac) > 9:
            raise ValueError(f"not an RFC 3339 time: {text[:40]!r}")
    zone = "+00:00" if rest in ("Z", "z") else rest
    seconds = datetime.fromisoformat(head + zone).timestamp()
    return int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0") or "0")


def format_time_ns(ns: int) -> str:
    """Go's `2006-01-02T15:04:05.000000000Z07:00` in UTC: nine fraction digits, `Z`."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def parse_line(line: bytes) -> LogLine:
    """One line of a log file (without its newline)."""
    if line.startswith(b"{"):
        return _parse_docker(line)
    parts = line.split(b" ", 3)
    if len(parts) < 2:
        raise LogFormatError("timestamp is not found")
    try:
        ns = parse_time_ns(parts[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise LogFormatError("timestamp is not found") from None
    stream = parts[1]
    if stream not in (b"stdout", b"stderr"):
        raise LogFormatError("stream type is not found")
    if len(parts) < 3:
        raise LogFormatError("log tag is not found")
    tag = parts[2].split(b":", 1)[0]
    if tag not in (b"F", b"P"):
        raise LogFormatError("log tag is not found")
    content = parts[3] if len(parts) > 3 else b""
    return LogLine(ns, stream.decode(), tag == b"P", content)


def _parse_docker(line: bytes) -> LogLine:
    try:
        doc = orjson.loads(line)
        log, stream, when = doc["log"], doc["stream"], doc["time"]
        ns = parse_time_ns(when)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise LogFormatError("unsupported log format") from None
    if not isinstance(log, str) or stream not in ("stdout", "stderr"):
        raise LogFormatError("unsupported log format")
    data = log.encode()
    partial = not data.endswith(b"\n")
    return LogLine(ns, stream, partial, data[:-1] if not partial else data)


def render(line: LogLine, timestamps: bool) -> bytes:
    """What the kubelet writes for a line: its content, a newline after the last part, the time first when asked."""
    out = line.content if line.partial else line.content + b"\n"
    if timestamps:
        out = format_time_ns(line.time_ns).encode() + b" " + out
    return out


def tail_offset(f: os.PathLike[str] | str, lines: int) -> int:
    """The offset where the last `lines` lines of the file start (the kubelet's FindTailLineStartIndex)."""
    with open(f, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if lines <= 0:
            return size
        pos, found = size, 0
        # A final newline ends the last line; it does not start another one.
        skip_last = True
        while pos > 0:
            step = min(_READ, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            i = len(block)
            while True:
                i = block.rfind(b"\n", 0, i)
                if i < 0:
                    break
                if skip_last and pos + i == size - 1:
                    skip_last = False
                    continue
                found += 1
                if found == lines:
                    return pos + i + 1
        return 0


class _Budget:
    """The limitBytes counter: how much may still be written."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[:self.left]
        self.left -= len(data)
        return data

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0


async def read_log(path: Path, opts: LogOptions, write: Callable[[bytes], Awaitable[None]],
                   running: Callable[[], bool] = lambda: False, poll: float = FOLLOW_POLL) -> None:
    """Write the file's lines as the options say; with `follow`, keep reading until `running()` turns false."""
    budget = _Budget(opts.limit_bytes)
    offset = tail_offset(path, opts.tail_lines) if opts.tail_lines is not None else 0
    fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - reopened on rotation, closed in finally
    try:
        fh.seek(offset)
        pending = b""
        while not budget.spent:
            chunk = fh.read(_READ)
            if chunk:
                pending = await _emit(pending + chunk, opts, write, budget)
                continue
            if not opts.follow:
                break
            if not running():
                # One more read: what the container wrote before it stopped.
                pending = await _emit(pending + fh.read(), opts, write, budget)
                break
            await asyncio.sleep(poll)
            fh = _reopened(path, fh)
        if pending and not budget.spent and not opts.follow:
            await _emit(pending + b"\n", opts, write, budget)  # a last line the runtime did not end
    finally:
        fh.close()


def _reopened(path: Path, fh: BinaryIO) -> BinaryIO:
    """The file anew when the runtime rotated it (another inode at the path) after we read all of the old one."""
    try:
        st = os.stat(path)
    except OSError:
        return fh
    if st.st_ino != os.fstat(fh.fileno()).st_ino:
        fh.close()
        return open(path, "rb")  # noqa: SIM115
    return fh


async def _emit(data: bytes, opts: LogOptions, write: Callable[[bytes], Awaitable[None]], budget: _Budget) -> bytes:
    """Write the complete lines in `data` and return the incomplete rest (cut at MAX_LINE)."""
    out: list[bytes] = []
    start = 0
    while not budget.spent:
        end = data.find(b"\n", start)
        if end < 0:
            break
        raw = data[start:end]
        start = end + 1
        try:
            line = parse_line(raw)
        except LogFormatError:
            continue  # the kubelet logs the bad line and goes on
        if opts.since_ns is not None and line.time_ns < opts.since_ns:
            continue
        piece = budget.take(render(line, opts.timestamps))
        if piece:
            out.append(piece)
    if out:
        await write(b"".join(out))
    rest = data[start:]
    return rest[-MAX_LINE:] if len(rest) > MAX_LINE else rest


class LogStatusError(Exception):
    """Why a container has no log to read now, in the kubelet's words (answered 400)."""


def log_source(statuses: list[dict[str, object]], container: str, pod: str, previous: bool) -> bool:
    """Which instance's log to read, as the kubelet's validateContainerLogStatus decides: True for the previous
    (last terminated) one, False for the current one; LogStatusError when there is none to read."""
    status = next((s for s in statuses if isinstance(s, dict) and s.get("name") == container), None)
    if status is None:
        raise LogStatusError(f'container "{container}" in pod "{pod}" is not available')
    state = _dict(status.get("state"))
    last = _dict(_dict(status.get("lastState")).get("terminated"))
    if previous:
        if not last.get("containerID"):
            raise LogStatusError(f'previous terminated container "{container}" in pod "{pod}" not found')
        return True
    if "running" in state and state["running"] is not None:
        return False
    terminated = state.get("terminated")
    if isinstance(terminated, dict) or last:
        if isinstance(terminated, dict) and terminated.get("containerID"):
            return False
        if last.get("containerID"):
            return True
        raise LogStatusError(f'container "{container}" in pod "{pod}" is terminated')
    waiting = state.get("waiting")
    if isinstance(waiting, dict):
        reason = str(waiting.get("reason") or "")
        why = {"ErrImagePull": "image can't be pulled",
               "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise LogStatusError(f'container "{container}" in pod "{pod}" is waiting to start: {why}')
    raise LogStatusError(f'container "{container}" in pod "{pod}" is waiting to start - no logs yet')


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("", "0", "f", "F", "FALSE", "false", "False")
_INT64_MAX = (1 << 63) - 1


def query_options(query: dict[str, list[str]], now_ns: int) -> tuple[LogOptions, bool]:
    """The log options of a `containerLogs` query and whether it asks for the previous instance (ValueError
    names the parameter that is wrong)."""
    def flag(name: str) -> bool:
        value = (query.get(name) or [""])[0]
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError(f'invalid value for {name}: "{value[:64]}" is not a boolean')

    def number(name: str, least: int) -> int | None:
        value = (query.get(name) or [""])[0]
        if value == "":
            return None
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f'invalid value for {name}: "{value[:64]}" is not an integer') from None
        if not least <= n <= _INT64_MAX:
            raise ValueError(f"invalid value for {name}: must be at least {least}")
        return n

    since_ns = None
    since_seconds = number("sinceSeconds", 1)
    since_time = (query.get("sinceTime") or [""])[0]
    if since_seconds is not None and since_time:
        raise ValueError("at most one of sinceTime or sinceSeconds may be specified")
    if since_seconds is not None:
        since_ns = now_ns - min(since_seconds, now_ns // 1_000_000_000) * 1_000_000_000
    elif since_time:
        try:
            since_ns = parse_time_ns(since_time)
        except ValueError:
            raise ValueError(f'invalid value for sinceTime: "{since_time[:64]}" is not an RFC 3339 time') from None
    opts = LogOptions(follow=flag("follow"), tail_lines=number("tailLines", 0), since_ns=since_ns,
                      timestamps=flag("timestamps"), limit_bytes=number("limitBytes", 1))
    return opts, flag("previous")
