"""The ValidatingAdmissionPolicy admission plugin: the stored policies and their bindings matched against a write,
with their params and variables, evaluated (auth/policyevaluation.py), and the result turned into a denial, a
warning or an audit annotation as each binding's validationActions say."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubesat import errors
from kubesat.auth import authz
from kubesat.auth.celauthorizer import authorizer_variable
from kubesat.auth.policyevaluation import CompiledPolicy, Decision, Evaluation, compile_policy
from kubesat.auth.webhookrules import (
    ADMISSION_GROUP, RequestResource, labels_of, object_selector_matches, rule_matches, selector_is_everything,
)
from kubesat.auth.webhooks import Attributes
from kubesat.registry import kinds
from kubesat.registry.admissionpolicytypes import expression_warnings
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.podtemplate import selector_matches
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.admission")

POLICIES = builtin_kind("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")
BINDINGS = builtin_kind("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding")
NAMESPACES = builtin_kind("v1", "Namespace")
VALIDATION_FAILURE_ANNOTATION = "validation.policy.admission.k8s.io/validation_failure"
MAX_VALIDATION_FAILURES = 50  # entries in the validation_failure annotation, as kube-apiserver bounds it
MAX_PARAMS = 1000  # param objects one selector may bring in
_CODES = {"Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


class PolicySource:
    """The stored policies (compiled, kept while their generation holds) and bindings, read again after any of
    them is written or deleted."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._dirty = True
        self._lock = asyncio.Lock()
        self._compiled: dict[str, CompiledPolicy] = {}  # uid -> compiled policy
        self._hooks: list[tuple[CompiledPolicy, list[dict[str, Any]]]] = []
        self._observing: set[asyncio.Task[None]] = set()
        registry.on_write.append(self._written)
        registry.on_delete.append(self._changed)

    def _changed(self, info: ResourceInfo, _obj: dict[str, Any]) -> None:
        if info.group == ADMISSION_GROUP and info.plural in (POLICIES.plural, BINDINGS.plural):
            self._dirty = True

    def _written(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        self._changed(info, obj)
        if info is POLICIES and _d(obj.get("status")).get("observedGeneration") != obj["metadata"].get("generation"):
            task = asyncio.get_running_loop().create_task(self._observe(copy.deepcopy(obj)))
            self._observing.add(task)
            task.add_done_callback(self._observing.discard)

    async def _observe(self, checked: dict[str, Any]) -> None:
        """status.observedGeneration and status.typeChecking, as kube-apiserver's type-checking controller writes
        them, for the generation checked (a newer one gets its own check)."""
        generation = checked["metadata"].get("generation")
        warnings = await asyncio.to_thread(expression_warnings, checked)

        def observed(policy: dict[str, Any]) -> dict[str, Any]:
            if policy["metadata"].get("generation") == generation:
                policy["status"] = {**_d(policy.get("status")), "observedGeneration": generation,
                                    "typeChecking": {"expressionWarnings": warnings} if warnings else {}}
            return policy
        name = str(checked["metadata"].get("name", ""))
        try:
            await self.registry.guaranteed_update(POLICIES, "", name, observed, subresource="status")
        except errors.StatusError as e:  # deleted meanwhile
            log.debug("status of %s not written: %s", name, e.message)

    async def hooks(self) -> list[tuple[CompiledPolicy, list[dict[str, Any]]]]:
        """Each policy (by name) with its bindings (by name); policies without bindings are left out."""
        if self._dirty:
            async with self._lock:
                if self._dirty:
                    self._dirty = False  # a write while we read sets it again
                    self._hooks = await self._load()
        return self._hooks

    async def _load(self) -> list[tuple[CompiledPolicy, list[dict[str, Any]]]]:
        policies = (await self.registry.list(POLICIES, "")).items
        bindings = (await self.registry.list(BINDINGS, "")).items
        by_policy: dict[str, list[dict[str, Any]]] = {}
        for b in sorted(bindings, key=lambda o: str(o["metadata"].get("name", ""))):
            by_policy.setdefault(_s(_d(b.get("spec")).get("policyName")), []).append(b)
        compiled: dict[str, CompiledPolicy] = {}
        out = []
        for p in sorted(policies, key=lambda o: str(o["metadata"].get("name", ""))):
            uid = str(p["metadata"].get("uid", ""))
            cp = self._compiled.get(uid)
            if cp is None or cp.generation != p["metadata"].get("generation"):
                cp = await asyncio.to_thread(compile_policy, p)
            cp.policy = p
            compiled[uid] = cp
            if by_policy.get(cp.name):
                out.append((cp, by_policy[cp.name]))
        self._compiled = compiled
        return out


# ----------------------------------------------------------------------------------------------- matching
def _rules_match(rules: list[Any], attrs: Attributes, r: RequestResource) -> bool:
    for rule in rules:
        if isinstance(rule, dict) and rule_matches(rule, attrs.operation, r):
            names = _l(rule.get("resourceNames"))
            if not names or attrs.name in names:
                return True
    return False


def matched_resource(mr: dict[str, Any], attrs: Attributes) -> RequestResource | None:
    """The resource matchResources' rules match (the request's, or with matchPolicy Equivalent another version of
    it); excludeResourceRules win; no resourceRules match everything (a binding's)."""
    r = attrs.resource
    exclude = _l(mr.get("excludeResourceRules"))
    equivalents = list(attrs.equivalents) if mr.get("matchPolicy", "Equivalent") == "Equivalent" else []
    if any(_rules_match(exclude, attrs, c) for c in [r, *equivalents]):
        return None
    rules = _l(mr.get("resourceRules"))
    if not rules:
        return r
    return next((c for c in [r, *equivalents] if _rules_match(rules, attrs, c)), None)


def _in_version(obj: dict[str, Any] | None, matched: RequestResource, requested: RequestResource) -> Any:
    """The object as the matched version shows it (only apiVersion differs between a custom resource's versions
    served without a conversion webhook)."""
    if obj is None or matched is requested:
        return obj
    return {**obj, "apiVersion": f"{matched.group}/{matched.version}" if matched.group else matched.version}


def admission_request(attrs: Attributes, matched: RequestResource) -> dict[str, Any]:
    """The `request` variable: an AdmissionRequest without its objects (CreateAdmissionRequest)."""
    r = attrs.resource
    request: dict[str, Any] = {
        "kind": {"group": matched.group, "version": matched.version, "kind": matched.kind},
        "resource": {"group": matched.group, "version": matched.version, "resource": matched.resource},
        "requestKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "requestResource": {"group": r.group, "version": r.version, "resource": r.resource},
        "name": attrs.name, "namespace": r.namespace, "operation": attrs.operation,
        "userInfo": attrs.user.to_api() if attrs.user is not None else {},
        "dryRun": attrs.dry_run, "options": attrs.options,
    }
    if r.subresource:
        request["subResource"] = request["requestSubResource"] = r.subresource
    return request


def namespace_variable(ns: dict[str, Any] | None) -> dict[str, Any] | None:
    """CreateNamespaceObject: the Namespace's metadata (without managedFields and owners), spec and status."""
    if ns is None:
        return None
    meta = {k: v for k, v in _d(ns.get("metadata")).items() if k not in ("managedFields", "ownerReferences")}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "spec": ns.get("spec") or {},
            "status": ns.get("status") or {}}


