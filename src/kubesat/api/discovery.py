"""Discovery documents (/api, /apis, per group-version and aggregated) built from the served resource table."""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Any

from kubesat.registry import kinds
from kubesat.registry.customresource import DISCOVERED_TERMINATING_VERBS
from kubesat.registry.kinds import ResourceInfo

AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_KIND = "APIGroupDiscoveryList"
AGGREGATED_VERSIONS = ("v2", "v2beta1")

# Group priorities as kube-apiserver registers them (higher first); discovery lists groups in this order.
_GROUP_PRIORITY: dict[str, int] = {
    "apiregistration.k8s.io": 18000,
    "apps": 17800,
    "events.k8s.io": 17750,
    "authentication.k8s.io": 17700,
    "authorization.k8s.io": 17600,
    "autoscaling": 17500,
    "batch": 17400,
    "certificates.k8s.io": 17300,
    "networking.k8s.io": 17200,
    "policy": 17100,
    "rbac.authorization.k8s.io": 17000,
    "storage.k8s.io": 16800,
    "admissionregistration.k8s.io": 16700,
    "apiextensions.k8s.io": 16700,
    "scheduling.k8s.io": 16600,
    "coordination.k8s.io": 16500,
    "node.k8s.io": 16300,
    "discovery.k8s.io": 16200,
    "resource.k8s.io": 16150,
    "flowcontrol.apiserver.k8s.io": 16100,
}


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """What kube-apiserver publishes as storageVersionHash: base64 of the first 8 bytes of sha256("g/v/Kind")."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _groups() -> list[str]:
    """Non-core groups with at least one served resource, in Kubernetes' discovery order."""
    served = {r.group for r in kinds.all_resources() if r.group}
    order = {g: i for i, g in enumerate(kinds.GROUP_ORDER)}
    return sorted(served, key=lambda g: (-_GROUP_PRIORITY.get(g, 1000), order.get(g, len(order)), g))


def _versions(group: str) -> list[str]:
    return [v for v in kinds.group_versions().get(group, []) if kinds.resources_in(group, v)]


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _gv_entry(group: str, version: str) -> dict[str, str]:
    return {"groupVersion": _gv(group, version), "version": version}


