"""The scale subresource of Deployments, ReplicaSets and StatefulSets: GET, PUT and PATCH of an autoscaling/v1
Scale that reads and writes the workload's spec.replicas (what `kubectl scale` and autoscalers use)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubesat import errors
from kubesat.api.app import Request, Response, Stream, json_response
from kubesat.api.resources import ResourceHandler
from kubesat.api.tables import wants_table
from kubesat.apimachinery import apply as ssa
from kubesat.apimachinery import codec, fieldcheck
from kubesat.apimachinery import patch as patching
from kubesat.registry.apps import scale_of, validate_scale
from kubesat.registry import customresource
from kubesat.registry.kinds import ResourceInfo, builtin_kind, lookup
from kubesat.registry.meta import column, field_doc, name_column
from kubesat.registry.podtemplate import format_labels, selector_string
from kubesat.registry.store import MODIFIED_MSG, Registry, WriteAdmission

SCALE_API_VERSION = "autoscaling/v1"
SCALE_DEFINITION = "io.k8s.api.autoscaling.v1.Scale"
SCALABLE = (builtin_kind("apps/v1", "Deployment"), builtin_kind("apps/v1", "ReplicaSet"),
            builtin_kind("apps/v1", "StatefulSet"), builtin_kind("v1", "ReplicationController"))
_PATCH_TYPES = (codec.JSON_PATCH, codec.MERGE_PATCH, codec.STRATEGIC_PATCH, codec.APPLY_PATCH_YAML)


def _scale(obj: dict[str, Any]) -> dict[str, Any]:
    selector = (obj.get("spec") or {}).get("selector")
    # A ReplicationController's selector is a plain label map, not a LabelSelector.
    shown = format_labels(selector) if obj.get("apiVersion") == "v1" and selector else selector_string(selector)
    return scale_of(obj, shown, SCALE_API_VERSION)


def _scale_table(scale: dict[str, Any], include_object: str) -> dict[str, Any]:
    """`kubectl get deploy NAME --subresource=scale`: the Scale printer's NAME DESIRED AVAILABLE."""
    row: dict[str, Any] = {"cells": [scale["metadata"].get("name", ""), scale["spec"]["replicas"],
                                     scale["status"]["replicas"]]}
    if include_object == "Object":
        row["object"] = scale
    elif include_object != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": scale["metadata"]}
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": scale["metadata"].get("resourceVersion", "")},
        "columnDefinitions": [
            name_column(),
            column("Desired", field_doc("io.k8s.api.autoscaling.v1.ScaleSpec", "replicas"), type_="integer"),
            column("Available", field_doc("io.k8s.api.autoscaling.v1.ScaleStatus", "replicas"), type_="integer"),
        ],
        "rows": [row],
    }


def _reply(req: Request, status: int, scale: dict[str, Any]) -> Response:
    if wants_table(req.headers.get("accept")):
        return json_response(status, _scale_table(scale, req.q("includeObject", "Metadata")), req)
    return json_response(status, scale, req)


def _checked_scale(body: Any) -> dict[str, Any]:
    """A Scale as a client sent it (or as a patch left it): its kind, field types and values as Kubernetes checks
    them, 400 or 422 otherwise."""
    if not isinstance(body, dict):
        raise errors.bad_request("the patch did not produce an object")
    codec.check_kind(body, SCALE_API_VERSION, "Scale")
    type_errs = fieldcheck.type_errors(body, SCALE_DEFINITION)
    if type_errs:
        raise errors.bad_request(f'Scale in version "v1" cannot be handled as a Scale: {type_errs[0]}')
    return body