# -------------------------------------------------------------------------------------------- decisions
@dataclass
class Outcome:
    """What the policies made of one request."""

    denied: list[tuple[str, str, Decision]] = field(default_factory=list)  # (policy, binding or "", decision)
    failures: list[dict[str, Any]] = field(default_factory=list)  # the validation_failure annotation's entries
    annotations: dict[str, list[str]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ params
class ConfigurationError(Exception):
    """A policy or binding that cannot be applied (its failurePolicy decides)."""


def _param_kind_text(pk: dict[str, Any]) -> str:
    return f"&ParamKind{{APIVersion:{_s(pk.get('apiVersion'))},Kind:{_s(pk.get('kind'))},}}"


async def collect_params(registry: Registry, spec: dict[str, Any], binding: dict[str, Any],
                         namespace: str) -> list[dict[str, Any] | None]:
    """CollectParams: [None] without a paramKind or paramRef, else the param objects named or selected."""
    pk, ref = spec.get("paramKind"), _d(binding.get("spec")).get("paramRef")
    if not isinstance(pk, dict) or not isinstance(ref, dict):
        return [None]
    info = kinds.lookup_kind(_s(pk.get("apiVersion")), _s(pk.get("kind")))
    if info is None:
        raise ConfigurationError(f"paramKind kind `{_param_kind_text(pk)}` not known")
    ns = ""
    if info.namespaced:
        ns = _s(ref.get("namespace")) or namespace
        if not ns:
            raise ConfigurationError("cannot use namespaced paramRef in policy binding that matches cluster-scoped "
                                     "resources")
    elif ref.get("namespace"):
        raise ConfigurationError("paramRef.namespace must not be provided for a cluster-scoped `paramKind`")
    params: list[dict[str, Any] | None] = []
    if ref.get("name"):
        found = await registry.get_or_none(info, ns, _s(ref["name"]))
        params = [found] if found is not None else []
    elif isinstance(ref.get("selector"), dict):
        items = (await registry.list(info, ns)).items
        params.extend(o for o in items[:MAX_PARAMS * 10] if selector_matches(ref["selector"], labels_of(o)))
        del params[MAX_PARAMS:]
    if not params and ref.get("parameterNotFoundAction") == "Deny":
        raise ConfigurationError("no params found for policy binding with `Deny` parameterNotFoundAction")
    return params


# ------------------------------------------------------------------------------------------------ the plugin
class ValidatingPolicyAdmission:
    """The ValidatingAdmissionPolicy plugin over one registry; kube-apiserver runs it after the mutating webhooks
    and before the validating ones. `authorizer` gives the server's authorizer (it may be replaced while serving)."""

    def __init__(self, registry: Registry, authorizer: Callable[[], authz.Authorizer] | None = None) -> None:
        self.registry = registry
        self.source = PolicySource(registry)
        self.authorizer = authorizer or authz.DenyAll

    async def validate(self, attrs: Attributes, old: dict[str, Any] | None, new: dict[str, Any] | None,
                       audit: dict[str, str] | None = None) -> None:
        hooks = await self.source.hooks()
        if not hooks:
            return
        run = _Request(self, attrs, old, new)
        outcome = Outcome()
        for cp, bindings in hooks:
            await run.policy(cp, bindings, outcome)
        if audit is not None:
            _publish(outcome, audit)
        if outcome.denied:
            raise _denial(attrs, shown_name(attrs, new), *outcome.denied[0])


class _Request:
    """The policies' view of one write: its namespace (read once) and the variables."""

    def __init__(self, plugin: ValidatingPolicyAdmission, attrs: Attributes, old: dict[str, Any] | None,
                 new: dict[str, Any] | None) -> None:
        self.plugin, self.attrs, self.old, self.new = plugin, attrs, old, new
        self._namespace: dict[str, Any] | None = None
        self._authorizer: dict[str, Any] | None = None

    async def namespace(self) -> dict[str, Any]:
        if self._namespace is None:
            ns = self.attrs.resource.namespace
            self._namespace = await self.plugin.registry.get_or_none(NAMESPACES, "", ns)
            if self._namespace is None:
                raise errors.not_found("namespaces", ns)
        return self._namespace

    async def matches(self, mr: dict[str, Any]) -> RequestResource | None:
        """Namespace and object selectors, then the rules (policy matchConstraints or binding matchResources)."""
        r = self.attrs.resource
        selector = mr.get("namespaceSelector")
        if not selector_is_everything(selector):
            if r.group == "" and r.resource == "namespaces":
                labels = labels_of(self.new if self.new is not None else self.old)
            elif r.namespace:
                labels = labels_of(await self.namespace())
            else:
                labels = None  # cluster-scoped objects always match
            if labels is not None and not selector_matches(selector, labels):
                return None
        if not object_selector_matches(mr, self.new, self.old):
            return None
        return matched_resource(mr, self.attrs)

    async def policy(self, cp: CompiledPolicy, bindings: list[dict[str, Any]], outcome: Outcome) -> None:
        matched = await self.matches(_d(cp.spec.get("matchConstraints")))
        if matched is None:
            return
        fail = cp.spec.get("failurePolicy", "Fail") != "Ignore"
        published: dict[str, list[str]] = {}
        for binding in bindings:
            bname = str(binding["metadata"].get("name", ""))
            mr = _d(binding.get("spec")).get("matchResources")
            if isinstance(mr, dict) and await self.matches(mr) is None:
                continue
            try:
                params = await collect_params(self.plugin.registry, cp.spec, binding, self.attrs.resource.namespace)
            except ConfigurationError as e:
                if fail:
                    outcome.denied.append((cp.name, bname, Decision(f"failed to configure binding: {e}")))
                continue
            for param in params:
                decisions, annotations = Evaluation(cp, await self._activation(matched, param)).run()
                for d in decisions:
                    self._act(cp.name, binding, d, outcome)
                for key, value in annotations:
                    if value not in published.setdefault(key, []):
                        published[key].append(value)
        for key, values in published.items():
            outcome.annotations[f"{cp.name}/{key}"] = values

    async def _activation(self, matched: RequestResource, param: dict[str, Any] | None) -> dict[str, Any]:
        r = self.attrs.resource
        is_namespace = r.group == "" and r.resource == "namespaces"
        ns = namespace_variable(await self.namespace()) if r.namespace and not is_namespace else None
        return {"object": _in_version(self.new, matched, r), "oldObject": _in_version(self.old, matched, r),
                "request": admission_request(self.attrs, matched), "params": param, "namespaceObject": ns,
                "variables": {}, "authorizer": self.authorizer_variable()}

    def authorizer_variable(self) -> dict[str, Any]:
        """`authorizer`, with `authorizer.requestResource`: a check of the request's own resource, subresource,
        namespace and name."""
        if self._authorizer is None:
            self._authorizer = authorizer_variable(self.plugin.authorizer(), self.attrs.user, self.attrs.resource,
                                                   self.attrs.name)
        return self._authorizer

    def _act(self, policy: str, binding: dict[str, Any], d: Decision, outcome: Outcome) -> None:
        bname = str(binding["metadata"].get("name", ""))
        actions = _l(_d(binding.get("spec")).get("validationActions"))
        if "Deny" in actions:
            outcome.denied.append((policy, bname, d))
        if "Warn" in actions:
            self.attrs.warnings.append(f"Validation failed for ValidatingAdmissionPolicy '{policy}' with binding "
                                       f"'{bname}': {d.message}")
        if "Audit" in actions:
            outcome.failures.append({"message": d.message, "policy": policy, "binding": bname,
                                     "expressionIndex": d.index, "validationActions": actions})


def _publish(outcome: Outcome, audit: dict[str, str]) -> None:
    for key, values in outcome.annotations.items():
        audit[key] = ", ".join(values)
    if outcome.failures:
        audit[VALIDATION_FAILURE_ANNOTATION] = orjson.dumps(outcome.failures[:MAX_VALIDATION_FAILURES]).decode()


def shown_name(attrs: Attributes, new: dict[str, Any] | None) -> str:
    """The name admission errors give (extractResourceName): the request's, else the new object's name or
    generateName (names are generated after admission), else `Unknown`."""
    meta = _d((new or {}).get("metadata"))
    return attrs.name or _s(meta.get("name")) or _s(meta.get("generateName")) or "Unknown"


def _denial(attrs: Attributes, name: str, policy: str, binding: str, d: Decision) -> errors.StatusError:
    """admission.NewForbidden with the decision's reason and its code (Invalid, the default, is 422)."""
    r = attrs.resource
    message = f"ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {d.message}"
    err = errors.forbidden(r.resource, name, message, r.group)
    err.reason = d.reason
    err.code = _CODES.get(d.reason, 422)
    err.details = {**(err.details or {}), "causes": [{"message": message}]}
    return err
