"""The node `kubesat serve` runs beside itself (as `k3s server` runs its agent): a `kubesat agent` process with
node credentials the server's CA signs, its state under DATA_DIR/node, supervised while the server runs.

The agent is a separate process so that its file writes and token work never hold the server's event loop,
and so that it talks to the API exactly as any other node does. It is stopped before the server stops
serving, so it can still report its node not ready; if the server dies without that, the kernel sends the
agent SIGTERM (Linux's parent-death signal) and it exits on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("kubesat.localnode")

NODE_DIR = "node"
KUBECONFIG_FILE = "node.kubeconfig"
STOP_TIMEOUT = 8.0  # the agent's own shutdown reports the node not ready: give it time to
_RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
_PR_SET_PDEATHSIG = 1
# The C library as the interpreter has it loaded (not ctypes.util.find_library, which runs `ldconfig -p`).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_NOT_SUBDOMAIN = re.compile(r"[^a-z0-9.-]+")


def default_node_name(host: str | None = None) -> str:
    """The host's name as a Node name (a lowercase RFC 1123 subdomain), as the kubelet's --hostname-override
    default; "kubesat" when nothing of it is usable."""
    name = _NOT_SUBDOMAIN.sub("-", (host if host is not None else socket.gethostname()).lower())
    labels = [part.strip("-") for part in name.split(".")]
    name = ".".join(p for p in labels if p)[:253].strip(".-")
    return name or "kubesat"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the server process goes away, however it went."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class LocalNode:
    """Start, watch and stop the local agent process."""

    def __init__(self, data_dir: Path, node_name: str, write_kubeconfig: Callable[[Path], None],
                 log_level: str = "warning", runtime: str = "none", pod_network: str = "auto") -> None:
        self.data_dir = data_dir
        self.node_name = node_name
        self.runtime = runtime
        self.pod_network = pod_network
        self.write_kubeconfig = write_kubeconfig
        self.log_level = log_level
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def root(self) -> Path:
        return self.data_dir / NODE_DIR

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / KUBECONFIG_FILE

    def command(self) -> list[str]:
        return [sys.executable, "-m", "kubesat.cli", "agent", "--kubeconfig", str(self.kubeconfig),
                "--node-name", self.node_name, "--root", str(self.root), "--log-level", self.log_level,
                "--runtime", self.runtime, "--pod-network", self.pod_network,
                "--port", "0",  # the kubelet API on a free port: two servers' nodes on one machine do not clash
                "--hide-path", str(self.data_dir)]  # the server's keys and database: out of every container's sight

    def start(self) -> None:
        self.write_kubeconfig(self.kubeconfig)
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            env = {k: v for k, v in os.environ.items() if not k.startswith("KUBESAT_AGENT_")}
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
            code = await self.proc.wait()
            if self._stopping:
                return
            delay = _RESTART_DELAYS[min(failures, len(_RESTART_DELAYS) - 1)]
            failures += 1
            log.warning("the local node's agent exited with code %s; restarting it in %g s "
                        "(turn the local node off with --no-node)", code, delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """SIGTERM the agent and wait for it (it reports its node not ready first); SIGKILL if it hangs."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("the local node's agent did not stop within %g s; killing it", STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
