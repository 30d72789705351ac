"""The MutatingAdmissionWebhook and ValidatingAdmissionWebhook plugins: the configured webhooks a write reaches,
called in kube-apiserver's order, their patches applied and their answers turned into Kubernetes' errors."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubesat import errors, ids, limits
from kubesat.apimachinery import patch as patching
from kubesat.apimachinery.selectors import parse_label_selector
from kubesat.apimachinery.cel import (
    DYN, CelError, CompileError, Compiled, compile_expression, evaluate, runtime_cost,
)
from kubesat.auth import authz
from kubesat.auth.celauthorizer import authorizer_variable
from kubesat.auth.user import UserInfo
from kubesat.auth.webhookcall import V1, V1BETA1, Answer, CallError, Target, WebhookClient, ca_pem, read_answer
from kubesat.auth.webhookrules import (
    ADMISSION_GROUP, RequestResource, exempt, labels_of, matching_resource, object_selector_matches,
    selector_is_everything,
)
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.podtemplate import selector_matches
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.admission")

MUTATING = builtin_kind("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")
VALIDATING = builtin_kind("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")
NAMESPACES = builtin_kind("v1", "Namespace")
SERVICES = builtin_kind("v1", "Service")
ENDPOINTS = builtin_kind("v1", "Endpoints")
ENDPOINT_SLICES = builtin_kind("discovery.k8s.io/v1", "EndpointSlice")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")
MUTATION_ANNOTATION = "mutation.webhook.admission.k8s.io/"
FAILED_OPEN_MUTATING = "failed-open.mutation.webhook.admission.k8s.io/"
FAILED_OPEN_VALIDATING = "failed-open.validating.webhook.admission.k8s.io/"
# The variables a matchCondition sees.
MATCH_CONDITION_VARIABLES = ("object", "oldObject", "request", "namespaceObject", "authorizer")
OUT_OF_BUDGET = "validation failed due to running out of cost budget, no further validation rules will be run"

Hook = tuple[str, dict[str, Any]]  # (configuration name, webhook)
Slot = tuple[int, int]  # (round, index): where a call stands, as audit annotations name it


@dataclass(frozen=True)
class Attributes:
    """One admission request: what kube-apiserver's admission.Attributes carry."""

    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    resource: RequestResource
    name: str
    user: UserInfo | None
    dry_run: bool
    options: dict[str, Any] | None
    equivalents: tuple[RequestResource, ...] = ()
    warnings: list[str] = field(default_factory=list)  # the request's Warning headers
    audit: dict[str, str] = field(default_factory=dict)  # the request's audit annotations

    def creating(self) -> Attributes:
        """The same request as a CREATE (an update or apply of an object that does not exist creates it)."""
        options = {k: v for k, v in (self.options or {}).items() if k in ("dryRun", "fieldManager", "fieldValidation")}
        return replace(self, operation="CREATE", options={**options, "kind": "CreateOptions",
                                                          "apiVersion": "meta.k8s.io/v1"})


