"""Test aid: a Python started with this directory on PYTHONPATH runs its wall clock ahead.

The offset, in seconds, is read from the file named by $KUBESAT_TEST_CLOCK_OFFSET_FILE at start-up
and again on SIGUSR1. Only time.time moves (kubesat's clock for token iat/exp, verification and key
retirement); monotonic time, TLS and everything outside Python keep real time. Without the
variable this module does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

_real_time = time.time
_path = os.environ.get("KUBESAT_TEST_CLOCK_OFFSET_FILE", "")
_offset = 0.0


def _read_offset(*_: Any) -> None:
    global _offset
    try:
        with open(_path) as f:
            _offset = float(f.read().strip() or 0)
    except (OSError, ValueError):
        pass  # keep the last offset: a half-written file is re-read on the next signal


def _shifted() -> float:
    return _real_time() + _offset


if _path:
    _read_offset()
    time.time = _shifted
    signal.signal(signal.SIGUSR1, _read_offset)
