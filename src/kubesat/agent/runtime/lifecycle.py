"""The kubelet's rules for a pod's containers, as pure functions: restart decisions, the crash-loop back-off,
the pod's phase and conditions, the words of its waiting and terminated states.

Sources: pkg/kubelet/kubelet_pods.go (getPhase), pkg/kubelet/status/generate.go (conditions),
pkg/kubelet/kuberuntime/kuberuntime_manager.go (doBackOff), client-go util/flowcontrol/backoff.go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INITIAL_BACKOFF = 10.0
MAX_BACKOFF = 300.0  # MaxContainerBackOff; an entry is forgotten after twice that without a failure


def go_duration(seconds: float) -> str:
    """Go's Duration.String for whole seconds: `10s`, `1m20s`, `5m0s`, `1h0m0s`."""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


@dataclass
class _Entry:
    backoff: float
    last_update: float


class CrashBackoff:
    """Per-container back-off as the kubelet keeps it: the first restart is at once, then each failure within
    the current back-off waits 10 s, 20 s, 40 s ... 300 s; a container that ran without failing for twice the
    cap (10 minutes) starts again from the beginning."""

    def __init__(self, initial: float = INITIAL_BACKOFF, cap: float = MAX_BACKOFF) -> None:
        self.initial = initial
        self.cap = cap
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, event_time: float) -> bool:
        return event_time - entry.last_update > 2 * self.cap

    def wait(self, key: str, finished_at: float, now: float) -> float:
        """Seconds still to wait before restarting a container that finished at `finished_at` (0: restart now)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, finished_at):
            return 0.0
        return max(0.0, entry.backoff - (now - finished_at))

    def current(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.backoff if entry else self.initial

    def next(self, key: str, finished_at: float, now: float) -> None:
        """A restart is happening: the next failure waits longer."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, finished_at):
            self._entries[key] = _Entry(self.initial, now)
        else:
            entry.backoff = min(entry.backoff * 2, self.cap)
            entry.last_update = now

    def forget(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def pod_full_name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', 'default')}({meta.get('uid', '')})"


def backoff_message(seconds: float, container: str, pod: dict[str, Any]) -> str:
    return f"back-off {go_duration(seconds)} restarting failed container={container} pod={pod_full_name(pod)}"


def backoff_event(container: str, pod: dict[str, Any]) -> str:
    return f"Back-off restarting failed container {container} in pod {pod_full_name(pod)}"


def restart_policy(pod: dict[str, Any]) -> str:
    policy = str((pod.get("spec") or {}).get("restartPolicy") or "Always")
    return policy if policy in ("Always", "OnFailure", "Never") else "Always"


def should_restart(policy: str, exit_code: int, init: bool = False) -> bool:
    """Whether a container that exited is started again (init containers: Always counts as OnFailure)."""
    if policy == "Always" and not init:
        return True
    if policy in ("Always", "OnFailure"):
        return exit_code != 0
    return False


def terminated_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def _status_of(statuses: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((s for s in statuses if s.get("name") == name), None)


def _init_counts(spec: dict[str, Any], init_statuses: list[dict[str, Any]]) -> tuple[int, int]:
    pending = failed = 0
    for c in spec.get("initContainers") or []:
        st = _status_of(init_statuses, c.get("name", ""))
        state = (st or {}).get("state") or {}
        last = ((st or {}).get("lastState") or {}).get("terminated")
        if st is None or "running" in state:
            pending += 1
        elif "terminated" in state:
            failed += state["terminated"].get("exitCode", 0) != 0
        elif "waiting" in state and last is not None:
            failed += last.get("exitCode", 0) != 0
        else:
            pending += 1
    return pending, failed


def phase(pod: dict[str, Any], init_statuses: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> str:
    """getPhase: Pending, Running, Succeeded or Failed from the containers' states and the restart policy."""
    spec = pod.get("spec") or {}
    policy = restart_policy(pod)
    pending_init, failed_init = _init_counts(spec, init_statuses)
    unknown = running = waiting = stopped = succeeded = 0
    for c in spec.get("containers") or []:
        st = _status_of(statuses, c.get("name", ""))
        state = (st or {}).get("state") or {}
        if st is None:
            unknown += 1
        elif "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode", 0) == 0
        elif "waiting" in state:
            if ((st.get("lastState") or {}).get("terminated")) is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _initialized(spec: dict[str, Any], pod_phase: str, init_statuses: list[dict[str, Any]],
                 statuses: list[dict[str, Any]]) -> tuple[str, str, str]:
    """GeneratePodInitializedCondition: True once a regular container has started (or with no init containers);
    else every init container must have exited 0 (PodCompleted for a Succeeded pod)."""
    inits = spec.get("initContainers") or []
    states = [(_status_of(statuses, c.get("name", "")) or {}).get("state") or {} for c in spec.get("containers") or []]
    started = any(state.keys() & {"running", "terminated"} for state in states)
    if not inits or started:
        return ("True", "", "")
    unknown, incomplete = [], []
    for c in inits:
        st = _status_of(init_statuses, c.get("name", ""))
        term = ((st or {}).get("state") or {}).get("terminated")
        if st is None:
            unknown.append(c.get("name", ""))
        elif term is None or term.get("exitCode") != 0:
            incomplete.append(c.get("name", ""))
    if pod_phase == "Succeeded" and not unknown:
        return ("True", "PodCompleted", "")
    messages = [f"containers with {what} status: [{' '.join(names)}]"
                for what, names in (("unknown", unknown), ("incomplete", incomplete)) if names]
    if messages:
        return ("False", "ContainersNotInitialized", ", ".join(messages))
    return ("True", "", "")


def conditions(pod: dict[str, Any], pod_phase: str, init_statuses: list[dict[str, Any]],
               statuses: list[dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """type -> (status, reason, message) of Initialized, ContainersReady and Ready, as generate.go words them."""
    spec = pod.get("spec") or {}
    out: dict[str, tuple[str, str, str]] = {"Initialized": _initialized(spec, pod_phase, init_statuses, statuses)}
    unready = [c.get("name", "") for c in spec.get("containers") or []
               if not (_status_of(statuses, c.get("name", "")) or {}).get("ready")]
    if pod_phase in ("Succeeded", "Failed"):
        out["ContainersReady"] = ("False", "PodCompleted", "")
    elif unready:
        out["ContainersReady"] = ("False", "ContainersNotReady",
                                  f"containers with unready status: [{' '.join(unready)}]")
    else:
        out["ContainersReady"] = ("True", "", "")
    out["Ready"] = out["ContainersReady"]
    return out
