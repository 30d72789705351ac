"""The `kubesat` command: parse flags, call a module, print one clear line on failure."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import tempfile
import time
from datetime import datetime, UTC
from pathlib import Path

import click
import httpx

from kubesat import __version__, logs
from kubesat.agent.client import ApiClient, ApiError, KubeconfigError, load_kubeconfig
from kubesat.agent.main import AgentError, AgentOptions
from kubesat.agent.main import run as run_agent
from kubesat.agent.runtime.process import runtime_available
from kubesat.agent.run import RunError, RunOptions, node_from_kubeconfig
from kubesat.agent.run import run as run_local
from kubesat.localnode import default_node_name
from kubesat.auth import bootstrap as bootstrap_tokens
from kubesat.pki import ClusterPKI, PKIError, kubeconfig_yaml
from kubesat.server import ServeError, ServeOptions, default_data_dir, serve as run
from kubesat.tokens.issuer import DEFAULT_ISSUER, TokenOptions, validate_options
from kubesat.tokens.keyring import KeyRing, KeyRingError


def _fail(message: str) -> None:
    click.echo(f"kubesat: error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubesat")
def main() -> None:
    """kubesat: the Kubernetes service-account token system as a standalone server."""


def _finite(value: float, flag: str) -> float:
    """A float flag that is a number (NaN passes click's range checks, as every comparison with it is false)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{flag} takes a finite number, got {value!r}")
    return value


def _parse_bool(value: str, flag: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise click.BadParameter(f"{flag} takes true or false, got {value!r}")


_UNITS = {"s": 1, "m": 60, "h": 3600}


def _parse_duration(value: str, flag: str) -> int:
    """Go-style durations kube-apiserver takes (24h, 1h30m, 90s) or plain seconds; returns seconds."""
    v = value.strip().lower()
    if v.isdigit():
        return int(v)
    parts = re.findall(r"(\d+)([hms])", v)
    if not parts or "".join(n + u for n, u in parts) != v:
        raise click.BadParameter(f"{flag} takes a duration like 24h, 90m or 3600s, got {value!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def _parse_timeout(value: str, flag: str) -> int:
    """A duration of at least one second: a zero timeout would turn the protection off."""
    seconds = _parse_duration(value, flag)
    if seconds < 1:
        raise click.BadParameter(f"{flag} must be at least 1s, got {value!r}")
    return seconds


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the store, keys and admin.kubeconfig live. Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("--bind", "bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=6443, show_default=True, help="HTTPS port.")
@click.option("--anonymous-auth", default="true", show_default=True, metavar="BOOL",
              help="Treat requests without credentials as system:anonymous (false: answer them 401).")
@click.option("--tls-san", "tls_sans", multiple=True, metavar="NAME",
              help="Extra DNS name or IP for the serving certificate (repeatable).")
@click.option("--event-history", type=click.IntRange(100, 10_000_000), default=10000, show_default=True,
              metavar="N", help="How many past changes a watch can resume from; older resourceVersions get 410 Gone.")
@click.option("--service-account-issuer", "issuers", multiple=True, metavar="URL",
              help="Token issuer (repeatable; the first signs). Default https://kubernetes.default.svc.cluster.local.")
@click.option("--api-audiences", "api_audiences", multiple=True, metavar="AUD[,AUD]",
              help="Audiences the API accepts (repeatable or comma-separated). Default: the issuers.")
@click.option("--service-account-max-token-expiration", "max_exp", default="0", metavar="DURATION",
              help="Cap on TokenRequest expiration (e.g. 24h, 90m, 3600s); 0 means no cap.")
@click.option("--service-account-extend-token-expiration", "extend", default="true", metavar="BOOL",
              show_default=True, help="Give pod-bound 3607 s tokens a one-year exp with a warnafter claim.")
@click.option("--service-account-key-file", "key_files", multiple=True, metavar="FILE",
              help="Extra PEM file of public keys (or certificates) whose tokens also verify (repeatable).")
@click.option("--service-account-jwks-uri", "jwks_uri", default="", metavar="URL",
              help="jwks_uri to publish in the discovery document (https). Default: this server's /openid/v1/jwks.")
@click.option("--service-account-signing-alg", "signing_alg", type=click.Choice(["RS256", "ES256"]),
              default="RS256", show_default=True, help="Algorithm of the signing key made on first start.")
@click.option("--service-account-lookup", "lookup", default="true", metavar="BOOL", show_default=True,
              help="Check that a legacy Secret token is still the one stored in its Secret.")
@click.option("--legacy-service-account-token-clean-up-period", "cleanup", default="0", metavar="DURATION",
              help="Mark auto-generated legacy token Secrets unused for this long invalid, delete them one period "
                   "later (e.g. 8760h); 0 (default) never cleans.")
@click.option("--token-signing-processes", "signing_processes", default=1, show_default=True, metavar="N",
              type=click.IntRange(0, 64),
              help="Helper processes that make RSA token signatures while the server is busy, so TokenRequests "
                   "do not stall it; 0 always signs in the server process.")
@click.option("--audit-log-path", "audit_log_path", default=None, metavar="FILE",
              help="Audit log (JSON lines, audit.k8s.io/v1 events). Default DATA_DIR/audit.log; '' turns it off.")
@click.option("--request-header-timeout", "header_timeout", default="32s", show_default=True, metavar="DURATION",
              help="Time a client has to finish the TLS handshake, and again to send a request's headers; "
                   "the connection is closed after it.")
@click.option("--idle-connection-timeout", "idle_timeout", default="90s", show_default=True, metavar="DURATION",
              help="Time a keep-alive connection may wait for its next request before it is closed.")
@click.option("--node-monitor-grace-period", "node_grace", default="50s", show_default=True, metavar="DURATION",
              help="How long a node may go without renewing its Lease before it is marked Ready=Unknown and "
                   "tainted unreachable (kube-controller-manager's flag and 1.32 default).")
@click.option("--node-startup-grace-period", "node_startup_grace", default="1m", show_default=True,
              metavar="DURATION", help="The same for a node that has never posted its status.")
@click.option("--no-node", "no_node", is_flag=True, default=False,
              help="Do not run the local node (a `kubesat agent` process beside the server that runs the pods "
                   "scheduled to it).")
@click.option("--node-name", "node_name", default="", metavar="NAME",
              help="Name of the local node. [default: this host's name]")
@click.option("--node-runtime", "node_runtime", type=click.Choice(["auto", "process", "none"]), default="auto",
              show_default=True,
              help="The local node's container runtime: process (pods' commands run as local processes, each in "
                   "its own sandbox), none (volumes and tokens only), or auto: process where the machine allows "
                   "it, else none.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
def serve(data_dir: Path | None, bind: str, port: int, anonymous_auth: str, tls_sans: tuple[str, ...],
          event_history: int, issuers: tuple[str, ...], api_audiences: tuple[str, ...], max_exp: str, extend: str,
          key_files: tuple[str, ...], jwks_uri: str, signing_alg: str, lookup: str, cleanup: str,
          signing_processes: int, audit_log_path: str | None, header_timeout: str, idle_timeout: str,
          node_grace: str, node_startup_grace: str, no_node: bool, node_name: str, node_runtime: str,
          log_level: str) -> None:
    """Serve the Kubernetes API over HTTPS on an embedded SQLite store, with a local node to run pods."""
    auds = tuple(a.strip() for v in api_audiences for a in v.split(",") if a.strip())
    tokens = TokenOptions(
        issuers=issuers or (DEFAULT_ISSUER,),
        api_audiences=auds,
        max_expiration=_parse_duration(max_exp, "--service-account-max-token-expiration"),
        extend_expiration=_parse_bool(extend, "--service-account-extend-token-expiration"),
        jwks_uri=jwks_uri,
        lookup=_parse_bool(lookup, "--service-account-lookup"),
        extra_key_files=key_files,
        signing_alg=signing_alg,
        signing_processes=signing_processes,
        legacy_cleanup_days=_parse_duration(cleanup, "--legacy-service-account-token-clean-up-period") / 86400,
    )
    problems = validate_options(tokens)
    if node_name and not no_node and (len(node_name) > 253 or default_node_name(node_name) != node_name):
        problems.append(f"--node-name {node_name!r}: must be a lowercase RFC 1123 subdomain (lower case "
                        "alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character)")
    if problems:
        _fail("; ".join(problems))

    logs.configure(log_level)
    opts = ServeOptions(
        data_dir=(data_dir or default_data_dir()).expanduser().absolute(),
        bind=bind,
        port=port,
        anonymous_auth=_parse_bool(anonymous_auth, "--anonymous-auth"),
        log_level=log_level,
        extra_sans=tls_sans,
        event_history=event_history,
        tokens=tokens,
        audit_log_path=audit_log_path,
        request_header_timeout=_parse_timeout(header_timeout, "--request-header-timeout"),
        idle_connection_timeout=_parse_timeout(idle_timeout, "--idle-connection-timeout"),
        node_monitor_grace_period=_parse_timeout(node_grace, "--node-monitor-grace-period"),
        node_startup_grace_period=_parse_timeout(node_startup_grace, "--node-startup-grace-period"),
        node_name="" if no_node else node_name or default_node_name(),
    )

    if opts.node_name:
        opts.node_runtime = _local_runtime(node_runtime)

    def ready(kubeconfig: str) -> None:
        node = f"; node {opts.node_name} (runtime {opts.node_runtime})" if opts.node_name else ""
        click.echo(f"kubesat ready at {opts.url}; kubeconfig: {kubeconfig}{node}", err=False)
        sys.stdout.flush()

    try:
        code = run(opts, on_ready=ready)
    except (ServeError, PKIError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot start: {e}")
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


def _local_runtime(choice: str) -> str:
    """The local node's runtime: `process` when chosen or (auto) when the machine allows it, else `none`."""
    if choice == "none":
        return "none"
    why = runtime_available()
    if why is None:
        return "process"
    if choice == "process":
        _fail(f"--node-runtime process: {why}")
    click.echo(f"kubesat: the local node runs no processes (runtime none): {why}", err=True)
    return "none"


@main.command()
@click.option("--node", "node", default="", metavar="NAME",
              help="Node name: the certificate is for user system:node:NAME in group system:nodes.")
@click.option("--bootstrap", is_flag=True, default=False,
              help="Instead of --node: create a bootstrap token (as `kubeadm token create`, through the API with "
                   "the admin kubeconfig) and print a bootstrap kubeconfig for `kubesat agent "
                   "--bootstrap-kubeconfig`.")
@click.option("--ttl", default="24h", show_default=True, metavar="DURATION",
              help="With --bootstrap: how long the token is valid before it is deleted (0: it never expires).")
@click.option("--kubeconfig", "admin_kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="With --bootstrap: the kubeconfig that creates the token. "
                                   "Default: the data dir's admin.kubeconfig.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The server's data dir (its CA signs). Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("--server", "server_url", default="", metavar="URL",
              help="API server address to write. Default: the one in the data dir's admin.kubeconfig.")
def kubeconfig(node: str, bootstrap: bool, ttl: str, admin_kubeconfig: Path | None, data_dir: Path | None,
               server_url: str) -> None:
    """Print a kubeconfig with node credentials, as a kubelet's (the Node authorizer limits what it may do),
    or with --bootstrap one with a new bootstrap token, to join a node."""
    if bool(node) == bootstrap:
        _fail("give either --node NAME or --bootstrap")
    data = (data_dir or default_data_dir()).expanduser().absolute()
    try:
        if bootstrap:
            doc = asyncio.run(_bootstrap_kubeconfig(admin_kubeconfig or ClusterPKI(data).kubeconfig,
                                                    _parse_duration(ttl, "--ttl"), server_url))
        else:
            doc = ClusterPKI(data).node_kubeconfig(node, server_url)
    except PKIError as e:
        _fail(str(e))
        return
    except KubeconfigError as e:
        _fail(f"kubeconfig: {e}")
        return
    except (ApiError, httpx.HTTPError) as e:
        _fail(f"could not create the bootstrap token: {e}")
        return
    click.echo(doc.decode(), nl=False)


async def _bootstrap_kubeconfig(admin: Path, ttl: int, server_url: str) -> bytes:
    """Create a bootstrap token Secret through the API; a kubeconfig that authenticates with the token."""
    creds = load_kubeconfig(admin)
    token = bootstrap_tokens.generate_token()
    with tempfile.TemporaryDirectory() as key_dir:
        api = ApiClient(creds, Path(key_dir), "kubesat-kubeconfig")
        try:
            await api.create(f"/api/v1/namespaces/{bootstrap_tokens.NAMESPACE}/secrets",
                             bootstrap_tokens.token_secret(token, ttl, time.time()))
        finally:
            await api.close()
    return kubeconfig_yaml(server_url or creds.server, creds.ca_pem, "tls-bootstrap-token-user", token=token)


@main.command()
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
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--test-clock-rate", "clock_rate", type=click.FloatRange(min=0.0, max=1e6, min_open=True), default=1.0,
              callback=lambda _ctx, param, v: _finite(v, param.opts[0]),
              envvar="KUBESAT_AGENT_CLOCK_RATE", metavar="N",
              help="For tests only: the clock of the token refresh and certificate rotation rules runs N times "
                   "as fast as real time "
                   "(env KUBESAT_AGENT_CLOCK_RATE). Timestamps sent to the server stay real.")
@click.option("--test-clock-offset", "clock_offset", type=click.FloatRange(min=-1e10, max=1e10), default=0.0,
              callback=lambda _ctx, param, v: _finite(v, param.opts[0]),
              envvar="KUBESAT_AGENT_CLOCK_OFFSET", metavar="SECONDS",
              help="For tests only: the clock of the token refresh and certificate rotation rules is shifted "
                   "by SECONDS "
                   "(env KUBESAT_AGENT_CLOCK_OFFSET).")
def agent(kubeconfig: Path, bootstrap_kubeconfig: Path | None, cert_dir: Path | None, rotate_certificates: str,
          node_name: str, root_dir: Path | None, node_ip: str, port: int, runtime: str, allow_privileged: bool,
          allow_host_paths: tuple[Path, ...], hidden_paths: tuple[Path, ...], service_relay_port: int,
          log_level: str, clock_rate: float, clock_offset: float) -> None:
    """Run a node agent: register the Node, keep its Lease and status fresh, write and refresh the volumes
    of the pods bound to it until SIGTERM."""
    logs.configure(log_level)
    root = root_dir or Path.home() / ".kubesat" / "agent" / node_name
    try:
        asyncio.run(run_agent(AgentOptions(
            kubeconfig=kubeconfig, node_name=node_name, root=root, address=node_ip, port=port, clock_rate=clock_rate,
            clock_offset=clock_offset, bootstrap_kubeconfig=bootstrap_kubeconfig, cert_dir=cert_dir,
            rotate_certificates=_parse_bool(rotate_certificates, "--rotate-certificates"), runtime=runtime,
            allow_privileged=allow_privileged, allow_host_paths=tuple(p.absolute() for p in allow_host_paths),
            hidden_paths=tuple(p.absolute() for p in hidden_paths), service_relay_port=service_relay_port)))
    except KubeconfigError as e:
        _fail(f"kubeconfig: {e}")
    except AgentError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"agent root {root}: {e}")


@main.group()
def keys() -> None:
    """Service-account signing keys: rotate them, list them."""


def _keyring(data_dir: Path | None) -> KeyRing:
    return KeyRing((data_dir or default_data_dir()).expanduser().absolute())


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@keys.command("rotate")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The server's data dir. Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("--service-account-signing-alg", "alg", type=click.Choice(["RS256", "ES256"]), default="RS256",
              show_default=True, help="Algorithm of the new key.")
def keys_rotate(data_dir: Path | None, alg: str) -> None:
    """Make a new signing key; the old one stays accepted until its last token can have expired.

    A running server picks the new key up within a second.
    """
    try:
        old, new, not_after = _keyring(data_dir).rotate(alg)
    except KeyRingError as e:
        _fail(str(e))
        return
    until = "forever (it signed legacy Secret tokens)" if not_after is None else _when(not_after)
    click.echo(f"rotated service-account signing key: {old} -> {new}; {old} is accepted until {until}")


@keys.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The server's data dir. Default: $KUBESAT_DATA_DIR, else ~/.kubesat.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def keys_list(data_dir: Path | None, output: str) -> None:
    """The signing key and every retired key still accepted."""
    try:
        rows = _keyring(data_dir).rows()
    except KeyRingError as e:
        _fail(str(e))
        return
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    widths = (44, 6, 10, 21)
    headers = ("KID", "ALG", "STATUS", "CREATED")
    click.echo("".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "NOT-AFTER")
    for r in rows:
        cells = (r["kid"], r["alg"], r["status"], _when(r["created"]))
        click.echo("".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + _when(r["not_after"]))


class _OneLineUsage(click.Command):
    """A usage error in one line (`kubesat: error: No such option: --x`), as kubesat's other errors."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: object) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            _fail(f"{e.format_message()} (kubesat run -h)")
            raise


@main.command("run", cls=_OneLineUsage, context_settings={"allow_interspersed_args": False})
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
        _fail(str(e))
        return
    sys.exit(code)


if __name__ == "__main__":
    main()
