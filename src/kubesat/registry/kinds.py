"""The table of API resources kubesat serves: group, version, kind, scope, names and verbs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CRUD_NO_COLLECTION = ("create", "delete", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)
READ_ONLY = ("get", "list", "watch")
# The verbs discovery lists for connect subresources, as kube-apiserver derives them from their HTTP methods:
# exec, attach and portforward take GET and POST; the proxies every method (HEAD and OPTIONS add no verb).
CONNECT_STREAM = ("create", "get")
CONNECT_PROXY = ("create", "delete", "get", "patch", "update")


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""  # group of the subresource's kind, when it differs from the parent's
    version: str = ""
    # A connect subresource (Kubernetes' rest.Connecter, and pods/log): its own handler serves it (api/streams.py,
    # api/proxy_api.py), never the generic resource code; its kind is the options it reads from the query, not a
    # body. Discovery lists it like any other; OpenAPI gives it connect operations.
    connect: bool = False


@dataclass(frozen=True, eq=False)
class CustomDefinition:
    """What a served custom resource version takes from its CustomResourceDefinition (compared by identity: each
    revision of a CRD makes new ones, so caches keyed by a ResourceInfo never serve an old definition)."""

    crd_name: str
    storage_version: str
    # The CRD's spec.versions[] entry of this version, with the CRD-wide schema, subresources and columns.
    version: dict[str, Any]
    versions: tuple[str, ...]  # every version the CRD lists, as stored objects may carry any of them
    terminating: bool = False
    conversion: dict[str, Any] = field(default_factory=dict)  # the CRD's spec.conversion

    @property
    def multi_version(self) -> bool:
        return len(self.versions) > 1


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource, the facts discovery, routing, storage and RBAC share."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...] = CRUD
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    stored: bool = True  # False for virtual resources (reviews) and for those served from another's storage
    list_kind: str = ""
    field_selectors: tuple[str, ...] = ()  # supported beyond metadata.name / metadata.namespace
    # (apiVersion, kind) of the resource whose stored objects this one reads and writes in its own form, as
    # events.k8s.io/v1 Events are the core/v1 Events converted (registry/conversion.py holds the conversions).
    stored_as: tuple[str, str] | tuple[()] = ()
    custom: CustomDefinition | None = None  # set for the versions of a CustomResourceDefinition

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def definition(self) -> str:
        """The OpenAPI definition name, e.g. io.k8s.api.core.v1.Pod (com.example.stable.v1.CronTab for a custom
        resource: its group reversed, as kube-apiserver names it)."""
        if self.custom is not None:
            return custom_definition_name(self.group, self.version, self.kind)
        return definition_name(self.group, self.version, self.kind)

    def storage_prefix(self) -> str:
        """Keys are laid out as Kubernetes lays them out in etcd: /registry/[group/]resource/[ns/]name."""
        if self.stored_as and self.custom is None:
            return builtin_kind(*self.stored_as).storage_prefix()
        if self.group:
            return f"/registry/{self.group}/{self.plural}/"
        return f"/registry/{self.plural}/"

    def key(self, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix()}{namespace}/{name}"
        return f"{self.storage_prefix()}{name}"

    def list_prefix(self, namespace: str) -> str:
        if self.namespaced and namespace:
            return f"{self.storage_prefix()}{namespace}/"
        return self.storage_prefix()


_GROUP_PACKAGES = {
    "": "core",
    "rbac.authorization.k8s.io": "rbac",
    "coordination.k8s.io": "coordination",
    "authentication.k8s.io": "authentication",
    "authorization.k8s.io": "authorization",
    "apps": "apps",
    "events.k8s.io": "events",
}


# Groups whose types live outside k8s.io/api (their OpenAPI names carry the Go package path).
_DEFINITION_PREFIXES = {
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
}


def definition_name(group: str, version: str, kind: str) -> str:
    prefix = _DEFINITION_PREFIXES.get(group)
    if prefix:
        return f"{prefix}.{version}.{kind}"
    pkg = _GROUP_PACKAGES.get(group, group.split(".")[0])
    return f"io.k8s.api.{pkg}.{version}.{kind}"


def custom_definition_name(group: str, version: str, kind: str) -> str:
    return ".".join([*reversed(group.split(".")), version, kind])


RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo(
        "", "v1", "Namespace", "namespaces", "namespace", False,
        verbs=CRUD_NO_COLLECTION, short_names=("ns",),
        subresources=(Subresource("status", "Namespace", ("get", "patch", "update")),
                      Subresource("finalize", "Namespace", ("update",))),
        field_selectors=("status.phase",),
    ),
    ResourceInfo(
        "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True,
        short_names=("sa",),
        subresources=(Subresource("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),),
    ),
    ResourceInfo("", "v1", "Secret", "secrets", "secret", True, field_selectors=("type",)),
    ResourceInfo("", "v1", "ConfigMap", "configmaps", "configmap", True, short_names=("cm",)),
    ResourceInfo(
        "", "v1", "Pod", "pods", "pod", True, short_names=("po",), categories=("all",),
        subresources=(Subresource("status", "Pod", ("get", "patch", "update")),
                      Subresource("binding", "Binding", ("create",)),
                      Subresource("eviction", "Eviction", ("create",), "policy", "v1"),
                      Subresource("attach", "PodAttachOptions", CONNECT_STREAM, connect=True),
                      Subresource("exec", "PodExecOptions", CONNECT_STREAM, connect=True),
                      Subresource("log", "Pod", ("get",), connect=True),
                      Subresource("portforward", "PodPortForwardOptions", CONNECT_STREAM, connect=True),
                      Subresource("proxy", "PodProxyOptions", CONNECT_PROXY, connect=True)),
        field_selectors=("spec.nodeName", "spec.serviceAccountName", "spec.restartPolicy",
                         "spec.schedulerName", "status.phase", "status.podIP", "status.nominatedNodeName"),
    ),
    # LimitRanges and ResourceQuotas (registry/quota.py), enforced at admission (auth/quota.py).
    ResourceInfo("", "v1", "LimitRange", "limitranges", "limitrange", True, short_names=("limits",)),
    ResourceInfo("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", True, short_names=("quota",),
                 subresources=(Subresource("status", "ResourceQuota", ("get", "patch", "update")),)),
    # POST namespaces/NS/bindings: the older form of pods/NAME/binding (the Binding names the pod).
    ResourceInfo("", "v1", "Binding", "bindings", "binding", True, verbs=CREATE_ONLY, stored=False),
    ResourceInfo(
        "", "v1", "Node", "nodes", "node", False, short_names=("no",),
        subresources=(Subresource("status", "Node", ("get", "patch", "update")),
                      Subresource("proxy", "NodeProxyOptions", CONNECT_PROXY, connect=True)),
        field_selectors=("spec.unschedulable",),
    ),
    ResourceInfo(
        "", "v1", "Event", "events", "event", True, short_names=("ev",),
        field_selectors=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                         "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                         "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    ),
    # events.k8s.io/v1 Events are the core Events above, read and written in the newer form (registry/eventsv1.py).
    ResourceInfo(
        "events.k8s.io", "v1", "Event", "events", "event", True, short_names=("ev",), stored=False,
        stored_as=("v1", "Event"),
        field_selectors=("regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                         "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath", "reason",
                         "reportingController", "type"),
    ),
    ResourceInfo(
        "", "v1", "Service", "services", "service", True, short_names=("svc",), categories=("all",),
        subresources=(Subresource("status", "Service", ("get", "patch", "update")),
                      Subresource("proxy", "ServiceProxyOptions", CONNECT_PROXY, connect=True)),
    ),
    ResourceInfo("", "v1", "Endpoints", "endpoints", "endpoints", True, short_names=("ep",)),
    # core/v1 ReplicationController (registry/replicationcontroller.py; controllers/replicationcontroller.py).
    ResourceInfo(
        "", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", True,
        short_names=("rc",), categories=("all",),
        subresources=(Subresource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1"),
                      Subresource("status", "ReplicationController", ("get", "patch", "update"))),
        field_selectors=("status.replicas",),
    ),
    ResourceInfo("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", True),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", True),
    ResourceInfo(
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", False
    ),
    ResourceInfo("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    ResourceInfo("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", False,
                 verbs=CREATE_ONLY, stored=False),
    ResourceInfo("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                 False, verbs=CREATE_ONLY, stored=False),
    ResourceInfo("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
                 "subjectaccessreview", False, verbs=CREATE_ONLY, stored=False),
    ResourceInfo("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                 "selfsubjectaccessreview", False, verbs=CREATE_ONLY, stored=False),
    ResourceInfo("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
                 "localsubjectaccessreview", True, verbs=CREATE_ONLY, stored=False),
    ResourceInfo("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                 "selfsubjectrulesreview", False, verbs=CREATE_ONLY, stored=False),
    ResourceInfo(
        "certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
        "certificatesigningrequest", False, short_names=("csr",),
        subresources=(Subresource("approval", "CertificateSigningRequest", ("get", "patch", "update")),
                      Subresource("status", "CertificateSigningRequest", ("get", "patch", "update"))),
        field_selectors=("spec.signerName",),
    ),
    # batch/v1: Jobs and CronJobs (registry/batch.py; controllers/job.py and controllers/cronjob.py run them).
    ResourceInfo(
        "batch", "v1", "Job", "jobs", "job", True, categories=("all",),
        subresources=(Subresource("status", "Job", ("get", "patch", "update")),),
        field_selectors=("status.successful",),
    ),
    ResourceInfo(
        "batch", "v1", "CronJob", "cronjobs", "cronjob", True, short_names=("cj",), categories=("all",),
        subresources=(Subresource("status", "CronJob", ("get", "patch", "update")),),
    ),
    # policy/v1: disruption budgets (controllers/disruption.py keeps their status; pods/eviction honours them).
    ResourceInfo(
        "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", True,
        short_names=("pdb",),
        subresources=(Subresource("status", "PodDisruptionBudget", ("get", "patch", "update")),),
    ),
    # apps/v1 workloads (registry/apps.py); scale answers an autoscaling/v1 Scale (api/scale_api.py).
    ResourceInfo(
        "apps", "v1", "Deployment", "deployments", "deployment", True, short_names=("deploy",), categories=("all",),
        subresources=(Subresource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1"),
                      Subresource("status", "Deployment", ("get", "patch", "update"))),
    ),
    ResourceInfo(
        "apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, short_names=("rs",), categories=("all",),
        subresources=(Subresource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1"),
                      Subresource("status", "ReplicaSet", ("get", "patch", "update"))),
        field_selectors=("status.replicas",),
    ),
    ResourceInfo(
        "apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, short_names=("sts",), categories=("all",),
        subresources=(Subresource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1"),
                      Subresource("status", "StatefulSet", ("get", "patch", "update"))),
    ),
    ResourceInfo(
        "apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, short_names=("ds",), categories=("all",),
        subresources=(Subresource("status", "DaemonSet", ("get", "patch", "update")),),
    ),
    ResourceInfo("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", True),
    # Volumes and claims (registry/persistentvolume.py); controllers/volumebinding.py binds and provisions them.
    ResourceInfo("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", False, short_names=("pv",),
                 subresources=(Subresource("status", "PersistentVolume", ("get", "patch", "update")),)),
    ResourceInfo("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", True,
                 short_names=("pvc",),
                 subresources=(Subresource("status", "PersistentVolumeClaim", ("get", "patch", "update")),)),
    # networking.k8s.io/v1 and storage.k8s.io/v1: stored and validated, with no data plane behind them
    # (registry/networking.py, registry/storageclass.py).
    ResourceInfo("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, short_names=("ing",),
                 subresources=(Subresource("status", "Ingress", ("get", "patch", "update")),)),
    ResourceInfo("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", False),
    ResourceInfo("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", True,
                 short_names=("netpol",)),
    ResourceInfo("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", False,
                 short_names=("sc",)),
    # Admission webhooks (registry/admissionregistration.py); auth/webhooks.py calls them.
    ResourceInfo("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                 "validatingwebhookconfigurations", "validatingwebhookconfiguration", False,
                 categories=("api-extensions",)),
    ResourceInfo("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                 "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", False,
                 categories=("api-extensions",)),
    # ValidatingAdmissionPolicy (registry/admissionpolicy.py); auth/policyadmission.py enforces them.
    ResourceInfo("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy",
                 "validatingadmissionpolicies", "validatingadmissionpolicy", False, categories=("api-extensions",),
                 subresources=(Subresource("status", "ValidatingAdmissionPolicy", ("get", "patch", "update")),)),
    ResourceInfo("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding",
                 "validatingadmissionpolicybindings", "validatingadmissionpolicybinding", False,
                 categories=("api-extensions",)),
    # CustomResourceDefinitions (registry/apiextensions.py); controllers/crd.py serves their custom resources.
    ResourceInfo("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                 "customresourcedefinition", False, short_names=("crd", "crds"), categories=("api-extensions",),
                 subresources=(Subresource("status", "CustomResourceDefinition", ("get", "patch", "update")),)),
)

# Groups in the order discovery lists them (core first, then as Kubernetes orders its groups).
GROUP_ORDER: tuple[str, ...] = (
    "",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
)


@dataclass
class _Index:
    by_path: dict[tuple[str, str, str], ResourceInfo] = field(default_factory=dict)
    by_kind: dict[tuple[str, str], ResourceInfo] = field(default_factory=dict)


def _build_index(resources: tuple[ResourceInfo, ...] | list[ResourceInfo]) -> _Index:
    idx = _Index()
    for r in resources:
        idx.by_path[(r.group, r.version, r.plural)] = r
        idx.by_kind[(r.api_version, r.kind)] = r
    return idx


_INDEX = _build_index(RESOURCES)


class CustomResources:
    """The custom resources being served, each CRD's versions added and removed as one; `generation` counts the
    changes, so that what is built from the table (discovery, OpenAPI) knows when to build again."""

    def __init__(self) -> None:
        self._by_crd: dict[str, tuple[ResourceInfo, ...]] = {}
        self._index = _Index()
        self._by_prefix: dict[str, ResourceInfo] = {}
        self.generation = 0

    def set(self, crd_name: str, infos: tuple[ResourceInfo, ...]) -> None:
        """Serve exactly `infos` for a CRD (none: stop serving it)."""
        if self._by_crd.get(crd_name, ()) == infos:
            return
        if infos:
            self._by_crd[crd_name] = infos
        else:
            self._by_crd.pop(crd_name, None)
        everything = [r for rs in self._by_crd.values() for r in rs]
        self._index = _build_index(everything)
        self._by_prefix = {r.storage_prefix(): r for r in everything if r.stored}
        self.generation += 1

    def all(self) -> list[ResourceInfo]:
        return [r for rs in self._by_crd.values() for r in rs]

    def of(self, crd_name: str) -> tuple[ResourceInfo, ...]:
        return self._by_crd.get(crd_name, ())

    def lookup(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        return self._index.by_path.get((group, version, plural))

    def lookup_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        return self._index.by_kind.get((api_version, kind))

    def by_prefix(self, prefix: str) -> ResourceInfo | None:
        return self._by_prefix.get(prefix)


CUSTOM = CustomResources()


def lookup(group: str, version: str, plural: str) -> ResourceInfo | None:
    found = _INDEX.by_path.get((group, version, plural))
    return found if found is not None else CUSTOM.lookup(group, version, plural)


def lookup_kind(api_version: str, kind: str) -> ResourceInfo | None:
    found = _INDEX.by_kind.get((api_version, kind))
    return found if found is not None else CUSTOM.lookup_kind(api_version, kind)


def builtin_kind(api_version: str, kind: str) -> ResourceInfo:
    """The ResourceInfo of a kind this server always serves; a KeyError if it does not."""
    info = _INDEX.by_kind.get((api_version, kind))
    if info is None:
        raise KeyError(f"{api_version} {kind} is not a served kind")
    return info


def all_resources() -> list[ResourceInfo]:
    """The built-in resources, then the custom ones served now."""
    return [*RESOURCES, *CUSTOM.all()]


def stored_resources() -> list[ResourceInfo]:
    """One ResourceInfo per stored collection (a CRD's storage version stands for all its versions)."""
    return [r for r in all_resources() if r.stored]


def custom_resource_of_key(key: str) -> ResourceInfo | None:
    """The custom resource whose storage holds `key` (/registry/<group>/<plural>/...), if one is served."""
    parts = key.split("/", 4)
    if len(parts) < 5:
        return None
    return CUSTOM.by_prefix(f"/registry/{parts[2]}/{parts[3]}/")


_VERSION_RE = re.compile(r"^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$")


def version_sort_key(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version priority, highest first: GA, then beta, then alpha (each by number, higher first), then
    the rest alphabetically."""
    m = _VERSION_RE.match(version)
    if m is None:
        return (3, 0, 0, version)
    major = int(m.group(1))
    if m.group(2) is None:
        return (0, -major, 0, "")
    return (1 if m.group(2) == "beta" else 2, -major, -int(m.group(3)), "")


def group_versions() -> dict[str, list[str]]:
    """group -> served versions (preferred first)."""
    out: dict[str, list[str]] = {}
    for g in GROUP_ORDER:
        out[g] = []
    for r in RESOURCES:
        vs = out.setdefault(r.group, [])
        if r.version not in vs:
            vs.append(r.version)
    custom: dict[str, set[str]] = {}
    for r in CUSTOM.all():
        custom.setdefault(r.group, set()).add(r.version)
    for g, versions in custom.items():
        vs = out.setdefault(g, [])
        vs.extend(sorted(versions - set(vs), key=version_sort_key))
    return out


def resources_in(group: str, version: str) -> list[ResourceInfo]:
    return [r for r in all_resources() if r.group == group and r.version == version]