class ConfigurationSource:
    """The stored webhook configurations in calling order (by configuration name, then list order), read
    again after any of them is written or deleted."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._dirty = True
        self._lock = asyncio.Lock()
        self._mutating: list[Hook] = []
        self._validating: list[Hook] = []
        registry.on_write.append(self._changed)
        registry.on_delete.append(self._changed)

    def _changed(self, info: ResourceInfo, _obj: dict[str, Any]) -> None:
        if info.group == ADMISSION_GROUP:
            self._dirty = True

    async def hooks(self) -> tuple[list[Hook], list[Hook]]:
        if self._dirty:
            async with self._lock:
                if self._dirty:
                    self._dirty = False  # a write while we read sets it again
                    self._mutating = _ordered((await self.registry.list(MUTATING, "")).items)
                    self._validating = _ordered((await self.registry.list(VALIDATING, "")).items)
        return self._mutating, self._validating


def _ordered(configs: list[dict[str, Any]]) -> list[Hook]:
    out: list[Hook] = []
    for cfg in sorted(configs, key=lambda c: str(c["metadata"].get("name", ""))):
        hooks = cfg.get("webhooks")
        for hook in hooks if isinstance(hooks, list) else []:
            if isinstance(hook, dict):
                out.append((str(cfg["metadata"].get("name", "")), hook))
    return out


class WebhookAdmission:
    """Both webhook plugins over one registry; `for_request` gives the calls of one write."""

    def __init__(self, registry: Registry, client: WebhookClient | None = None,
                 authorizer: Callable[[], authz.Authorizer] | None = None) -> None:
        self.registry = registry
        self.source = ConfigurationSource(registry)
        self.client = client or WebhookClient()
        # The server's authorizer (it may be replaced while serving), for matchConditions' `authorizer`.
        self.authorizer = authorizer or authz.DenyAll

    def for_request(self, attrs: Attributes) -> RequestAdmission | None:
        if exempt(attrs.resource):
            return None
        return RequestAdmission(self, attrs)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def target(self, hook: dict[str, Any], timeout: int) -> Target:
        """Where to POST: the url as given, or a ready endpoint of the Service (dialled by address, verified as
        NAME.NAMESPACE.svc), with `?timeout=Ns` added."""
        cc = _dict(hook.get("clientConfig"))
        ca = ca_pem(cc.get("caBundle"))
        query = f"?timeout={timeout}s"
        if cc.get("url"):
            url = str(cc["url"]) + query
            return Target(url, url, "", ca)
        svc = _dict(cc.get("service"))
        name, ns, port = str(svc.get("name", "")), str(svc.get("namespace", "")), svc.get("port") or 443
        path = str(svc.get("path") or "")
        host = f"{name}.{ns}.svc"
        shown = f"https://{host}:{port}{path}{query}"
        ip, target_port = await self._endpoint(ns, name, port, shown)
        address = f"[{ip}]" if ":" in ip else ip
        return Target(shown, f"https://{address}:{target_port}{path}{query}", host, ca)

    async def _endpoint(self, ns: str, name: str, port: int, shown: str) -> tuple[str, int]:
        service = await self.registry.get_or_none(SERVICES, ns, name)
        if service is None:
            raise CallError(f'Post "{shown}": service "{name}" not found')
        svc_port = next((p for p in (service.get("spec") or {}).get("ports") or []
                         if isinstance(p, dict) and p.get("port") == port), None)
        if svc_port is None:
            raise CallError(f'Post "{shown}": no service port {port} found for service '
                            f'"{name}"')
        port_name = str(svc_port.get("name", ""))
        endpoints = await self.registry.get_or_none(ENDPOINTS, ns, name) or {}
        for subset in endpoints.get("subsets") or []:
            ports = [p for p in subset.get("ports") or [] if isinstance(p, dict)]
            match = next((p for p in ports if p.get("name", "") == port_name), None)
            addresses = [a for a in subset.get("addresses") or [] if isinstance(a, dict) and a.get("ip")]
            if match is not None and addresses:
                return str(addresses[0]["ip"]), int(match.get("port") or 0)
        found = await self._slice_endpoint(ns, name, port_name)
        if found is not None:
            return found
        raise CallError(f'Post "{shown}": no endpoints available for service "{name}"')


    async def _slice_endpoint(self, ns: str, name: str, port_name: str) -> tuple[str, int] | None:
        """A ready address of the Service's EndpointSlices (kubernetes.io/service-name) and the named port."""
        try:
            selector = parse_label_selector(f"{SERVICE_NAME_LABEL}={name}")
        except errors.StatusError:  # a name no label value can hold has no slices
            return None
        for es in (await self.registry.list(ENDPOINT_SLICES, ns, labels=selector)).items:
            ports = [p for p in es.get("ports") or [] if isinstance(p, dict)]
            match = next((p for p in ports if (p.get("name") or "") == port_name), None)
            if match is None or not match.get("port"):
                continue
            for ep in es.get("endpoints") or []:
                ready = ((ep.get("conditions") or {}).get("ready") if isinstance(ep, dict) else False) is not False
                addresses = ep.get("addresses") if isinstance(ep, dict) else None
                if ready and isinstance(addresses, list) and addresses:
                    return str(addresses[0]), int(match["port"])
        return None


