"""What every `kubesat` command shares: the one-line failure, and the parsing of flag values click does not do."""

from __future__ import annotations

import math
import re
import sys

import click

__all__ = ["OneLineUsage", "fail", "finite", "parse_bool", "parse_duration", "parse_timeout"]


def fail(message: str) -> None:
    click.echo(f"kubesat: error: {message}", err=True)
    sys.exit(1)


def finite(value: float, flag: str) -> float:
    """A float flag that is a number (NaN passes click's range checks, as every comparison with it is false)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{flag} takes a finite number, got {value!r}")
    return value


def parse_bool(value: str, flag: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise click.BadParameter(f"{flag} takes true or false, got {value!r}")


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(value: str, flag: str) -> int:
    """Go-style durations kube-apiserver takes (24h, 1h30m, 90s) or plain seconds; returns seconds."""
    v = value.strip().lower()
    if v.isdigit():
        return int(v)
    parts = re.findall(r"(\d+)([hms])", v)
    if not parts or "".join(n + u for n, u in parts) != v:
        raise click.BadParameter(f"{flag} takes a duration like 24h, 90m or 3600s, got {value!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def parse_timeout(value: str, flag: str) -> int:
    """A duration of at least one second: a zero timeout would turn the protection off."""
    seconds = parse_duration(value, flag)
    if seconds < 1:
        raise click.BadParameter(f"{flag} must be at least 1s, got {value!r}")
    return seconds


class OneLineUsage(click.Command):
    """A usage error in one line (`kubesat: error: No such option: --x`), as kubesat's other errors."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: object) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            fail(f"{e.format_message()} (kubesat run -h)")
            raise
