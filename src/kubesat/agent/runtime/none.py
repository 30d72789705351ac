"""The `none` runtime: no process at all. A pod's containers are reported running as soon as its volumes are
written, as the agent did before it had a runtime; exec, attach, logs and port-forward have nothing to reach."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubesat.agent.runtime import ExecRequest, ExecSession, PodSandboxConfig, RuntimeFailure, lifecycle

NO_PROCESS = "the node runs no processes (kubesat agent --runtime none)"


class NoneRuntime:
    name = "none"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.pods: dict[str, tuple[dict[str, Any], float]] = {}

    async def start_pod(self, config: PodSandboxConfig) -> None:
        uid = str(config.pod["metadata"]["uid"])
        started = self.pods[uid][1] if uid in self.pods else self.clock()
        self.pods[uid] = (config.pod, started)
        if config.notify is not None:
            config.notify()

    async def stop_pod(self, pod_uid: str, grace_seconds: float) -> None:
        del grace_seconds

    def container_statuses(self, pod_uid: str) -> list[dict[str, Any]] | None:
        if pod_uid not in self.pods:
            return None
        pod, started = self.pods[pod_uid]
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        return [{"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "",
                 "containerID": f"kubesat://{pod_uid}/{c.get('name', '')}", "ready": True, "started": True,
                 "restartCount": 0, "state": {"running": {"startedAt": at}}, "lastState": {}}
                for c in (pod.get("spec") or {}).get("containers") or []]

    def pod_status(self, pod_uid: str) -> dict[str, Any] | None:
        statuses = self.container_statuses(pod_uid)
        if statuses is None:
            return None
        pod = self.pods[pod_uid][0]
        inits = [{"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "", "ready": True,
                  "started": False, "restartCount": 0, "lastState": {},
                  "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                 for c in (pod.get("spec") or {}).get("initContainers") or []]
        phase = lifecycle.phase(pod, inits, statuses)
        return {"phase": phase, "initContainerStatuses": inits, "containerStatuses": statuses,
                "conditions": lifecycle.conditions(pod, phase, inits, statuses)}

    def forget_pod(self, pod_uid: str) -> None:
        self.pods.pop(pod_uid, None)

    async def close(self) -> None:
        self.pods.clear()

    async def exec(self, request: ExecRequest) -> ExecSession:
        raise RuntimeFailure(f'container not found ("{request.container}"): {NO_PROCESS}')

    async def attach(self, request: ExecRequest) -> ExecSession:
        raise RuntimeFailure(f"container {request.container} is not running: {NO_PROCESS}")

    def log_path(self, pod_uid: str, container: str, previous: bool = False) -> Path | None:
        del pod_uid, container, previous
        return None

    async def open_port(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise RuntimeFailure(f"cannot forward port {port} of pod {pod_uid}: {NO_PROCESS}")
