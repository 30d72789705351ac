"""`kubesat run`: a local command, attached to the caller's terminal, in a pod's sandbox on this machine.

An API client like the agent. It creates (or finds) a pod bound to a node whose agent runs here, waits until the
agent has written its volumes and runs its container, reads that container's environment as the runtime built it
(through the API's `pods/exec`, running `env -0` in the container: the service variables carry the relay's address
as the agent chose it, and `env`, `envFrom`, `fieldRef` ... are resolved exactly as for the container), and then
runs the command through the sandbox helper's `local` mode: the pod's volumes bound at their mountPaths (the volume
directory itself, so the agent's atomic swaps of `..data` show through and the token rotates), the pod's
/etc/hosts, the caller's own user, directory and environment plus the container's variables. The pod it created is
deleted when the command ends.

Pure parts (argument checks, the pod built for `--serviceaccount` or `-f`, the environment and the sandbox spec)
are functions of their inputs; `run` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from kubesat import remotecommand
from kubesat.agent import envvars
from kubesat.agent.client import (ApiClient, ApiError, Credentials, HttpError, KubeconfigError, load_kubeconfig,
                                  tls_context)
from kubesat.agent.runtime.mounts import MountError, plan
from kubesat.agent.runtime.process import HELPER, runtime_available
from kubesat.agent.volumes import PLUGIN_DIRS

CONTAINER = "run"  # the container of a pod made for --serviceaccount
IMAGE = "kubesat-run"  # reported as given; the process runtime runs no image
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubesat-run"}
TOKENS_VOLUME = "kubesat-run-tokens"
TOKENS_DIR = "/var/run/secrets/tokens"  # --audience A: the token is TOKENS_DIR/<A, made a file name>
STRIPPED = ("command", "args", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle")
DROPPED_ENV = ("KUBECONFIG",)  # an in-cluster client must not find the caller's cluster credentials
# Bounds.
MAX_ARGS = 1024
MAX_ARG = envvars.MAX_VALUE
MAX_AUDIENCES = 8
MAX_AUDIENCE = 1024
MAX_POD_FILE = 1 << 20
MAX_ENV_OUTPUT = 2 << 20
NODE_WAIT = 15.0  # how long a node that is not registered yet is waited for
MAX_TIMEOUT = 3600.0
EXEC_TIMEOUT = 30.0
DELETE_TIMEOUT = 10.0
POLL = 0.2
SI_KERNEL = 0x80  # siginfo's si_code of a signal the kernel sent (the terminal's ^C), not a process
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NOT_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class RunError(Exception):
    """`kubesat run` cannot do what was asked; the message is one line saying why (and what to do)."""


@dataclass(frozen=True)
class RunOptions:
    command: tuple[str, ...]
    kubeconfig: Path
    node: str
    root: Path  # the node's agent root: its pods' volumes are under root/pods/<uid>/
    namespace: str | None = None  # None: "default", or -f's own
    service_account: str | None = None
    pod: str | None = None
    file: Path | None = None
    container: str | None = None
    audiences: tuple[str, ...] = ()
    hide: tuple[Path, ...] = ()  # more paths the command does not see (the server's data dir)
    timeout: float = 60.0


# -- pure parts ----------------------------------------------------------------------------------------------------

def _name_error(kind: str, value: str, pattern: re.Pattern[str], limit: int) -> str | None:
    if len(value) > limit or not pattern.match(value):
        return f"{kind} {value!r} is not a valid name (lowercase letters, digits, '-' and '.'; at most {limit})"
    return None


def check_options(o: RunOptions) -> None:
    """Raises RunError for arguments that cannot work, before anything is asked of the server."""
    if sum(x is not None for x in (o.service_account, o.pod, o.file)) > 1:
        raise RunError("give at most one of --serviceaccount, --pod and -f")
    if not o.command:
        raise RunError("no command: kubesat run [flags] -- CMD ARGS...")
    if len(o.command) > MAX_ARGS or any(len(a.encode(errors="surrogateescape")) > MAX_ARG or "\x00" in a
                                        for a in o.command):
        raise RunError(f"the command may have at most {MAX_ARGS} arguments of at most {MAX_ARG} bytes each")
    if o.audiences and o.pod is not None:
        raise RunError("--audience needs a pod kubesat run creates (--serviceaccount or -f): an existing pod's "
                       "volumes cannot be changed")
    if len(o.audiences) > MAX_AUDIENCES:
        raise RunError(f"at most {MAX_AUDIENCES} --audience")
    for a in o.audiences:
        if not a or len(a) > MAX_AUDIENCE or any(ord(ch) < 32 for ch in a):
            raise RunError(f"--audience must be 1 to {MAX_AUDIENCE} printable characters")
    files = [audience_file(a) for a in o.audiences]
    if len(set(files)) != len(files):
        raise RunError(f"two --audience values make the same file name under {TOKENS_DIR}")
    if not 0 < o.timeout <= MAX_TIMEOUT:
        raise RunError(f"--timeout must be between 0 and {MAX_TIMEOUT:g} seconds")
    for kind, value, pattern, limit in (("namespace", o.namespace, _LABEL, 63),
                                        ("serviceaccount", o.service_account, _SUBDOMAIN, 253),
                                        ("pod", o.pod, _SUBDOMAIN, 253), ("container", o.container, _LABEL, 63),
                                        ("node", o.node, _SUBDOMAIN, 253)):
        if value is not None and (why := _name_error(kind, value, pattern, limit)):
            raise RunError(why)


def audience_file(audience: str) -> str:
    """The token file of an --audience under TOKENS_DIR: the audience with every character that is not a letter,
    digit, '.', '_' or '-' made '_' (`https://vault.example.com` -> `https___vault.example.com`)."""
    name = _NOT_FILE_NAME.sub("_", audience)[:253]
    return "_" + name[1:] if name.startswith(".") else name


def add_audiences(pod: dict[str, Any], container: str, audiences: tuple[str, ...]) -> dict[str, Any]:
    """The pod with a projected volume of one serviceAccountToken per audience, mounted read-only at TOKENS_DIR
    in `container`."""
    if not audiences:
        return pod
    spec = pod["spec"]
    volumes = spec.setdefault("volumes", [])
    if any(isinstance(v, dict) and v.get("name") == TOKENS_VOLUME for v in volumes):
        raise RunError(f"the pod already has a volume named {TOKENS_VOLUME}")
    volumes.append({"name": TOKENS_VOLUME, "projected": {"sources": [
        {"serviceAccountToken": {"audience": a, "expirationSeconds": 3600, "path": audience_file(a)}}
        for a in audiences]}})
    c = next(c for c in spec["containers"] if c.get("name") == container)
    mounts = c.setdefault("volumeMounts", [])
    if any(isinstance(m, dict) and str(m.get("mountPath", "")).rstrip("/") == TOKENS_DIR for m in mounts):
        raise RunError(f"container {container} already mounts a volume at {TOKENS_DIR}")
    mounts.append({"name": TOKENS_VOLUME, "mountPath": TOKENS_DIR, "readOnly": True})
    return pod


def service_account_pod(namespace: str, service_account: str, node: str,
                        audiences: tuple[str, ...] = ()) -> dict[str, Any]:
    """The pod made for --serviceaccount: one container with no command (the process runtime keeps it idle),
    bound to `node` (no scheduler involved), never restarted, quick to stop."""
    base = service_account.replace(".", "-")[:40].rstrip("-")
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": f"kubesat-run-{base}-", "namespace": namespace, "labels": dict(MANAGED_BY)},
           "spec": {"serviceAccountName": service_account, "nodeName": node, "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5, "containers": [{"name": CONTAINER, "image": IMAGE}]}}
    return add_audiences(pod, CONTAINER, audiences)


def file_pod(doc: Any, namespace: str | None, node: str, container: str | None,
             audiences: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """The pod -f creates from a Pod manifest, and the container whose mounts and environment the command gets
    (`container`, else the first). Each container loses its command, args, probes and lifecycle hooks (the command
    given to kubesat run stands in for it; the runtime keeps it idle); init containers run as written. The pod is
    bound to `node`."""
    if not isinstance(doc, dict) or doc.get("kind") != "Pod" or doc.get("apiVersion") != "v1":
        raise RunError("-f takes one Pod manifest (apiVersion: v1, kind: Pod)")
    pod = copy.deepcopy(doc)
    pod.pop("status", None)
    meta: dict[str, Any] = pod["metadata"] if isinstance(pod.get("metadata"), dict) else {}
    for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "managedFields", "selfLink"):
        meta.pop(key, None)
    own = meta.get("namespace")
    if namespace and own and own != namespace:
        raise RunError(f'the namespace from the provided object "{own}" does not match the namespace "{namespace}": '
                       f"pass --namespace={own}")
    meta["namespace"] = str(own or namespace or "default")
    if not meta.get("name") and not meta.get("generateName"):
        meta["generateName"] = "kubesat-run-"
    labels = meta.get("labels")
    meta["labels"] = {**(labels if isinstance(labels, dict) else {}), **MANAGED_BY}
    pod["metadata"] = meta
    spec = pod.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list) or not spec["containers"] \
            or not all(isinstance(c, dict) for c in spec["containers"]):
        raise RunError("-f: the pod has no containers")
    if spec.get("nodeName") and spec["nodeName"] != node:
        raise RunError(f"-f: the pod is bound to node {spec['nodeName']}, not to node {node} whose agent runs here")
    spec["nodeName"] = node
    for c in spec["containers"]:
        for key in STRIPPED:
            c.pop(key, None)
    name = container or str(spec["containers"][0].get("name", ""))
    if not any(c.get("name") == name for c in spec["containers"]):
        raise RunError(f"-f: the pod has no container named {name}")
    return add_audiences(pod, name, audiences), name


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors and aliases, which can expand without bound."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def read_pod_file(path: Path) -> Any:
    """The one YAML or JSON document of a -f file (at most MAX_POD_FILE bytes; '-' is stdin, which the command
    then does not get)."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_POD_FILE + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_POD_FILE + 1)
    except OSError as e:
        raise RunError(f"-f {path}: {e.strerror or e}") from None
    if len(data) > MAX_POD_FILE:
        raise RunError(f"-f {path}: larger than {MAX_POD_FILE} bytes")
    try:
        docs = [d for d in yaml.load_all(data.decode(), Loader=_NoAliases) if d is not None]  # noqa: S506
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunError(f"-f {path}: not YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if len(docs) != 1:
        raise RunError(f"-f {path}: one Pod manifest expected, found {len(docs)} documents")
    return docs[0]


def node_from_kubeconfig(path: Path) -> str:
    """The node a node kubeconfig's client certificate names (CN system:node:NAME)."""
    try:
        creds = load_kubeconfig(path)
    except KubeconfigError as e:
        raise RunError(f"cannot tell the local node's name ({e}): give --node NAME") from None
    try:
        cert = x509.load_pem_x509_certificate(creds.cert_pem or b"")
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = str(cn[0].value) if cn else ""
    except ValueError:
        value = ""
    if not value.startswith("system:node:"):
        raise RunError(f"{path} holds no node certificate: give --node NAME")
    return value.removeprefix("system:node:")


def volume_dirs(pod: dict[str, Any], pod_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(volume name -> its directory under the agent's pod dir, hostPath volume name -> its path), with the
    kubelet's plugin directory names the agent writes."""
    sources: dict[str, str] = {}
    host_paths: dict[str, str] = {}
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if not isinstance(v, dict):
            continue
        name = str(v.get("name", ""))
        if isinstance(v.get("hostPath"), dict):
            host_paths[name] = str(v["hostPath"].get("path", ""))
            continue
        kind = next((k for k in PLUGIN_DIRS if k in v), None)
        if kind is not None:
            sources[name] = str(pod_dir / "volumes" / PLUGIN_DIRS[kind] / name)
    return sources, host_paths


def merge_env(caller: Mapping[str, str], container_env: Mapping[str, str],
              container: dict[str, Any]) -> dict[str, str]:
    """The command's environment: the caller's (without KUBECONFIG), then the container's variables over it,
    except the image's default PATH: the caller's PATH stays unless the container's `env` sets one."""
    env = {k: v for k, v in caller.items() if k not in DROPPED_ENV}
    sets_path = any(isinstance(e, dict) and e.get("name") == "PATH" for e in container.get("env") or [])
    for k, v in container_env.items():
        if k == "PATH" and "PATH" in env and not sets_path:
            continue
        env[k] = v
    return env


def parse_env(output: bytes) -> dict[str, str]:
    """`env -0`'s output as a dict (bytes that are not UTF-8 kept as the os module keeps them)."""
    env: dict[str, str] = {}
    for item in output.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return env


def sandbox_spec(o: RunOptions, pod: dict[str, Any], container: str, env: dict[str, str], scratch: Path,
                 home: Path | None = None) -> dict[str, Any]:
    """The helper's `local` spec: the container's mounts and the pod's /etc/hosts; the agent's root, the
    kubeconfig used here, ~/.kube/config and `hide` masked; the caller's uid, gid and groups."""
    pod_dir = o.root / "pods" / str(pod["metadata"]["uid"])
    spec_c: dict[str, Any] = next((c for c in (pod.get("spec") or {}).get("containers") or []
                                   if c.get("name") == container), {})
    sources, host_paths = volume_dirs(pod, pod_dir)
    try:
        mounts = [m.spec() for m in plan(spec_c, sources, host_paths, [Path("/")])]
    except MountError as e:
        raise RunError(f"container {container}: {e}") from None
    hosts = pod_dir / "etc-hosts"
    if hosts.exists():
        mounts.append({"source": str(hosts), "subPath": "", "target": "/etc/hosts", "readOnly": True})
    masks = [o.root, *o.hide, o.kubeconfig]
    if home is not None:
        masks.append(home / ".kube" / "config")
    return {"mounts": mounts, "masks": [str(Path(m).absolute()) for m in masks], "private": [], "proc": False,
            "scratch": str(scratch), "argv": list(o.command), "env": env, "uid": os.getuid(), "gid": os.getgid(),
            "groups": os.getgroups(), "userns": os.geteuid() != 0, "cwd": "", "hostname": envvars.hostname(pod)}


def exit_code(returncode: int) -> int:
    """A shell's exit status of a child: its code, or 128+N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


# -- talking to the server ---------------------------------------------------------------------------------------

def _pod_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/pods" + (f"/{quote(name)}" if name else "")


def _waiting_problem(pod: dict[str, Any], container: str) -> str | None:
    """Why the container will not run (a phase that ended, a configuration the node refuses), or None."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return f"it has ended (phase {phase})"
    for s in status.get("containerStatuses") or []:
        waiting = (s.get("state") or {}).get("waiting") or {}
        if s.get("name") == container and waiting.get("reason") in ("CreateContainerConfigError",
                                                                    "CreateContainerError", "RunContainerError"):
            return f"{waiting['reason']}: {waiting.get('message', '')}"
    return None


def _running(pod: dict[str, Any], container: str) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        s.get("name") == container and "running" in (s.get("state") or {})
        for s in status.get("containerStatuses") or [])


class _Session:
    """One run's dealings with the server: the pod (and whether it was made here), its container's environment."""

    def __init__(self, o: RunOptions, key_dir: Path) -> None:
        self.o = o
        self.key_dir = key_dir
        try:
            self.creds: Credentials = load_kubeconfig(o.kubeconfig)
        except KubeconfigError as e:
            raise RunError(f"kubeconfig: {e}") from None
        self.created: tuple[str, str] | None = None  # (namespace, name) of the pod to delete at the end

    def client(self) -> ApiClient:
        return ApiClient(self.creds, self.key_dir, "kubesat-run")

    async def prepare(self) -> tuple[dict[str, Any], str, dict[str, str]]:
        """The running pod, the container to take after, and that container's environment."""
        api = self.client()
        try:
            await self._check_node(api)
            pod, container = await self._pod(api)
            pod = await self._wait(api, pod, container)
            env = await asyncio.wait_for(self._container_env(pod, container), EXEC_TIMEOUT)
            return pod, container, env
        except ApiError as e:
            raise RunError(e.message or str(e)) from None
        except (OSError, TimeoutError, HttpError) as e:
            raise RunError(f"cannot reach the API server at {self.creds.server}: {e or type(e).__name__}") from None
        finally:
            await api.close()

    async def _check_node(self, api: ApiClient) -> None:
        """The node exists; a node that is still registering (a server that has just started its local node)
        is waited for a few seconds."""
        deadline = time.monotonic() + min(NODE_WAIT, self.o.timeout)
        while True:
            try:
                await api.get(f"/api/v1/nodes/{quote(self.o.node)}")
                return
            except ApiError as e:
                if e.code != 404:
                    raise
            if time.monotonic() >= deadline:
                raise RunError(f"node {self.o.node} not found: run kubesat serve with its local node (not --no-node),"
                               " or give --node and --root of an agent that runs on this machine")
            await asyncio.sleep(0.2)

    async def _pod(self, api: ApiClient) -> tuple[dict[str, Any], str]:
        o = self.o
        ns = o.namespace or "default"
        if o.pod is not None:
            pod = await api.get(_pod_path(ns, o.pod))
            names = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or []]
            container = o.container or (names[0] if names else "")
            if container not in names:
                raise RunError(f"pod {ns}/{o.pod} has no container named {container}")
            return pod, container
        if o.file is not None:
            body, container = file_pod(read_pod_file(o.file), o.namespace, o.node, o.container, o.audiences)
            ns = body["metadata"]["namespace"]
        else:
            sa = o.service_account or "default"
            try:
                await api.get(f"/api/v1/namespaces/{quote(ns)}/serviceaccounts/{quote(sa)}")
            except ApiError as e:
                if e.code == 404:
                    raise RunError(f'serviceaccount "{sa}" not found in namespace "{ns}"') from None
                raise
            body, container = service_account_pod(ns, sa, o.node, o.audiences), CONTAINER
        pod = await api.create(_pod_path(ns), body)
        self.created = (ns, pod["metadata"]["name"])
        return pod, container

    async def _wait(self, api: ApiClient, pod: dict[str, Any], container: str) -> dict[str, Any]:
        meta = pod["metadata"]
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        deadline = time.monotonic() + self.o.timeout
        while True:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node != self.o.node:
                raise RunError(f"pod {name} runs on node {node}, not on node {self.o.node} whose agent runs here")
            if meta.get("deletionTimestamp"):
                raise RunError(f"pod {name} is being deleted")
            if _running(pod, container):
                return pod
            problem = _waiting_problem(pod, container)
            if problem:
                raise RunError(f"container {container} of pod {name} will not run: {problem}")
            if time.monotonic() > deadline:
                phase = (pod.get("status") or {}).get("phase") or "Pending"
                raise RunError(f"pod {name} is not running after {self.o.timeout:g} s (phase {phase}): is the agent "
                               f"of node {self.o.node} running, with the process runtime? (--timeout to wait longer)")
            await asyncio.sleep(POLL)
            pod = await api.get(_pod_path(meta["namespace"], meta["name"]))
            meta = pod["metadata"]

    async def _container_env(self, pod: dict[str, Any], container: str) -> dict[str, str]:
        """`env -0` run in the container through pods/exec: its environment as the runtime built it."""
        meta = pod["metadata"]
        query = urlencode([("command", "env"), ("command", "-0"), ("container", container), ("stdout", "true"),
                           ("stderr", "true")])
        url = "wss://" + self.creds.server.removeprefix("https://") + _pod_path(meta["namespace"], meta["name"]) + \
            f"/exec?{query}"
        headers = {"Authorization": f"Bearer {self.creds.token}"} if self.creds.token and not self.creds.cert_pem \
            else {}
        out, err, status = bytearray(), bytearray(), None
        what = f"the environment of container {container} of pod {meta['namespace']}/{meta['name']}"
        try:
            async with connect(url, ssl=tls_context(self.creds, self.key_dir), additional_headers=headers,
                               subprotocols=[Subprotocol(remotecommand.V5), Subprotocol(remotecommand.V4)],
                               max_size=MAX_ENV_OUTPUT, open_timeout=EXEC_TIMEOUT, ping_interval=None,
                               compression=None, user_agent_header="kubesat-run") as ws:
                framing = remotecommand.Framing(ws.subprotocol or remotecommand.V4)
                async for message in ws:
                    channel, data = framing.decode(message)
                    if channel == remotecommand.STDOUT and len(out) + len(data) <= MAX_ENV_OUTPUT:
                        out += data
                    elif channel == remotecommand.STDERR:
                        err += data[:4096]
                    elif channel == remotecommand.ERROR:
                        status = orjson.loads(data)
        except InvalidStatus as e:
            body = bytes(e.response.body or b"")[:4096]
            try:
                message = str(orjson.loads(body).get("message", ""))
            except (orjson.JSONDecodeError, AttributeError):
                message = body.decode(errors="replace").strip()
            raise RunError(f"cannot read {what}: {message or e.response.reason_phrase}") from None
        except (InvalidHandshake, ConnectionClosed, remotecommand.FrameError, orjson.JSONDecodeError) as e:
            raise RunError(f"cannot read {what}: {e}") from None
        if isinstance(status, dict) and status.get("status") != "Success":
            detail = err.decode(errors="replace").strip().splitlines()[-1:] or [str(status.get("message", ""))]
            raise RunError(f"cannot read {what}: {detail[0]}")
        return parse_env(bytes(out))

    async def delete(self) -> None:
        if self.created is None:
            return
        api = self.client()
        try:
            await asyncio.wait_for(api.delete(_pod_path(*self.created)), DELETE_TIMEOUT)
        except ApiError as e:
            if e.code != 404:
                raise
        finally:
            await api.close()


# -- the command ---------------------------------------------------------------------------------------------------

def sandbox_problem() -> str | None:
    """Why this process cannot make the sandbox (and the fix), or None."""
    if sys.platform != "linux":
        return "kubesat run needs Linux namespaces to mount a pod's volumes"
    if os.geteuid() == 0 or runtime_available() is None:
        return None
    return ("this user may not create the mount namespace that holds the pod's volumes: run kubesat run as root, or "
            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0)")


def _command(spec: dict[str, Any], work: Path) -> int:
    """Run the helper (which becomes the command) attached to this terminal; its exit code. Signals a process
    sends to kubesat run are passed on; the terminal's own (^C) reach the command directly."""
    spec_file = work / "spec.json"
    fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    watched = {*FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)  # the helper clears its mask before the exec
    fail_r, fail_w = os.pipe()
    try:
        proc = subprocess.Popen([*HELPER, "local", str(spec_file), str(fail_w)], pass_fds=(fail_w,))
    except OSError as e:
        raise RunError(f"cannot start the sandbox helper: {e}") from None
    finally:
        os.close(fail_w)
    with os.fdopen(fail_r, "rb") as failures:
        failure = failures.read(4096).decode(errors="replace").strip()  # EOF when the command started
    while proc.poll() is None:
        info = signal.sigtimedwait(watched, 1.0)
        if info is not None and info.si_signo != signal.SIGCHLD and info.si_code != SI_KERNEL:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(info.si_signo)
    if failure:
        sys.stderr.write(f"kubesat: error: {failure}\n")
    return exit_code(proc.returncode)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(o: RunOptions) -> int:
    """`kubesat run`: the command's exit code (RunError for anything that stops it before it runs)."""
    check_options(o)
    why = sandbox_problem()
    if why is not None:
        raise RunError(why)
    work = Path(tempfile.mkdtemp(prefix="kubesat-run-"))
    session: _Session | None = None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        session = _Session(o, work / "keys")
        pod, container, container_env = asyncio.run(session.prepare())
        signal.signal(signal.SIGTERM, previous)
        pod_dir = o.root / "pods" / str(pod["metadata"]["uid"])
        if not os.access(pod_dir, os.R_OK | os.X_OK):
            raise RunError(f"the pod's volumes are not under {o.root}/pods (the agent root of node {o.node}) or "
                           "cannot be read: give --root of the node's agent, and run as the user that runs it")
        (work / "scratch").mkdir(mode=0o700)
        env = merge_env(os.environ, container_env,
                        next(c for c in pod["spec"]["containers"] if c.get("name") == container))
        home = Path(os.environ["HOME"]) if os.environ.get("HOME", "").startswith("/") else None
        return _command(sandbox_spec(o, pod, container, env, work / "scratch", home), work)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # nothing interrupts the clean-up
        try:
            if session is not None:
                asyncio.run(session.delete())
        except (ApiError, HttpError, OSError, TimeoutError) as e:
            created = "/".join(session.created or ()) if session is not None else ""
            sys.stderr.write(f"kubesat: warning: could not delete pod {created}: {e}\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
