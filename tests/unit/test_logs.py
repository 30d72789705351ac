"""The server log's formatter: no message, argument or exception text can forge, split or hide a line."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from kubesat import logs

# Everything some reader takes for a line break or a terminal control: C0, DEL, C1, U+2028/2029.
CONTROLS = [chr(n) for n in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)]
FORGED = "2024-01-01 00:00:00,000 WARNING kubesat: forged"


def record(msg: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("kubesat.api", logging.WARNING, __file__, 1, msg, args or None,
                             exc_info)  # type: ignore[arg-type]


def formatted(rec: logging.LogRecord) -> str:
    return logs.EscapingFormatter(logs.FORMAT).format(rec)


def test_message_and_args_with_line_breaks_and_controls_stay_one_line() -> None:
    rec = record("authentication failed for %s %s: %s\n" + FORGED, "GET",
                 "/api/v1/namespaces/x\n" + FORGED + "\r" + FORGED + "\x1b[2J\u2028" + FORGED, "reason\x85")
    out = formatted(rec)
    assert len(out.splitlines()) == 1, out  # splitlines also breaks at \r, \x1c-\x1e, \x85, U+2028/2029
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\u2028" not in out
    assert out.endswith("authentication failed for GET /api/v1/namespaces/x\\n" + FORGED + "\\r" + FORGED
                        + "\\x1b[2J\\u2028" + FORGED + ": reason\\x85\\n" + FORGED)


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_every_control_character_is_escaped(char: str) -> None:
    out = formatted(record("a%sb", char))
    assert char not in out
    tail = out.split(": ", 1)[1]
    assert tail.startswith("a\\") and tail.endswith("b") and tail.isprintable(), tail


def test_escapes_are_readable() -> None:
    assert logs.escape("a\nb\rc\td\x00e\x7ff\x9bg\u2028h\u2029") == "a\\nb\\rc\\td\\x00e\\x7ff\\x9bg\\u2028h\\u2029"
    plain = "GET /api/v1/namespaces/default/pods?watch=1 é ü 漢"
    assert logs.escape(plain) == plain


def test_traceback_stays_multi_line_but_no_line_of_it_passes_for_a_record() -> None:
    try:
        raise ValueError("bad name\n" + FORGED + "\r\x1b[1A")
    except ValueError:
        rec = record("unhandled error serving %s %s", "GET", "/x\ny", exc_info=sys.exc_info())
    out = formatted(rec)
    lines = out.split("\n")
    assert lines[0].endswith("unhandled error serving GET /x\\ny")
    assert lines[1] == "  Traceback (most recent call last):"
    assert any(line.startswith("    File ") for line in lines)
    assert lines[-1] == "  " + FORGED + "\\r\\x1b[1A"
    assert all(line.startswith("  ") for line in lines[1:])  # only the record's own line starts at column 0
    assert "\r" not in out and "\x1b" not in out


def test_configure_routes_every_logger_through_the_escaping_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("info")
        logging.getLogger("uvicorn.error").info("Invalid request %s", "x\ny")
        logging.getLogger("kubesat.api").warning("path %s", "/a\u2029b")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("INFO uvicorn.error: Invalid request x\\ny")
    assert lines[1].endswith("WARNING kubesat.api: path /a\\u2029b")


def test_rate_limit_lets_a_burst_then_a_rate_through_and_counts_the_rest() -> None:
    now = [100.0]
    limit = logs.RateLimit(per_second=4, burst=5, clock=lambda: now[0])
    assert [limit.allow() for _ in range(5)] == [0, 0, 0, 0, 0]
    assert [limit.allow() for _ in range(7)] == [None] * 7
    now[0] += 0.25  # one more line's worth
    assert limit.allow() == 7  # the line says how many were left out before it
    assert limit.allow() is None
    now[0] += 0.5
    assert [limit.allow() for _ in range(3)] == [1, 0, None]
    now[0] += 3600  # a quiet hour refills the burst, no more
    assert [limit.allow() for _ in range(6)] == [1, 0, 0, 0, 0, None]