def api_versions(server_address: str) -> dict[str, Any]:
    """GET /api: the core group's APIVersions."""
    return {
        "kind": "APIVersions",
        "versions": _versions(""),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _api_group_doc(group: str) -> dict[str, Any]:
    versions = _versions(group)
    return {
        "name": group,
        "versions": [_gv_entry(group, v) for v in versions],
        "preferredVersion": _gv_entry(group, versions[0]),
    }


def api_group_list() -> dict[str, Any]:
    """GET /apis: every non-core group with its versions and preferred version."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_api_group_doc(g) for g in _groups()]}


def api_group(group: str) -> dict[str, Any] | None:
    """GET /apis/<group>, or None when the group is not served."""
    if not group or group not in _groups():
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group_doc(group)}


def _sorted_verbs(verbs: tuple[str, ...]) -> list[str]:
    return sorted(set(verbs))


def _resource_verbs(r: ResourceInfo) -> list[str]:
    if r.custom is not None and r.custom.terminating:
        return _sorted_verbs(DISCOVERED_TERMINATING_VERBS)
    return _sorted_verbs(r.verbs)


def _resource_entries(r: ResourceInfo) -> list[dict[str, Any]]:
    """The APIResource entries of one resource: the resource itself, then its subresources."""
    main: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": _resource_verbs(r),
    }
    if r.short_names:
        main["shortNames"] = list(r.short_names)
    if r.categories:
        main["categories"] = list(r.categories)
    if r.custom is not None:
        main["storageVersionHash"] = storage_version_hash(r.group, r.custom.storage_version, r.kind)
    elif r.stored:
        main["storageVersionHash"] = storage_version_hash(r.group, r.version, r.kind)
    out = [main]
    for s in r.subresources:
        sub: dict[str, Any] = {"name": f"{r.plural}/{s.name}", "singularName": "", "namespaced": r.namespaced}
        if s.group or s.version:
            sub["group"] = s.group
            sub["version"] = s.version or r.version
        sub["kind"] = s.kind
        sub["verbs"] = _sorted_verbs(s.verbs)
        out.append(sub)
    return out


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """GET /api/v1 or /apis/<group>/<version>: the APIResourceList, or None when not served."""
    resources = kinds.resources_in(group, version)
    if not resources:
        return None
    entries: list[dict[str, Any]] = []
    for r in resources:
        entries.extend(_resource_entries(r))
    entries.sort(key=lambda e: e["name"])
    doc: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        # kube-apiserver leaves apiVersion out of the core group's list only.
        doc["apiVersion"] = "v1"
    doc["groupVersion"] = _gv(group, version)
    doc["resources"] = entries
    return doc


def _resource_discovery(r: ResourceInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": r.plural,
        # kube-apiserver fills the response kind's group/version only when they differ from the path's.
        "responseKind": {"group": "", "version": "", "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": _resource_verbs(r),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    subs = []
    for s in sorted(r.subresources, key=lambda s: s.name):
        subs.append({
            "subresource": s.name,
            "responseKind": {"group": s.group, "version": s.version if s.group or s.version else "", "kind": s.kind},
            "verbs": _sorted_verbs(s.verbs),
        })
    if subs:
        out["subresources"] = subs
    return out


def _group_discovery(group: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": group} if group else {}
    metadata["creationTimestamp"] = None
    versions = []
    for v in _versions(group):
        resources = sorted(kinds.resources_in(group, v), key=lambda r: r.plural)
        versions.append({
            "version": v,
            "resources": [_resource_discovery(r) for r in resources],
            "freshness": "Current",
        })
    return {"metadata": metadata, "versions": versions}


@functools.lru_cache(maxsize=8)
def _aggregated(core: bool, version: str, generation: int) -> dict[str, Any]:
    """Built once per change of the served custom resources (`generation`)."""
    items = [_group_discovery("")] if core else [_group_discovery(g) for g in _groups()]
    return {
        "kind": AGGREGATED_KIND,
        "apiVersion": f"{AGGREGATED_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }


def aggregated_discovery(core: bool, version: str) -> dict[str, Any]:
    """The APIGroupDiscoveryList for /api (core=True) or /apis, in apidiscovery.k8s.io/<version> (v2 or v2beta1)."""
    if version not in AGGREGATED_VERSIONS:
        raise ValueError(f"unsupported aggregated discovery version {version!r}")
    return _aggregated(core, version, kinds.CUSTOM.generation)


def parse_media_ranges(accept: str) -> list[tuple[str, dict[str, str], float]]:
    ranges: list[tuple[str, dict[str, str], float]] = []
    for clause in accept.split(","):
        parts = [p.strip() for p in clause.split(";")]
        mt = parts[0].lower()
        if not mt:
            continue
        params: dict[str, str] = {}
        for p in parts[1:]:
            if "=" in p:
                k, v = p.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        ranges.append((mt, params, q))
    # Highest quality first; equal quality keeps the client's order (a stable sort).
    ranges.sort(key=lambda r: -r[2])
    return ranges


def accept_wants_aggregated(accept_header: str) -> str | None:
    """"v2" or "v2beta1" when the Accept header's first servable choice is aggregated discovery (JSON), else None."""
    for mt, params, q in parse_media_ranges(accept_header or ""):
        if q <= 0:
            continue
        if "g" in params or "as" in params or "v" in params:
            if (mt == "application/json" and params.get("g") == AGGREGATED_GROUP
                    and params.get("as") == AGGREGATED_KIND and params.get("v") in AGGREGATED_VERSIONS):
                return params["v"]
            continue  # some other conversion (a Table, protobuf discovery...): not one we serve here
        if mt in ("application/json", "application/*", "*/*", "application/yaml"):
            return None
    return None
