"""Features that plug into the API beyond plain storage: admission, reviews, token endpoints."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from kubesat import errors
from kubesat.api import eviction_api, node_api, quota_api, rbac_api, scale_api, services_api, streams, tokens_api
from kubesat.api import proxy_api
from kubesat.api import workloads_api
from kubesat.api.app import App, Request, Response, json_response
from kubesat.api.system import KUBERNETES_VERSION
from kubesat.api.resources import ResourceHandler, status_success
from kubesat.auth.admission import admit_pod_create
from kubesat.auth.authz import ALLOW, Attributes
from kubesat.auth.bootstrap import BootstrapTokenAuthenticator
from kubesat.auth.admissionchain import DynamicAdmission
from kubesat.auth.conversionwebhook import ConversionWebhooks
from kubesat.auth.serviceaccount import ServiceAccountAuthenticator
from kubesat.auth.user import AUTHENTICATED, UserInfo
from kubesat.controllers.cronjob import CronJobController
from kubesat.controllers.crd import CRDController
from kubesat.controllers.daemonset import DaemonSetController
from kubesat.controllers.csrapprover import CSRApprovingController
from kubesat.controllers.csrsigner import CSRSigningController
from kubesat.controllers.deployment import DeploymentController
from kubesat.controllers.disruption import DisruptionController
from kubesat.controllers.gc import GarbageCollector
from kubesat.controllers.endpoints import EndpointsController
from kubesat.controllers.job import JobController
from kubesat.controllers.kubernetesservice import KubernetesServiceController
from kubesat.controllers.mirrorpod import MirrorPodPublisher
from kubesat.controllers.legacytokens import LegacyTokenCleaner, LegacyTokenTracking
from kubesat.controllers import nodeipam
from kubesat.controllers.nodelifecycle import NodeLifecycleController
from kubesat.controllers.podgc import PodGCController
from kubesat.controllers.tainteviction import TaintEvictionController
from kubesat.controllers.resourcequota import ResourceQuotaController
from kubesat.controllers.replicaset import ReplicaSetController
from kubesat.controllers.replicationcontroller import ReplicationManager
from kubesat.controllers.scheduler import Scheduler, bind_pod
from kubesat.controllers.statefulset import StatefulSetController
from kubesat.controllers.tokencleaner import TokenCleaner
from kubesat.controllers.tokens import TokensController
from kubesat.controllers.workload import Creator, PodCreator
from kubesat.controllers.volumebinding import PersistentVolumeController, pick_default_class
from kubesat.pki import ClusterPKI
from kubesat.registry import csr as csrs
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import Registry
from kubesat.tokens.issuer import TokenIssuer, TokenOptions
from kubesat.tokens.signer import ProcessSigner
from kubesat.tokens.source import DataDirKeySource

SERVICEACCOUNTS = builtin_kind("v1", "ServiceAccount")
PVCS = builtin_kind("v1", "PersistentVolumeClaim")
STORAGE_CLASSES = builtin_kind("storage.k8s.io/v1", "StorageClass")
CSRS = builtin_kind("certificates.k8s.io/v1", "CertificateSigningRequest")


class WiringOptions(Protocol):
    """What the wiring reads of the server's options (kubesat.server.ServeOptions)."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def tokens(self) -> TokenOptions: ...

    @property
    def external_address(self) -> str: ...

    @property
    def node_monitor_grace_period(self) -> float: ...

    @property
    def node_startup_grace_period(self) -> float: ...

    @property
    def node_name(self) -> str: ...

    @property
    def command_line(self) -> list[str]: ...

    @property
    def allocate_node_cidrs(self) -> bool: ...

    @property
    def cluster_cidr(self) -> str: ...

    @property
    def node_cidr_mask_size(self) -> int: ...


