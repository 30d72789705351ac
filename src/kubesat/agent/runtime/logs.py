"""Container logs as a CRI runtime writes them and the kubelet rotates them.

Each line a container writes becomes `<RFC3339Nano> <stdout|stderr> <F|P> <content>`: `F` a full line, `P` a
piece of a line longer than 16 KiB (containerd's buffer) or of the last bytes before the stream closed without a
newline... which the reader joins until the next `F`. Files follow the kubelet's layout,
`<log dir>/<container>/<restartCount>.log`; a file that reaches containerLogMaxSize (10 Mi) is renamed
`<n>.log.<YYYYMMDD-HHMMSS>` and a new one opened, keeping containerLogMaxFiles (5) files in all (the kubelet also
gzips the older rotated files; these stay plain).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

MAX_SIZE = 10 * 1024 * 1024  # containerLogMaxSize 10Mi
MAX_FILES = 5  # containerLogMaxFiles
MAX_LINE = 16 * 1024  # a longer line is written in pieces tagged P


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds, UTC: `2026-12-03T10:15:30.123456789Z`."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def format_entry(ns: int, stream: str, partial: bool, content: bytes) -> bytes:
    return f"{timestamp(ns)} {stream} {'P' if partial else 'F'} ".encode() + content + b"\n"


def parse_line(line: bytes) -> tuple[str, str, bool, bytes]:
    """(timestamp, stream, partial, content) of one CRI log line; ValueError when it is not one."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        raise ValueError("unsupported log format")
    ts, stream, tag = parts[0].decode(), parts[1].decode(), parts[2].decode()
    if stream not in ("stdout", "stderr"):
        raise ValueError("stream type is not found")
    return ts, stream, tag.split(":")[0] == "P", parts[3] if len(parts) > 3 else b""


def entries(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """(timestamp, stream, line) of each whole line in a CRI log file, pieces joined."""
    pending: dict[str, bytes] = {}
    with path.open("rb") as f:
        for raw in f:
            try:
                ts, stream, partial, content = parse_line(raw)
            except ValueError:
                continue
            if partial:
                pending[stream] = pending.get(stream, b"") + content
                continue
            yield ts, stream, pending.pop(stream, b"") + content


def log_file(log_dir: Path, container: str, restart_count: int) -> Path:
    return log_dir / container / f"{restart_count}.log"


class ContainerLog:
    """One container instance's log: lines from its streams in, CRI entries out, rotated by size."""

    def __init__(self, path: Path, max_size: int = MAX_SIZE, max_files: int = MAX_FILES,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max(2, max_files)
        self.clock = clock
        self._pending: dict[str, bytes] = {}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        self._file = path.open("ab")
        self._size = self._file.tell()

    def write(self, stream: str, data: bytes) -> None:
        """Bytes the container wrote on `stream`: every complete line logged, the rest kept for the next write."""
        buf = self._pending.pop(stream, b"") + data
        now = self.clock()
        out: list[bytes] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start, start + MAX_LINE + 1)
            if nl >= 0:
                out.append(format_entry(now, stream, False, buf[start:nl]))
                start = nl + 1
            elif len(buf) - start > MAX_LINE:
                out.append(format_entry(now, stream, True, buf[start:start + MAX_LINE]))
                start += MAX_LINE
            else:
                break
        if start < len(buf):
            self._pending[stream] = buf[start:]
        if out:
            self._append(b"".join(out))

    def close_stream(self, stream: str) -> None:
        """The stream ended: what is left of an unfinished line is logged as a whole line."""
        rest = self._pending.pop(stream, b"")
        if rest:
            self._append(format_entry(self.clock(), stream, False, rest))

    def close(self) -> None:
        for stream in list(self._pending):
            self.close_stream(stream)
        self._file.close()

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        self._size += len(data)
        if self._size >= self.max_size:
            self.rotate()

    def rotate(self) -> None:
        """Rename the current file with the time as its suffix, open a new one, and keep `max_files` in all."""
        self._file.close()
        stamp = datetime.fromtimestamp(self.clock() / 1e9, UTC).strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.{stamp}")
        n = 0
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.{stamp}.{n}")
        os.replace(self.path, target)
        for old in self.rotated()[: -(self.max_files - 1)]:
            old.unlink(missing_ok=True)
        self._file = self.path.open("ab")
        self._size = 0

    def rotated(self) -> list[Path]:
        """This log's rotated files, oldest first."""
        prefix = self.path.name + "."
        return sorted((p for p in self.path.parent.iterdir() if p.name.startswith(prefix)),
                      key=lambda p: p.stat().st_mtime_ns)


def remove_instance(log_dir: Path, container: str, restart_count: int) -> None:
    """Remove an old instance's log and its rotated files (the kubelet keeps the current and the previous)."""
    path = log_file(log_dir, container, restart_count)
    for p in path.parent.glob(f"{path.name}*"):
        p.unlink(missing_ok=True)