def _apply_scale(current: dict[str, Any], scale: dict[str, Any], res: ResourceInfo) -> dict[str, Any]:
    """The workload with the Scale's replicas, its uid and resourceVersion taken as preconditions."""
    meta: dict[str, Any] = scale["metadata"] if isinstance(scale.get("metadata"), dict) else {}
    name = str(current["metadata"]["name"])
    if meta.get("uid") and meta["uid"] != current["metadata"].get("uid"):
        raise errors.conflict(res.plural, name, f"Precondition failed: UID in precondition: {meta['uid']}, "
                                                f"UID in object meta: {current['metadata'].get('uid')}", res.group)
    errs = [] if meta.get("name") else [errors.required("metadata.name", "name or generateName is required")]
    errs += validate_scale(scale)
    if errs:
        raise errors.invalid("Scale", name, errs, "autoscaling")
    new = copy.deepcopy(current)
    spec = scale.get("spec")
    # An absent replicas is Go's zero value: scaled to 0.
    new.setdefault("spec", {})["replicas"] = (spec.get("replicas") if isinstance(spec, dict) else None) or 0
    if meta.get("resourceVersion"):
        new["metadata"]["resourceVersion"] = str(meta["resourceVersion"])
    else:
        new["metadata"].pop("resourceVersion", None)
    return new


def _set_replicas(workload: dict[str, Any], replicas: Any) -> None:
    workload.setdefault("spec", {})["replicas"] = replicas


