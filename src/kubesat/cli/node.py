"""`kubesat agent` and `kubesat run`: the node side. Loaded without the server's packages, so that an agent
process holds only what an agent needs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from kubesat import logs
from kubesat.agent.client import KubeconfigError
from kubesat.agent.main import AgentError, AgentOptions
from kubesat.agent.main import run as run_agent
from kubesat.agent.run import RunError, RunOptions, node_from_kubeconfig
from kubesat.agent.run import run as run_local
from kubesat.cli.flags import OneLineUsage, fail, finite, parse_bool
from kubesat.paths import default_data_dir


@click.command()
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), required=True, metavar="FILE",
              help="Kubeconfig of the node's identity (`kubesat kubeconfig --node NAME` makes one). With "
                   "--bootstrap-kubeconfig, written by the agent when missing or its certificate has expired.")
@click.option("--bootstrap-kubeconfig", "bootstrap_kubeconfig", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="Kubeconfig with a bootstrap token (`kubesat kubeconfig --bootstrap` makes one): when --kubeconfig "
                   "is missing or expired, get a node client certificate with it through a CSR and write "
                   "--kubeconfig.")
@click.option("--cert-dir", "cert_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Where the client certificate and key are kept. [default: ROOT/pki]")
@click.option("--rotate-certificates", "rotate_certificates", default="true", show_default=True, metavar="BOOL",
              is_flag=False, flag_value="true",
              help="Renew the node's client certificate through a CSR when it nears expiry (70-90 % of its life).")
@click.option("--node-name", "node_name", required=True, metavar="NAME", help="Name of the Node to register.")
@click.option("--root", "root_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Directory for the agent's state and the pods' volumes (the kubelet's --root-dir). "
                   "[default: ~/.kubesat/agent/NAME]")
@click.option("--node-ip", "node_ip", default="", metavar="IP", help="Address the Node reports. [default: loopback]")
@click.option("--port", type=click.IntRange(0, 65535), default=10250, show_default=True,
              help="The kubelet API's HTTPS port on the node's address (logs, exec, attach, port-forward for the API "
                   "server); 0 picks a free one.")
@click.option("--runtime", type=click.Choice(["process", "none"]), default="none", show_default=True,
              help="process: run each container's command as a local process in its own sandbox (namespaces); "
                   "none: no processes, containers are reported running once their volumes are written.")
@click.option("--allow-privileged", "allow_privileged", is_flag=True,
              help="Let containers run as root (runAsUser: 0) or privileged. [default: never]")
@click.option("--allow-host-path", "allow_host_paths", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="A directory under which hostPath volumes may point (repeatable). [default: none]")
@click.option("--hide-path", "hidden_paths", multiple=True, metavar="PATH", type=click.Path(path_type=Path),
              help="A path no container sees (repeatable), e.g. the server's data directory; the agent's root, "
                   "cert dir and kubeconfigs are always hidden.")
@click.option("--service-relay-port", "service_relay_port", type=click.IntRange(0, 65535), default=443,
              show_default=True, metavar="N",
              help="With --runtime process: the port on 127.0.0.1 where the kubernetes Service is relayed to the API "
                   "server (https://kubernetes.default.svc needs 443); 0 picks a free one. A taken port falls back "
                   "to a free one with a warning.")
@click.option("--pod-network", "pod_network", type=click.Choice(["auto", "host", "bridge"]), default="auto",
              show_default=True,
              help="With --runtime process: host: pods share the node's network (its address, its ports); bridge "
                   "(root only): each pod its own network namespace on a bridge, with an address of the Node's "
                   "podCIDR (or --pod-cidr), its traffic beyond the node masqueraded; auto: bridge where the "
                   "machine allows it, else host (one line says why).")
@click.option("--pod-cidr", "pod_cidr", default="", metavar="CIDR",
              help="With --pod-network bridge: the pods' IPv4 range when the Node has no spec.podCIDR (registered "
                   "as the new Node's podCIDR), e.g. 10.244.1.0/24.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--test-clock-rate", "clock_rate", type=click.FloatRange(min=0.0, max=1e6, min_open=True), default=1.0,
              callback=lambda _ctx, param, v: finite(v, param.opts[0]),
              envvar="KUBESAT_AGENT_CLOCK_RATE", metavar="N",
              help="For tests only: the clock of the token refresh and certificate rotation rules runs N times "
                   "as fast as real time "
                   "(env KUBESAT_AGENT_CLOCK_RATE). Timestamps sent to the server stay real.")
@click.option("--test-clock-offset", "clock_offset", type=click.FloatRange(min=-1e10, max=1e10), default=0.0,
              callback=lambda _ctx, param, v: finite(v, param.opts[0]),
              envvar="KUBESAT_AGENT_CLOCK_OFFSET", metavar="SECONDS",
              help="For tests only: the clock of the token refresh and certificate rotation rules is shifted "
                   "by SECONDS "
                   "(env KUBESAT_AGENT_CLOCK_OFFSET).")
def agent(kubeconfig: Path, bootstrap_kubeconfig: Path | None, cert_dir: Path | None, rotate_certificates: str,
          node_name: str, root_dir: Path | None, node_ip: str, port: int, runtime: str, allow_privileged: bool,
          allow_host_paths: tuple[Path, ...], hidden_paths: tuple[Path, ...], service_relay_port: int,
          pod_network: str, pod_cidr: str, log_level: str, clock_rate: float, clock_offset: float) -> None:
    """Run a node agent: register the Node, keep its Lease and status fresh, write and refresh the volumes
    of the pods bound to it until SIGTERM."""
    logs.configure(log_level)
    root = root_dir or Path.home() / ".kubesat" / "agent" / node_name
    try:
        asyncio.run(run_agent(AgentOptions(
            kubeconfig=kubeconfig, node_name=node_name, root=root, address=node_ip, port=port, clock_rate=clock_rate,
            clock_offset=clock_offset, bootstrap_kubeconfig=bootstrap_kubeconfig, cert_dir=cert_dir,
            rotate_certificates=parse_bool(rotate_certificates, "--rotate-certificates"), runtime=runtime,
            allow_privileged=allow_privileged, allow_host_paths=tuple(p.absolute() for p in allow_host_paths),
            hidden_paths=tuple(p.absolute() for p in hidden_paths), service_relay_port=service_relay_port,
            pod_network=pod_network, pod_cidr=pod_cidr)))
    except KubeconfigError as e:
        fail(f"kubeconfig: {e}")
    except AgentError as e:
        fail(str(e))
    except OSError as e:
        fail(f"agent root {root}: {e}")


@click.command("run", cls=OneLineUsage, context_settings={"allow_interspersed_args": False})
@click.option("-n", "--namespace", default=None, metavar="NS", help="The pod's namespace. Default: default.")
@click.option("--serviceaccount", "service_account", default=None, metavar="SA",
              help="Create a pod for this ServiceAccount (the default when neither --pod nor -f is given: "
                   "the namespace's `default`).")
@click.option("--pod", "pod", default=None, metavar="NAME", help="Use this existing pod (left as it is).")
@click.option("-f", "--filename", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Create this Pod manifest (its containers' commands, probes and hooks dropped).")
@click.option("-c", "--container", default=None, metavar="NAME",
              help="The container whose mounts and environment the command gets. Default: the first.")
@click.option("--audience", "audiences", multiple=True, metavar="A",
              help="Also mount a token for this audience at /var/run/secrets/tokens/<A> (repeatable).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Who creates the pod and reads its environment. Default: the data dir's admin.kubeconfig.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The server's data dir, whose local node runs the pod. Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("--node", default=None, metavar="NAME",
              help="The node to run the pod on; its agent must run on this machine. Default: the local node.")
@click.option("--root", "root_dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="That node's agent root (its --root). Default: the data dir's node/.")
@click.option("--timeout", type=click.FloatRange(min=0.0, max=3600.0, min_open=True), default=60.0,
              show_default=True, metavar="SECONDS", help="How long to wait for the pod to run.")
@click.argument("command", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
def run_command(namespace: str | None, service_account: str | None, pod: str | None, file: Path | None,
                container: str | None, audiences: tuple[str, ...], kubeconfig: Path | None, data_dir: Path | None,
                node: str | None, root_dir: Path | None, timeout: float, command: tuple[str, ...]) -> None:
    """Run a local command in a pod's sandbox on this machine: its volumes (the service-account token) at their
    mountPaths, its /etc/hosts and service variables, your own user, directory and environment. The pod made
    for it is deleted when the command ends; its exit code is kubesat run's."""
    data = (data_dir or default_data_dir()).expanduser().absolute()
    try:
        code = run_local(RunOptions(
            command=command, kubeconfig=(kubeconfig or data / "admin.kubeconfig").absolute(),
            node=node or node_from_kubeconfig(data / "node.kubeconfig"),
            root=(root_dir or data / "node").absolute(), namespace=namespace, service_account=service_account,
            pod=pod, file=file, container=container, audiences=audiences, hide=(data,), timeout=timeout))
    except RunError as e:
        fail(str(e))
        return
    sys.exit(code)