class RequestAdmission:
    """The webhook calls of one write: `mutate` before the registry defaults and validates the object,
    `validate` after (old is None on create, new None on delete)."""

    def __init__(self, plugin: WebhookAdmission, attrs: Attributes) -> None:
        self.plugin = plugin
        self.attrs = attrs
        self._namespace: dict[str, Any] | None = None  # the request's Namespace, once read

    def creating(self) -> RequestAdmission:
        return self.plugin.for_request(self.attrs.creating()) or self

    # ------------------------------------------------------------------------------------------ mutating
    async def mutate(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        hooks, _ = await self.plugin.source.hooks()
        if not hooks:
            return
        changes = 0
        called_at: dict[int, int] = {}  # IfNeeded hooks called -> the count of changes after their call
        for i, hook in enumerate(hooks):
            called, changed = await self._mutating_call(hook, old, new, (0, i))
            changes += changed
            if called and hook[1].get("reinvocationPolicy") == "IfNeeded":
                called_at[i] = changes
        # An IfNeeded hook is called once more when a later one changed the object after it.
        for i in sorted(called_at):
            if called_at[i] < changes:
                await self._mutating_call(hooks[i], old, new, (1, i))

    async def _mutating_call(self, hook: Hook, old: dict[str, Any] | None, new: dict[str, Any] | None,
                             slot: Slot) -> tuple[bool, bool]:
        """(called, changed the object)."""
        answer = await self._call(hook, old, new, True, slot)
        if answer is None:
            return False, False
        changed = await self._apply_patch(hook, answer, new, slot)
        self.attrs.audit[f"{MUTATION_ANNOTATION}round_{slot[0]}_index_{slot[1]}"] = json.dumps(
            {"configuration": hook[0], "webhook": hook[1].get("name", ""), "mutated": changed}, separators=(",", ":"))
        return True, changed

    async def _apply_patch(self, hook: Hook, answer: Answer, new: dict[str, Any] | None, slot: Slot) -> bool:
        """Whether the answer's patch changed the object."""
        if not answer.patch:
            return False
        name = str(hook[1].get("name", ""))
        if new is None:
            raise errors.internal(f'admission webhook "{name}" attempted to modify the object, which is not '
                                  "supported for this operation")
        if answer.patch_type != "JSONPatch":
            self._failed(hook, f'failed calling webhook "{name}": unsupported patch type "{answer.patch_type}"', True,
                         slot)
            return False
        try:
            patched = patching.apply_json_patch(new, answer.patch)
            limits.check_document(patched)
        except errors.StatusError as e:
            raise errors.internal(e.message) from None
        if not isinstance(patched, dict):
            raise errors.internal(f'admission webhook "{name}" returned a patch that does not give an object')
        if patched == new:
            return False
        new.clear()
        new.update(patched)
        return True

    # ---------------------------------------------------------------------------------------- validating
    async def validate(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        _, hooks = await self.plugin.source.hooks()
        if not hooks:
            return
        results = await asyncio.gather(*(self._call(h, old, new, False, (0, i)) for i, h in enumerate(hooks)),
                                       return_exceptions=True)
        for r in results:  # the first failure in calling order wins
            if isinstance(r, BaseException):
                raise r

    # ------------------------------------------------------------------------------------------- calling
    async def _call(self, hook: Hook, old: dict[str, Any] | None, new: dict[str, Any] | None,
                    mutating: bool, slot: Slot) -> Answer | None:
        """Call one webhook if the request reaches it; None when it does not, or its failure is ignored.
        Raises the request's error for a denial or a failure under failurePolicy Fail."""
        cfg_name, h = hook
        matched = await self._matches(h, old, new)
        if matched is None:
            return None
        name = str(h.get("name", ""))
        if self.attrs.dry_run and h.get("sideEffects") not in NO_SIDE_EFFECTS:
            raise errors.bad_request(f'admission webhook "{name}" does not support dry run')
        timeout = h["timeoutSeconds"] if isinstance(h.get("timeoutSeconds"), int) else 10
        versions = h.get("admissionReviewVersions") or []
        version = V1 if "v1" in versions else V1BETA1
        uid = ids.uuid4()
        try:
            if "v1" not in versions and "v1beta1" not in versions:
                raise CallError("webhook does not accept known AdmissionReview versions (v1, v1beta1)")
            target = await self._target(h, timeout)
            status, body = await self._post(target, self._review(version, uid, matched, old, new), timeout)
            answer = read_answer(status, body, uid, version, mutating)
        except CallError as e:
            self._failed(hook, f'failed calling webhook "{name}": {e}', mutating, slot)
            return None
        self.attrs.warnings.extend(answer.warnings)
        for key, value in answer.audit_annotations.items():
            self.attrs.audit[f"{name}/{key}"] = value
        if not answer.allowed:
            raise self._denied(name, answer.status)
        log.debug("webhook %s of %s allowed %s", name, cfg_name, self.attrs.operation)
        return answer

    async def _target(self, hook: dict[str, Any], timeout: int) -> Target:
        try:
            return await self.plugin.target(hook, timeout)
        except CallError as e:
            raise CallError(f"failed to call webhook: {e}") from None

    async def _post(self, target: Target, review: dict[str, Any], timeout: int) -> tuple[int, bytes]:
        try:
            return await self.plugin.client.post(target, review, timeout)
        except CallError as e:
            raise CallError(f"failed to call webhook: {e}") from None

    def _failed(self, hook: Hook, reason: str, mutating: bool, slot: Slot) -> None:
        """A call that failed: ignored (logged, and noted in the audit event) under failurePolicy Ignore, else the
        request fails."""
        if hook[1].get("failurePolicy") == "Ignore":
            log.warning("Failed calling webhook, failing open %s: %s", hook[1].get("name", ""), reason)
            prefix = FAILED_OPEN_MUTATING if mutating else FAILED_OPEN_VALIDATING
            self.attrs.audit[f"{prefix}round_{slot[0]}_index_{slot[1]}"] = str(hook[1].get("name", ""))
            return
        raise errors.internal(reason)

    async def _matches(self, hook: dict[str, Any], old: dict[str, Any] | None,
                       new: dict[str, Any] | None) -> RequestResource | None:
        a = self.attrs
        matched = matching_resource(hook, a.operation, a.resource, list(a.equivalents))
        if matched is None or not object_selector_matches(hook, new, old):
            return None
        if not await self._namespace_matches(hook.get("namespaceSelector"), old, new):
            return None
        conditions = hook.get("matchConditions")
        if isinstance(conditions, list) and conditions and \
                not await self._conditions_hold(hook, conditions, matched, old, new):
            return None
        return matched

    async def _conditions_hold(self, hook: dict[str, Any], conditions: list[Any], matched: RequestResource,
                               old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
        """matchConditions: any false skips the webhook; errors skip it under failurePolicy Ignore and refuse the
        request (403) otherwise."""
        r = self.attrs.resource
        activation = {
            "object": _in_version(new, matched, r), "oldObject": _in_version(old, matched, r),
            "request": self._request("", matched, None, None),
            "namespaceObject": await self._namespace_object() if r.namespace else None,
            "authorizer": authorizer_variable(self.plugin.authorizer(), self.attrs.user, r, self.attrs.name),
        }
        problems: list[str] = []
        budget = limits.CEL_MATCH_CONDITIONS_BUDGET
        for cond in conditions:
            expr = str(cond.get("expression") or "").strip() if isinstance(cond, dict) else ""
            try:
                compiled = _compiled(expr)
                # Each condition's cost, as Kubernetes' estimator prices it for the values at hand, is charged
                # to the conditions' shared budget first.
                spent = runtime_cost(compiled, activation)
                budget -= min(spent, limits.CEL_PER_CALL_LIMIT + 1)
                if budget < 0:
                    problems.append(OUT_OF_BUDGET)
                    break
                if spent > limits.CEL_PER_CALL_LIMIT:
                    raise CelError("operation cancelled: actual cost limit exceeded")
                if evaluate(compiled, activation) is False:
                    return False
            except (CompileError, CelError) as e:
                problems.append(f"expression '{expr}' resulted in error: {e}")
        if not problems:
            return True
        if hook.get("failurePolicy") == "Ignore":
            return False
        log.warning("Failed evaluating match conditions, failing closed %s: %s", hook.get("name", ""), problems)
        why = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise errors.forbidden(r.resource, self.attrs.name, why, r.group)

    async def _namespace_matches(self, selector: Any, old: dict[str, Any] | None,
                                 new: dict[str, Any] | None) -> bool:
        r = self.attrs.resource
        is_namespace = r.group == "" and r.resource == "namespaces"
        if (not r.namespace and not is_namespace) or selector_is_everything(selector):
            return True
        if is_namespace:
            return selector_matches(selector, labels_of(new if new is not None else old))
        return selector_matches(selector, labels_of(await self._namespace_object()))

    async def _namespace_object(self) -> dict[str, Any]:
        if self._namespace is None:
            ns = self.attrs.resource.namespace
            self._namespace = await self.plugin.registry.get_or_none(NAMESPACES, "", ns)
            if self._namespace is None:
                raise errors.not_found("namespaces", ns)
        return self._namespace

    def _review(self, version: str, uid: str, matched: RequestResource, old: dict[str, Any] | None,
                new: dict[str, Any] | None) -> dict[str, Any]:
        return {"apiVersion": version, "kind": "AdmissionReview", "request": self._request(uid, matched, old, new)}

    def _request(self, uid: str, matched: RequestResource, old: dict[str, Any] | None,
                 new: dict[str, Any] | None) -> dict[str, Any]:
        """The AdmissionRequest of one call."""
        a, r = self.attrs, self.attrs.resource
        request: dict[str, Any] = {
            "uid": uid,
            "kind": matched.gvk(),
            "resource": {"group": matched.group, "version": matched.version, "resource": matched.resource},
            "requestKind": r.gvk(),
            "requestResource": {"group": r.group, "version": r.version, "resource": r.resource},
        }
        if r.subresource:
            request["subResource"] = request["requestSubResource"] = r.subresource
        if a.name:
            request["name"] = a.name
        if r.namespace:
            request["namespace"] = r.namespace
        request.update({
            "operation": a.operation,
            "userInfo": a.user.to_api() if a.user is not None else {},
            "object": _in_version(new, matched, r),
            "oldObject": _in_version(old, matched, r),
            "dryRun": a.dry_run,
            "options": a.options,
        })
        return request

    def _denied(self, name: str, status: dict[str, Any]) -> errors.StatusError:
        """kube-apiserver's ToStatusErr: the webhook's code (403 when it gives none), reason and message."""
        code = status.get("code")
        code = code if isinstance(code, int) and 400 <= code <= 599 else 403
        message, reason = str(status.get("message") or ""), str(status.get("reason") or "")
        denied = f'admission webhook "{name}" denied the request'
        denied = f"{denied}: {message}" if message else f"{denied}: {reason}" if reason else \
            f"{denied} without explanation"
        r = self.attrs.resource
        obj_name = self.attrs.name or "Unknown"
        details = status.get("details") if isinstance(status.get("details"), dict) else None
        if code == 500:
            return errors.StatusError(500, reason or "InternalError", f"Internal error occurred: {denied}",
                                      details=details or {"causes": [{"message": denied}]})
        group_resource = f"{r.resource}.{r.group}" if r.group else r.resource
        forbidden = {"name": obj_name, **({"group": r.group} if r.group else {}), "kind": r.resource}
        return errors.StatusError(code, reason or "Forbidden", f'{group_resource} "{obj_name}" is forbidden: {denied}',
                                  details=details or forbidden)


@functools.lru_cache(maxsize=1024)
def _compiled(expression: str) -> Compiled:
    return compile_expression(expression, dict.fromkeys(MATCH_CONDITION_VARIABLES, DYN))


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _in_version(obj: dict[str, Any] | None, matched: RequestResource, requested: RequestResource) -> Any:
    """The object as the matched version shows it (only the apiVersion differs between a custom resource's
    versions without a conversion webhook)."""
    if obj is None or matched is requested:
        return obj
    return {**obj, "apiVersion": f"{matched.group}/{matched.version}" if matched.group else matched.version}