class _ScaleAdmission:
    """Admission webhooks see a scale write as kube-apiserver shows it, the autoscaling/v1 Scale before and after;
    what a mutating webhook changes in the Scale's spec.replicas goes back to the workload."""

    def __init__(self, inner: WriteAdmission, to_scale: Callable[[dict[str, Any]], dict[str, Any]],
                 set_replicas: Callable[[dict[str, Any], Any], None]) -> None:
        self.inner, self.to_scale, self.set_replicas = inner, to_scale, set_replicas

    @classmethod
    def of(cls, inner: WriteAdmission | None, to_scale: Callable[[dict[str, Any]], dict[str, Any]],
           set_replicas: Callable[[dict[str, Any], Any], None]) -> _ScaleAdmission | None:
        return cls(inner, to_scale, set_replicas) if inner is not None else None

    def _scale(self, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.to_scale(obj) if obj is not None else None

    async def mutate(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        scale = self._scale(new)
        before = copy.deepcopy(scale)
        await self.inner.mutate(self._scale(old), scale)
        if new is not None and scale is not None and scale != before:
            spec = scale.get("spec")
            self.set_replicas(new, (spec.get("replicas") if isinstance(spec, dict) else None) or 0)

    async def validate(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        await self.inner.validate(self._scale(old), self._scale(new))

    def creating(self) -> _ScaleAdmission:
        return self


def _patched_scale(scale: dict[str, Any], content_type: str, body: bytes) -> Any:
    try:
        if content_type == codec.JSON_PATCH:
            return patching.apply_json_patch(scale, body)
        if content_type == codec.MERGE_PATCH:
            return patching.apply_merge_patch(scale, body)
        return patching.apply_strategic_merge_patch(scale, body, SCALE_DEFINITION)
    except errors.StatusError as e:
        # A malformed patch is the client's mistake, never a 500.
        if e.code >= 500:
            raise errors.bad_request(e.message) from None
        raise


def _manager(req: Request) -> str:
    manager = req.q("fieldManager") or req.headers.get("user-agent", "").split("/", 1)[0].strip()[:128]
    if len(manager) > 128:
        raise errors.bad_request("fieldManager: Too long: may not be more than 128 bytes")
    return manager or "unknown"


def _dry_run(req: Request) -> bool:
    values = req.query.get("dryRun") or []
    for v in values:
        if v != "All":
            raise errors.bad_request(f'Invalid dry run value: "{v}". Supported values: "All"')
    return bool(values)


class ScaleHandler:
    """One handler for the three kinds' `/scale`; authorization has already run (verb get, update or patch)."""

    def __init__(self, resources: ResourceHandler, registry: Registry) -> None:
        self.resources = resources
        self.registry = registry

    async def __call__(self, req: Request) -> Response | Stream:
        info = req.info
        res = next((r for r in SCALABLE if r.group == info.api_group and r.plural == info.resource), None)
        if res is None or not info.namespace:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        if req.method in ("GET", "HEAD"):
            obj = await self.registry.get(res, info.namespace, info.name)
            return _reply(req, 200, _scale(obj))
        if req.method == "PUT":
            body = _checked_scale(codec.decode_object(req.headers.get("content-type"), req.body))
            return await self._write(req, res, lambda current: body)
        if req.method == "PATCH":
            content_type = codec.media_type(req.headers.get("content-type"))
            if content_type not in _PATCH_TYPES:
                raise errors.StatusError(
                    415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    + ", ".join(_PATCH_TYPES))
            if content_type == codec.APPLY_PATCH_YAML:
                return await self._apply(req, res)
            return await self._write(req, res, lambda current: _checked_scale(
                _patched_scale(_scale(current), content_type, req.body)))
        raise errors.method_not_allowed()

    async def _write(self, req: Request, res: ResourceInfo, new_scale: Any) -> Response:
        manager = _manager(req)
        checks = self.resources.write_checks
        now = self.registry.now

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            return _apply_scale(current, new_scale(current), res)

        def hook(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
            for check in checks:
                check(req, res, old, new)
            managed = ssa.record_update(old, new, manager, res.definition, now(), "scale")
            if managed:
                new["metadata"]["managedFields"] = managed

        updated, _ = await self.registry.guaranteed_update(
            res, req.info.namespace, req.info.name, mutate, dry_run=_dry_run(req), subresource="scale", hook=hook,
            admit=_ScaleAdmission.of(self.resources.update_webhooks(req, res, req.info.namespace), _scale,
                                     _set_replicas))
        return _reply(req, 200, _scale(updated))


    async def _apply(self, req: Request, res: ResourceInfo) -> Response:
        """Server-side apply of a Scale: the manager's intent for the workload's spec.replicas, with the
        ownership and conflicts of that field as an apply of the workload would have them (subresource scale)."""
        manager = req.q("fieldManager")
        if not manager:
            raise errors.bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        applied = _checked_scale(codec.decode_object(codec.YAML, req.body))
        meta: dict[str, Any] = applied["metadata"] if isinstance(applied.get("metadata"), dict) else {}
        if meta.get("name") and meta["name"] != req.info.name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                     f"({req.info.name})")
        errs = validate_scale(applied)
        if errs:
            raise errors.invalid("Scale", req.info.name, errs, "autoscaling")
        intent: dict[str, Any] = {"apiVersion": res.api_version, "kind": res.kind, "metadata": {"name": req.info.name}}
        spec = applied.get("spec")
        if isinstance(spec, dict) and spec.get("replicas") is not None:
            intent["spec"] = {"replicas": spec["replicas"]}
        force, checks, now = req.flag("force"), self.resources.write_checks, self.registry.now

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            rv = meta.get("resourceVersion")
            if rv and str(rv) != current["metadata"].get("resourceVersion"):
                raise errors.conflict(res.plural, req.info.name, MODIFIED_MSG, res.group)
            return ssa.server_side_apply(current, copy.deepcopy(intent), manager, force, res.definition, now(),
                                         "scale")

        def hook(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
            for check in checks:
                check(req, res, old, new)

        updated, _ = await self.registry.guaranteed_update(
            res, req.info.namespace, req.info.name, mutate, dry_run=_dry_run(req), subresource="scale", hook=hook,
            admit=_ScaleAdmission.of(self.resources.update_webhooks(req, res, req.info.namespace), _scale,
                                     _set_replicas))
        return _reply(req, 200, _scale(updated))


def install(resources: ResourceHandler, registry: Registry) -> None:
    handler = ScaleHandler(resources, registry)
    for res in SCALABLE:
        resources.connect_handlers[(res.group, res.plural, "scale")] = handler
    resources.custom_subresources["scale"] = CustomScaleHandler(resources, registry)


class CustomScaleHandler:
    """`/scale` of custom resources whose CRD version enables it: an autoscaling/v1 Scale read from and written to
    the paths the CRD names (specReplicasPath, statusReplicasPath, labelSelectorPath)."""

    def __init__(self, resources: ResourceHandler, registry: Registry) -> None:
        self.resources = resources
        self.registry = registry

    def _resource(self, req: Request) -> ResourceInfo:
        info = req.info
        res = lookup(info.api_group, info.api_version, info.resource)
        if res is None or res.custom is None or not customresource.scale_spec(res):
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        return res

    async def __call__(self, req: Request) -> Response | Stream:
        res = self._resource(req)
        ns = req.info.namespace if res.namespaced else ""
        if req.method in ("GET", "HEAD"):
            obj = await self.registry.get(res, ns, req.info.name)
            return _reply(req, 200, _custom_scale(res, obj))
        if req.method == "PUT":
            body = _checked_scale(codec.decode_object(req.headers.get("content-type"), req.body))
            return await self._write(req, res, ns, lambda scale: body)
        if req.method == "PATCH":
            content_type = codec.media_type(req.headers.get("content-type"))
            if content_type not in _PATCH_TYPES:
                raise errors.StatusError(
                    415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    + ", ".join(_PATCH_TYPES))
            if content_type == codec.APPLY_PATCH_YAML:
                applied = _checked_scale(codec.decode_object(codec.YAML, req.body))
                return await self._write(req, res, ns, lambda scale: _checked_scale(
                    patching.apply_merge_patch(scale, codec.dump_json(applied))))
            return await self._write(req, res, ns, lambda scale: _checked_scale(
                _patched_scale(scale, content_type, req.body)))
        raise errors.method_not_allowed()

    async def _write(self, req: Request, res: ResourceInfo, ns: str, new_scale: Any) -> Response:
        manager, checks, now = _manager(req), self.resources.write_checks, self.registry.now
        spec_path = str(customresource.scale_spec(res).get("specReplicasPath", ""))

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            scale = new_scale(_custom_scale(res, current))
            meta: dict[str, Any] = scale["metadata"] if isinstance(scale.get("metadata"), dict) else {}
            if meta.get("uid") and meta["uid"] != current["metadata"].get("uid"):
                raise errors.conflict(res.plural, req.info.name, f"Precondition failed: UID in precondition: "
                                      f"{meta['uid']}, UID in object meta: {current['metadata'].get('uid')}", res.group)
            new = copy.deepcopy(current)
            spec = scale.get("spec")
            customresource.set_path(new, spec_path, (spec.get("replicas") if isinstance(spec, dict) else None) or 0)
            if meta.get("resourceVersion"):
                new["metadata"]["resourceVersion"] = str(meta["resourceVersion"])
            return new

        def hook(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
            for check in checks:
                check(req, res, old, new)
            managed = ssa.record_update(old, new, manager, res.definition, now(), "scale")
            if managed:
                new["metadata"]["managedFields"] = managed

        updated, _ = await self.registry.guaranteed_update(
            res, ns, req.info.name, mutate, dry_run=_dry_run(req), subresource="scale", hook=hook,
            admit=_ScaleAdmission.of(self.resources.update_webhooks(req, res, ns), lambda o: _custom_scale(res, o),
                                     lambda o, n: customresource.set_path(o, spec_path, n)))
        return _reply(req, 200, _custom_scale(res, updated))


def _custom_scale(res: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """The Scale of a custom resource; a missing spec replicas field is kube-apiserver's internal error."""
    spec = customresource.scale_spec(res)
    spec_path = str(spec.get("specReplicasPath", ""))
    replicas, found = customresource.get_path(obj, spec_path)
    if not found:
        raise errors.internal(f'the spec replicas field "{spec_path}" does not exist')
    status_replicas, _ = customresource.get_path(obj, str(spec.get("statusReplicasPath", "")))
    selector: Any = ""
    if spec.get("labelSelectorPath"):
        found_selector, ok = customresource.get_path(obj, str(spec["labelSelectorPath"]))
        selector = found_selector if ok and isinstance(found_selector, str) else ""
    meta = obj["metadata"]
    out_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta}
    return {
        "kind": "Scale", "apiVersion": SCALE_API_VERSION, "metadata": out_meta,
        "spec": {"replicas": replicas if isinstance(replicas, int) else 0},
        "status": {"replicas": status_replicas if isinstance(status_replicas, int) else 0, "selector": selector},
    }

