"""`kubesat serve` and `kubesat kubeconfig`: the server, and credentials its CA signs."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import click
import httpx

from kubesat import logs
from kubesat.agent.client import ApiClient, ApiError, KubeconfigError, load_kubeconfig
from kubesat.agent.runtime.process import runtime_available
from kubesat.auth import bootstrap as bootstrap_tokens
from kubesat.cli.flags import fail, parse_bool, parse_duration, parse_timeout
from kubesat.controllers.nodeipam import DEFAULT_CLUSTER_CIDR, CIDRError
from kubesat.controllers.nodeipam import check_options as check_node_cidrs
from kubesat.localnode import default_node_name
from kubesat.paths import default_data_dir
from kubesat.pki import ClusterPKI, PKIError, kubeconfig_yaml
from kubesat.server import ServeError, ServeOptions, serve as run
from kubesat.tokens.issuer import DEFAULT_ISSUER, TokenOptions, validate_options


@click.command()
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
@click.option("--allocate-node-cidrs", "allocate_cidrs", default="true", show_default=True, metavar="BOOL",
              is_flag=False, flag_value="true",
              help="Give each Node without spec.podCIDR a subnet of --cluster-cidr, as kube-controller-manager's "
                   "node IPAM controller does (false: Nodes get none).")
@click.option("--cluster-cidr", "cluster_cidr", default=DEFAULT_CLUSTER_CIDR, show_default=True, metavar="CIDR",
              help="The pods' range the nodes' podCIDRs are taken from (kubeadm's and flannel's 10.244.0.0/16).")
@click.option("--node-cidr-mask-size", "node_cidr_mask_size", type=int, default=None, metavar="N",
              help="Prefix length of each node's podCIDR.  [default: 24 for IPv4, 64 for IPv6]")
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
@click.option("--node-pod-network", "node_pod_network", type=click.Choice(["auto", "host", "bridge"]),
              default="auto", show_default=True,
              help="The local node's pod network (kubesat agent's --pod-network): bridge (root, runtime process) "
                   "gives each pod its own network namespace and an address of the node's podCIDR; host: pods share "
                   "this machine's network; auto: bridge where the machine allows it, else host.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
def serve(data_dir: Path | None, bind: str, port: int, anonymous_auth: str, tls_sans: tuple[str, ...],
          event_history: int, issuers: tuple[str, ...], api_audiences: tuple[str, ...], max_exp: str, extend: str,
          key_files: tuple[str, ...], jwks_uri: str, signing_alg: str, lookup: str, cleanup: str,
          signing_processes: int, audit_log_path: str | None, header_timeout: str, idle_timeout: str,
          node_grace: str, node_startup_grace: str, allocate_cidrs: str, cluster_cidr: str,
          node_cidr_mask_size: int | None, no_node: bool, node_name: str, node_runtime: str, node_pod_network: str,
          log_level: str) -> None:
    """Serve the Kubernetes API over HTTPS on an embedded SQLite store, with a local node to run pods."""
    auds = tuple(a.strip() for v in api_audiences for a in v.split(",") if a.strip())
    tokens = TokenOptions(
        issuers=issuers or (DEFAULT_ISSUER,),
        api_audiences=auds,
        max_expiration=parse_duration(max_exp, "--service-account-max-token-expiration"),
        extend_expiration=parse_bool(extend, "--service-account-extend-token-expiration"),
        jwks_uri=jwks_uri,
        lookup=parse_bool(lookup, "--service-account-lookup"),
        extra_key_files=key_files,
        signing_alg=signing_alg,
        signing_processes=signing_processes,
        legacy_cleanup_days=parse_duration(cleanup, "--legacy-service-account-token-clean-up-period") / 86400,
    )
    problems = validate_options(tokens)
    if node_name and not no_node and (len(node_name) > 253 or default_node_name(node_name) != node_name):
        problems.append(f"--node-name {node_name!r}: must be a lowercase RFC 1123 subdomain (lower case "
                        "alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character)")
    allocate = parse_bool(allocate_cidrs, "--allocate-node-cidrs")
    mask = 0
    if allocate:
        try:
            mask = check_node_cidrs(cluster_cidr, node_cidr_mask_size)[1]
        except CIDRError as e:
            problems.append(str(e))
    if problems:
        fail("; ".join(problems))

    logs.configure(log_level)
    opts = ServeOptions(
        data_dir=(data_dir or default_data_dir()).expanduser().absolute(),
        bind=bind,
        port=port,
        anonymous_auth=parse_bool(anonymous_auth, "--anonymous-auth"),
        log_level=log_level,
        extra_sans=tls_sans,
        event_history=event_history,
        tokens=tokens,
        audit_log_path=audit_log_path,
        request_header_timeout=parse_timeout(header_timeout, "--request-header-timeout"),
        idle_connection_timeout=parse_timeout(idle_timeout, "--idle-connection-timeout"),
        node_monitor_grace_period=parse_timeout(node_grace, "--node-monitor-grace-period"),
        node_startup_grace_period=parse_timeout(node_startup_grace, "--node-startup-grace-period"),
        node_name="" if no_node else node_name or default_node_name(),
        allocate_node_cidrs=allocate,
        cluster_cidr=cluster_cidr,
        node_cidr_mask_size=mask,
    )

    if opts.node_name:
        opts.node_runtime = _local_runtime(node_runtime)
        opts.node_pod_network = node_pod_network

    def ready(kubeconfig: str) -> None:
        node = f"; node {opts.node_name} (runtime {opts.node_runtime})" if opts.node_name else ""
        click.echo(f"kubesat ready at {opts.url}; kubeconfig: {kubeconfig}{node}", err=False)
        sys.stdout.flush()

    try:
        code = run(opts, on_ready=ready)
    except (ServeError, PKIError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot start: {e}")
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
        fail(f"--node-runtime process: {why}")
    click.echo(f"kubesat: the local node runs no processes (runtime none): {why}", err=True)
    return "none"


@click.command()
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
        fail("give either --node NAME or --bootstrap")
    data = (data_dir or default_data_dir()).expanduser().absolute()
    try:
        if bootstrap:
            doc = asyncio.run(_bootstrap_kubeconfig(admin_kubeconfig or ClusterPKI(data).kubeconfig,
                                                    parse_duration(ttl, "--ttl"), server_url))
        else:
            doc = ClusterPKI(data).node_kubeconfig(node, server_url)
    except PKIError as e:
        fail(str(e))
        return
    except KubeconfigError as e:
        fail(f"kubeconfig: {e}")
        return
    except (ApiError, httpx.HTTPError) as e:
        fail(f"could not create the bootstrap token: {e}")
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
