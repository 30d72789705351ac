"""`kubesat agent`: one node's agent, from start to a clean stop.

It registers the node, then heartbeats (Lease and status every 10 s) and looks after the pods bound
to it (`pods`) until SIGTERM or SIGINT, when it reports the node not ready and exits. A server that
cannot be reached is retried with backoff; the node's state on the server is whatever the agent
last wrote.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

import httpx

from kubesat.agent import certs, kubeletapi, netns
from kubesat.agent.netns import PodNetwork
from kubesat.agent.containers import Containers, make_runtime
from kubesat.agent.events import pod_ref
from kubesat.agent.relay import Relay
from kubesat.agent.serviceproxy import ServiceProxy
from kubesat.agent.runtime import Runtime
from kubesat.agent.runtime.process import ProcessRuntime
from kubesat.agent.client import ApiClient, ApiError, Credentials, load_kubeconfig
from kubesat.agent.pods import REFRESH_TICK, PodManager
from kubesat.agent.volumereclaim import VolumeReclaimer
from kubesat.agent.node import POD_CIDR_WAIT, RENEW_INTERVAL, READY, SHUTTING_DOWN, NodeFacts, NodeHeartbeat, \
    default_address

BRIDGE_MODULE = "kubesat.agent.podnet"  # the bridge pod network, imported only when it is used

log = logging.getLogger("kubesat.agent")

# Retries of an unreachable server: the first after 1 s, doubling up to 30 s.
FIRST_RETRY = 1.0
MAX_RETRY = 30.0
# The refresh tick never gets shorter than this, however fast the test clock runs.
MIN_TICK = 0.05


class AgentError(Exception):
    """A reason the agent cannot start, in one line."""


@dataclass(frozen=True)
class AgentOptions:
    kubeconfig: Path
    node_name: str
    root: Path
    runtime: str = "none"
    address: str = ""
    # For tests: the token refresh rule's clock runs `clock_rate` times as fast as real time from the
    # agent's start, plus `clock_offset` seconds. Nothing sent to the server uses it.
    clock_rate: float = 1.0
    clock_offset: float = 0.0
    # The kubelet's --bootstrap-kubeconfig, --cert-dir (None: ROOT/pki) and --rotate-certificates (see certs).
    bootstrap_kubeconfig: Path | None = None
    cert_dir: Path | None = None
    rotate_certificates: bool = True
    # The kubelet's --port: its HTTPS API (logs, exec, attach, port-forward) for the API server; 0: any free port.
    port: int = kubeletapi.DEFAULT_PORT
    # The process runtime (see agent/runtime/process.py): uid 0 in containers, the host directories hostPath
    # volumes may use, and paths (besides the agent's root, cert dir and kubeconfigs) no container sees.
    allow_privileged: bool = False
    allow_host_paths: tuple[Path, ...] = ()
    hidden_paths: tuple[Path, ...] = ()
    # Where the kubernetes Service is relayed on 127.0.0.1 (see relay); 0: any free port.
    service_relay_port: int = 443
    # "host": pods share the node's network; "bridge": each pod its own network namespace with an address of
    # the Node's podCIDR, or of `pod_cidr` when the Node has none (see podnet; root and the process runtime only);
    # "auto": bridge where the machine allows it, else host.
    pod_network: str = "auto"
    pod_cidr: str = ""


def refresh_clock(rate: float = 1.0, offset: float = 0.0,
                  real: Callable[[], float] = time.time) -> Callable[[], float]:
    """The clock of the token refresh rule: real time, or (for tests) real time run fast and/or shifted."""
    if rate == 1.0 and offset == 0.0:
        return real
    start = real()

    def now() -> float:
        return start + (real() - start) * rate + offset
    return now


def refresh_tick(rate: float = 1.0) -> float:
    """How often the token clock is looked at: a clock run N times as fast is looked at N times as often."""
    return max(MIN_TICK, REFRESH_TICK / max(rate, 1.0))


def _now() -> datetime:
    return datetime.now(UTC)


async def run(opts: AgentOptions, stop: asyncio.Event | None = None) -> None:
    """Run the agent until `stop` is set (or a signal arrives)."""
    plan = _plan_pod_network(opts)
    boot_creds = None if opts.bootstrap_kubeconfig else load_kubeconfig(opts.kubeconfig)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is the server's audit log's job
    opts.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    clock = refresh_clock(opts.clock_rate, opts.clock_offset)
    store = certs.FileStore(opts.cert_dir or opts.root / "pki")
    creds = await _client_credentials(opts, boot_creds, store, stop)
    if creds is None:
        return
    api = ApiClient(creds, opts.root / "pki", user_agent=f"kubesat-agent/{opts.node_name}")
    runtime = _runtime(opts)
    facts = NodeFacts.read(opts.node_name, opts.address or default_address(), opts.root, opts.runtime)
    facts.pod_cidr = opts.pod_cidr if plan.mode == "bridge" else ""
    try:
        kubelet = kubeletapi.KubeletServer(facts.address, opts.port)
    except kubeletapi.KubeletApiError as e:
        raise AgentError(str(e)) from None
    facts.kubelet_port = kubelet.port
    heartbeat = NodeHeartbeat(api, facts, _now)
    try:
        if not await _retrying(heartbeat.register, stop, "register the node"):
            return
        log.info("node %s registered; heartbeats every %.0f s", opts.node_name, RENEW_INTERVAL)
        if opts.clock_rate != 1.0 or opts.clock_offset != 0.0:
            log.warning("test clock: token refresh and certificate rotation decisions run %g times as fast, "
                        "offset %+g s",
                        opts.clock_rate, opts.clock_offset)
        network = await _start_pod_network(opts, plan, heartbeat, runtime)
        relays = await _start_relays(api, creds.server, opts.service_relay_port, network) \
            if runtime.name == "process" else []
        # Other Services are proxied only where pods run processes that could call them.
        services = ServiceProxy(api, facts.address, network=network) if runtime.name == "process" else None
        containers = Containers(api, runtime, opts.root, facts.address,
                                lambda pod, c, *e: pods.events.record(pod_ref(pod, c), *e),
                                lambda: heartbeat.node, creds.server,
                                kubernetes=relays[0].address if relays else None,
                                host_kubernetes=relays[-1].address if relays else None,
                                service_hosts=services.hosts_entries if services is not None else None,
                                network=network, host_network_why=plan.host_why) \
            if runtime.name == "process" else None
        pods = PodManager(api, opts.node_name, opts.root, lambda: heartbeat.node, facts.address,
                          token_clock=clock, clock_offset=opts.clock_offset, tick=refresh_tick(opts.clock_rate),
                          runtime=containers)
        workers = [asyncio.create_task(pods.follow(stop)), asyncio.create_task(pods.keep_fresh(stop)),
                   asyncio.create_task(VolumeReclaimer(api, opts.node_name, opts.root).run(stop))]
        if services is not None and containers is not None:
            services.on_change = containers.refresh_hosts
            workers.append(asyncio.create_task(services.run(stop)))
        workers.append(asyncio.create_task(kubelet.serve(
            api, opts.node_name, store.cert_dir, creds.ca_pem, lambda: [p.obj for p in pods.pods.values()],
            lambda: getattr(pods, "runtime", None))))  # the pod manager's runtime, None when it runs no processes
        rotator = certs.rotator_for(api, creds, store, opts.node_name, clock, refresh_tick(opts.clock_rate)) \
            if opts.rotate_certificates else None
        if rotator is not None:
            workers.append(asyncio.create_task(rotator.run(stop)))
        try:
            while not await _wait(stop, RENEW_INTERVAL):
                await _retrying(_beat(heartbeat), stop, "renew the node's lease")
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await _close_runtime(pods.runtime or runtime)
            for relay in relays:
                await relay.stop()
            if network is not None:
                await asyncio.to_thread(network.close)
        try:
            await heartbeat.report(SHUTTING_DOWN)
        except (ApiError, httpx.HTTPError) as e:
            log.warning("could not mark node %s not ready on the way out: %s", opts.node_name, e)
        log.info("node %s stopped", opts.node_name)
    finally:
        await api.close()


@dataclass
class _NetworkPlan:
    mode: str  # "host" or "bridge"
    auto: bool = False  # chosen by `auto`: a bridge that cannot be made falls back to host
    host_why: str = ""  # why pods share the host's network, for their SharedHostNetwork Event


def _plan_pod_network(opts: AgentOptions) -> _NetworkPlan:
    """Settle `auto` (bridge where the machine allows it, else host, with one line saying why) and refuse, in
    one line, a bridge pod network this agent cannot have."""
    if opts.pod_network not in ("auto", "host", "bridge"):
        raise AgentError(f"unknown pod network {opts.pod_network!r} (auto, host or bridge)")
    if opts.pod_network == "auto":
        why = None if opts.runtime == "process" else "no pod network without processes"
        why = why or netns.unavailable()
        if why is None:
            return _NetworkPlan("bridge", auto=True)
        if opts.runtime == "process":
            log.warning("pod network: pods share the host's network (%s)", why)
        return _NetworkPlan("host", host_why=why)
    if opts.pod_network == "host":
        return _NetworkPlan("host", host_why="the agent runs with --pod-network host")
    if opts.runtime != "process":
        raise AgentError("--pod-network bridge needs --runtime process (pods that run no process have no network)")
    why = netns.unavailable()
    if why is not None:
        raise AgentError(f"--pod-network bridge: {why}")
    return _NetworkPlan("bridge")


async def _start_pod_network(opts: AgentOptions, plan: _NetworkPlan, heartbeat: NodeHeartbeat,
                             runtime: Runtime) -> PodNetwork | None:
    """The bridge pod network on the Node's podCIDR (--pod-cidr when it has none; without either, the one the
    server's node IPAM controller gives the new Node, waited for), after removing what an earlier run left; None
    for the host's network. A bridge chosen by `auto` that cannot be made falls back to the host's network with
    one line; one asked for stops the agent."""
    if plan.mode != "bridge" or not isinstance(runtime, ProcessRuntime):
        return None
    try:
        network = await _make_bridge(opts, heartbeat)
    except AgentError as e:
        if not plan.auto:
            raise AgentError(f"--pod-network bridge: {e}") from None
        log.warning("pod network: pods share the host's network (%s; --pod-network bridge to insist)", e)
        plan.mode, plan.host_why = "host", str(e)
        return None
    runtime.use_network(network)
    log.info("pod network: bridge %s, podCIDR %s, gateway %s", network.bridge, network.cidr, network.gateway)
    if network.nat_error:
        log.warning("pod network: pods reach this node and each other only: %s", network.nat_error)
    return network


async def _make_bridge(opts: AgentOptions, heartbeat: NodeHeartbeat) -> PodNetwork:
    try:
        cidr = await heartbeat.pod_cidr(timeout=0 if opts.pod_cidr else POD_CIDR_WAIT) or opts.pod_cidr
    except (ApiError, httpx.HTTPError) as e:
        raise AgentError(f"cannot read node {opts.node_name}'s podCIDR: {e}") from None
    if not cidr:
        raise AgentError(f"node {opts.node_name} has no spec.podCIDR after {POD_CIDR_WAIT:g} s (the server gives "
                         "none: --allocate-node-cidrs=false, or its --cluster-cidr is full) and no --pod-cidr was "
                         "given")
    try:
        # Loaded here, in bridge mode only: pyroute2 costs an agent on the host's network 8 MB and 0.14 s.
        bridge: Callable[[str, str], PodNetwork] = importlib.import_module(BRIDGE_MODULE).BridgeNetwork
        network = bridge(netns.tag_for(opts.node_name, opts.root), cidr)
        await asyncio.to_thread(network.setup)
    except (netns.PodNetworkError, OSError) as e:
        raise AgentError(f"cannot set up the bridge: {e}") from None
    return network


async def _start_relays(api: ApiClient, server: str, port: int, network: PodNetwork | None) -> list[Relay]:
    """The kubernetes Service's relays to the API server: on 127.0.0.1:443 (or a free port, with one warning
    line). With the bridge pod network, first one on the Service's ClusterIP on the bridge, where bridged pods
    reach it as they would in a cluster (the server's certificate names that address), then the loopback one on
    a free port, for hostNetwork pods (which are not on the bridge)."""
    url = urlsplit(server)
    upstream = (url.hostname or "127.0.0.1", url.port or 443)
    relays = []
    try:
        if network is not None:
            relay = Relay(*upstream, host=await _kubernetes_cluster_ip(api, network.gateway), port=port)
            relays.append(relay)
            await relay.start(await asyncio.to_thread(network.listen_socket, relay.host, port))
        relay = Relay(*upstream, host="127.0.0.1", port=port if network is None else 0)
        relays.append(relay)
        await relay.start()
    except OSError as e:
        for started in relays:
            await started.stop()
        raise AgentError(f"cannot relay the kubernetes Service on {relays[-1].host}:{relays[-1].wanted_port}: {e}") \
            from None
    for relay in relays:
        log.info("kubernetes Service relayed on %s:%d to %s", relay.host, relay.port, server)
    return relays


async def _kubernetes_cluster_ip(api: ApiClient, fallback: str) -> str:
    """The `kubernetes` Service's ClusterIP (the node's credentials may read Services), or `fallback` with one
    line when it cannot be read."""
    try:
        svc = await api.get("/api/v1/namespaces/default/services/kubernetes")
        ip = str((svc.get("spec") or {}).get("clusterIP") or "")
        ipaddress.IPv4Address(ip)
        return ip
    except (ApiError, httpx.HTTPError, ValueError) as e:
        log.warning("cannot read the kubernetes Service's ClusterIP (%s): pods reach the API server at %s",
                    e, fallback)
        return fallback


async def _close_runtime(runtime: Runtime) -> None:
    """Stop every container (a short grace), so that no process outlives the agent."""
    try:
        await runtime.close()
    except Exception as e:  # the agent is on its way out: one line, not a traceback
        log.warning("could not stop every container on the way out: %s", e)


def _runtime(opts: AgentOptions) -> Runtime:
    masks = [p for p in (opts.cert_dir, opts.kubeconfig, opts.bootstrap_kubeconfig) if p is not None]
    try:
        runtime = make_runtime(opts.runtime, opts.root, [*masks, *opts.hidden_paths], opts.allow_privileged,
                               opts.allow_host_paths, opts.address or default_address())
    except ValueError as e:
        raise AgentError(str(e)) from None
    log.info("container runtime: %s", opts.runtime)
    return runtime


async def _client_credentials(opts: AgentOptions, creds: Credentials | None, store: certs.FileStore,
                              stop: asyncio.Event) -> Credentials | None:
    """The credentials of --kubeconfig, after a TLS bootstrap when there is a bootstrap kubeconfig and the
    kubeconfig has no valid certificate (None: stopped meanwhile); with rotation on, the newest certificate
    in the cert dir wins, as the kubelet's certificate manager prefers its store."""
    if creds is None:
        assert opts.bootstrap_kubeconfig is not None
        try:
            if not await certs.bootstrap(opts.kubeconfig, opts.bootstrap_kubeconfig, store.cert_dir, opts.node_name,
                                         time.time(), stop, user_agent=f"kubesat-agent/{opts.node_name}"):
                return None
        except certs.CertificateError as e:
            raise AgentError(f"could not get a client certificate with the bootstrap kubeconfig: {e}") from None
        creds = load_kubeconfig(opts.kubeconfig)
    if opts.rotate_certificates:
        creds = certs.current_credentials(creds, store, opts.node_name, time.time())
    return creds


def _beat(heartbeat: NodeHeartbeat) -> Callable[[], Awaitable[None]]:
    async def beat() -> None:
        await heartbeat.renew_lease()
        await heartbeat.report(READY)
    return beat


async def _retrying(step: Callable[[], Awaitable[Any]], stop: asyncio.Event, what: str) -> bool:
    """Run `step` until it succeeds (True) or the agent is stopped (False), backing off between tries."""
    delay = FIRST_RETRY
    while True:
        try:
            await step()
            return True
        except ApiError as e:
            if e.code < 500 and e.code != 429:  # refused, not unreachable: retrying cannot help
                raise AgentError(f"could not {what}: {e}") from None
            log.warning("could not %s (retrying in %.0f s): %s", what, delay, e)
        except httpx.HTTPError as e:
            log.warning("could not %s (retrying in %.0f s): %s", what, delay, e)
        if await _wait(stop, delay):
            return False
        delay = min(delay * 2, MAX_RETRY)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if the agent was stopped meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