class Controller(Protocol):
    """A controller the server starts after the store is open and stops at shutdown."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def install(app: App, resources: ResourceHandler, registry: Registry, opts: WiringOptions, pki: ClusterPKI) -> None:
    async def service_account_admission(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if res.kind != "Pod" or res.group:
            return
        sa_name = (obj.get("spec") or {}).get("serviceAccountName") or "default"
        sa = await registry.get_or_none(SERVICEACCOUNTS, ns, sa_name)
        # The default ServiceAccount of a new namespace may lag behind by a moment.
        tries = 10 if sa_name == "default" else 1
        while sa is None and tries > 1:
            tries -= 1
            await asyncio.sleep(0.1 + random.random() * 0.1)
            sa = await registry.get_or_none(SERVICEACCOUNTS, ns, sa_name)
        obj.setdefault("metadata", {})["namespace"] = ns
        admit_pod_create(obj, lambda n, s: sa if s == sa_name else None)

    resources.admission.append(service_account_admission)
    resources.webhooks = DynamicAdmission(registry, authorizer=lambda: app.authorizer)
    app.on_shutdown.append(resources.webhooks.aclose)
    resources.conversion_webhooks = ConversionWebhooks(resources.webhooks)

    async def self_subject_review(req: Request, res: ResourceInfo, body: dict[str, Any]) -> Response:
        assert req.user is not None  # App._handle authenticates (or refuses) before any handler runs
        return json_response(201, {
            "kind": "SelfSubjectReview",
            "apiVersion": res.api_version,
            "metadata": {"creationTimestamp": None},
            "status": {"userInfo": req.user.to_api()},
        }, req)

    resources.create_handlers[("authentication.k8s.io", "selfsubjectreviews", "")] = self_subject_review
    _install_binding(resources, registry)
    services_api.install(resources, registry)
    scale_api.install(resources, registry)
    workloads_api.install(resources)
    eviction_api.install(resources, registry)
    _install_csr(app, resources)
    _install_tokens(app, resources, registry, opts, pki)
    app.state["rbac"] = rbac_api.install(app, resources, registry)
    app.state["node_graph"] = node_api.install(app, resources, registry, app.state["rbac"])
    _install_claims(app, resources, registry)
    app.state["streams"] = streams.install(registry, pki, resources.connect_handlers, app.on_shutdown)
    app.state["proxy"] = proxy_api.install(app, resources, registry, app.state["streams"])
    # Last: ResourceQuota counts objects as the other steps left them.
    app.state["quota_charges"] = quota_api.install(resources, registry)
    app.state["resources"] = resources


def _install_binding(resources: ResourceHandler, registry: Registry) -> None:
    """pods/NAME/binding and namespaces/NS/bindings: assign a pod to a node (201 with a Success Status)."""

    async def binding(req: Request, res: ResourceInfo, body: dict[str, Any]) -> Response:
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        ns = req.info.namespace
        if meta.get("namespace") and meta["namespace"] != ns:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                     "on the request")
        if req.info.subresource and meta.get("name", "") != req.info.name:
            raise errors.bad_request("name in URL does not match name in Binding object")
        dry_run = req.query.get("dryRun") or []
        for v in dry_run:
            if v != "All":
                raise errors.bad_request(f'Invalid dry run value: "{v}". Supported values: "All"')
        await bind_pod(registry, ns, body, dry_run=bool(dry_run))
        status = status_success()
        status["code"] = 201
        return json_response(201, status, req)

    resources.create_handlers[("", "pods", "binding")] = binding
    resources.create_handlers[("", "bindings", "")] = binding


def _install_claims(app: App, resources: ResourceHandler, registry: Registry) -> None:
    """The DefaultStorageClass admission plugin, and the Node authorizer's claim -> volume edges."""

    async def default_storage_class(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if res is not PVCS:
            return
        spec = obj.get("spec")
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        # An explicit class, even "" (no class), and the beta annotation are the user's choice.
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None \
                or "volume.beta.kubernetes.io/storage-class" in annotations:
            return
        chosen = pick_default_class((await registry.list(STORAGE_CLASSES, "")).items)
        if chosen:
            spec["storageClassName"] = chosen

    resources.admission.append(default_storage_class)
    graph = app.state["node_graph"]

    def on_write(info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info is PVCS:
            graph.put_claim(obj)

    def on_delete(info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info is PVCS:
            graph.delete_claim(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    async def load() -> None:
        for pvc in (await registry.list(PVCS, "")).items:
            graph.put_claim(pvc)

    registry.on_write.append(on_write)
    registry.on_delete.append(on_delete)
    app.on_startup.append(load)


def _install_csr(app: App, resources: ResourceHandler) -> None:
    """CertificateSigningRequests: the requester recorded in spec (from the request, never the body), and the
    certificates admission plugins: /approval needs `approve` on the signer, a certificate via /status `sign`."""

    async def requester(req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        if res is CSRS and req.user is not None:
            csrs.set_requester(obj, req.user.name, req.user.uid, req.user.groups, req.user.extra)

    def signer_permission(req: Request, res: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if res is not CSRS or old is None or req.user is None:
            return
        sub = req.info.subresource
        if sub == "approval":
            verb = "approve"
        elif sub == "status" and csrs.certificate_bytes(new) != csrs.certificate_bytes(old):
            verb = "sign"
        else:
            return
        signer = str((new.get("spec") or {}).get("signerName") or "")
        decider = app.state["rbac"].decider
        for name in (signer, signer.split("/", 1)[0] + "/*"):
            attrs = Attributes(req.user, verb, True, "", csrs.GROUP, "*", "signers", "", name)
            if decider.authorize(attrs)[0] == ALLOW:
                return
        raise errors.forbidden(res.plural, req.info.name,
                               f'user not permitted to {verb} requests with signerName "{signer}"', res.group)

    resources.admission.append(requester)
    resources.write_checks.append(signer_permission)


def _install_tokens(
    app: App, resources: ResourceHandler, registry: Registry, opts: WiringOptions, pki: ClusterPKI
) -> None:
    options = opts.tokens
    keys = DataDirKeySource(opts.data_dir, options.extra_key_files)
    signer = None
    if options.signing_processes > 0:
        signer = ProcessSigner(options.signing_processes, busy=lambda: app.handling > 1)

        async def close_signer() -> None:
            await signer.close()

        app.on_shutdown.append(close_signer)
    issuer = TokenIssuer(keys, options, signer=signer)
    sa_auth = ServiceAccountAuthenticator(registry, keys, options)
    app.authenticator.token_authenticators.append(sa_auth)
    # --enable-bootstrap-token-auth, on as kubeadm turns it on; after the service-account authenticator, as in
    # kube-apiserver, so a service-account token never reaches it (and a JWT fails its length check at once).
    app.authenticator.token_authenticators.append(BootstrapTokenAuthenticator(registry, tuple(options.audiences)))
    registry.on_delete.append(sa_auth.forget)
    tokens_api.install(app, resources, registry, issuer, app.authenticator, options, keys, opts.external_address)
    app.state["issuer"] = issuer
    app.state["keys"] = keys


# kube-controller-manager's User-Agent (its requests' default field manager is the program name before "/").
CONTROLLER_MANAGER_AGENT = f"kube-controller-manager/{KUBERNETES_VERSION} (linux/amd64) kubernetes"
_PODS = builtin_kind("v1", "Pod")


def _controller_creator(resources: ResourceHandler) -> Callable[[str], Creator]:
    """Per controller, its creates: through the API's admission under the controller's own ServiceAccount
    (kube-controller-manager's --use-service-account-credentials), so quotas, LimitRanges, webhooks and policies
    see and judge a ReplicaSet's pods, a Deployment's ReplicaSets or a CronJob's Jobs as they judge a user's."""
    def for_controller(name: str) -> Creator:
        user = UserInfo(f"system:serviceaccount:kube-system:{name}",
                        groups=("system:serviceaccounts", "system:serviceaccounts:kube-system", AUTHENTICATED))

        async def create(info: ResourceInfo, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
            return await resources.create_as(user, CONTROLLER_MANAGER_AGENT, info, ns, obj)
        return create
    return for_controller


def _pods_of(create: Creator) -> PodCreator:
    async def create_pod(pod: dict[str, Any]) -> dict[str, Any]:
        return await create(_PODS, str(pod["metadata"]["namespace"]), pod)
    return create_pod


def controller_starters(
    app: App, registry: Registry, opts: WiringOptions, pki: ClusterPKI
) -> list[Callable[[], Awaitable[Controller]]]:
    """Extra controllers to start after the store is open; each returns an object with `async stop()`."""
    issuer = app.state["issuer"]
    root_ca = pki.ca_cert.read_text()

    def starter(make: Callable[[], Controller]) -> Callable[[], Awaitable[Controller]]:
        async def start() -> Controller:
            c = make()
            await c.start()
            return c

        return start

    starters = [
        # First: custom resources are served again before the controllers that may look at them start.
        starter(lambda: CRDController(registry)),
        starter(lambda: GarbageCollector(registry)),
        starter(lambda: TokensController(registry, issuer.sign_legacy_claims, root_ca)),
        starter(lambda: LegacyTokenTracking(registry)),
    ]
    starters.append(starter(lambda: Scheduler(registry)))
    starters.append(starter(lambda: NodeLifecycleController(
        registry, grace_period=opts.node_monitor_grace_period,
        startup_grace_period=opts.node_startup_grace_period)))
    starters.append(starter(lambda: PodGCController(registry)))
    if opts.allocate_node_cidrs:
        cluster, mask = nodeipam.check_options(opts.cluster_cidr, opts.node_cidr_mask_size or None)
        starters.append(starter(lambda: nodeipam.NodeIpamController(registry, cluster, mask)))
    starters.append(starter(lambda: TaintEvictionController(registry)))
    creator = _controller_creator(app.state["resources"])
    starters.append(starter(lambda: ReplicaSetController(
        registry, create_pod=_pods_of(creator("replicaset-controller")))))
    starters.append(starter(lambda: ReplicationManager(
        registry, create_pod=_pods_of(creator("replication-controller")))))
    starters.append(starter(lambda: DeploymentController(registry, create=creator("deployment-controller"))))
    starters.append(starter(lambda: StatefulSetController(
        registry, create_pod=_pods_of(creator("statefulset-controller")))))
    starters.append(starter(lambda: DaemonSetController(
        registry, create_pod=_pods_of(creator("daemon-set-controller")))))
    starters.append(starter(lambda: JobController(registry, create_pod=_pods_of(creator("job-controller")))))
    starters.append(starter(lambda: CronJobController(registry, create=creator("cronjob-controller"))))
    starters.append(starter(lambda: KubernetesServiceController(registry, opts.external_address)))
    starters.append(starter(lambda: EndpointsController(registry)))
    starters.append(starter(lambda: DisruptionController(registry)))
    starters.append(starter(lambda: PersistentVolumeController(registry)))
    starters.append(starter(lambda: ResourceQuotaController(registry, app.state["quota_charges"])))
    if opts.node_name:
        starters.append(starter(lambda: MirrorPodPublisher(registry, opts.node_name, opts.command_line,
                                                           opts.external_address)))
    starters.append(starter(lambda: CSRSigningController(registry, pki.load_ca)))
    starters.append(starter(lambda: CSRApprovingController(
        registry, lambda attrs: app.state["rbac"].decider.authorize(attrs))))
    starters.append(starter(lambda: TokenCleaner(registry)))
    days = opts.tokens.legacy_cleanup_days
    if days:
        starters.append(starter(lambda: LegacyTokenCleaner(registry, period_days=days)))
    return starters
