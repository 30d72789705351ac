"""Cold start of `kubesat serve` to the first 200 from /readyz, first start (keys made) and restart.

Usage: python bench/startup.py [--runs N]
Prints one line per measurement and the median of each; exits non-zero if a target is missed
(first start < 2 s, restart < 1 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_ready(data_dir: Path) -> float:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kubesat.cli", "serve", "--no-node", "--data-dir", str(data_dir),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = None
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            ca = data_dir / "pki" / "ca.crt"
            if ctx is None and ca.exists():
                try:
                    ctx = ssl.create_default_context(cafile=str(ca))
                except ssl.SSLError:
                    ctx = None
            if ctx is not None:
                try:
                    with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=1) as r:
                        if r.status == 200:
                            return time.perf_counter() - start
                except OSError:
                    pass
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    first, again = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            data = Path(d) / "data"
            first.append(time_to_ready(data))
            again.append(time_to_ready(data))
            print(f"run {i + 1}: first start {first[-1]:.3f} s, restart {again[-1]:.3f} s")
    f, a = statistics.median(first), statistics.median(again)
    print(f"median: first start {f:.3f} s (target < 2 s), restart {a:.3f} s (target < 1 s)")
    return 0 if f < 2.0 and a < 1.0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "0")
    sys.exit(main())
