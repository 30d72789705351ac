"""Kubernetes' CEL authorizer library (`authorizer.group('apps').resource('deployments').check('get').allowed()`)
for admission expressions: declarations, and implementations that ask a callback for each decision."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cel_expr_python import cel

from kubesat.apimachinery.cel.library import CelError, guarded_overload

T = cel.Type
KINDS = ("Authorizer", "PathCheck", "GroupCheck", "ResourceCheck", "Decision")
_KEY = "@kubesat"
# An authorization callback: the request's attributes (verb, path or group/resource/subresource/namespace/name, the
# selectors, and serviceAccount [namespace, name] when the expression asked about one) to (decision, reason, error),
# decision being "allow", "deny" or "noOpinion".
Authorize = Callable[[dict[str, Any]], tuple[str, str, str]]

_lock = threading.Lock()
_ids = itertools.count(1)
_callbacks: OrderedDict[str, Authorize] = OrderedDict()
_MAX_CALLBACKS = 4096  # one per admission request in flight; the oldest are forgotten


def authorizer_value(authorize: Authorize) -> dict[str, Any]:
    """The value of the `authorizer` variable for one request, answering checks through `authorize`."""
    key = str(next(_ids))
    with _lock:
        _callbacks[key] = authorize
        while len(_callbacks) > _MAX_CALLBACKS:
            _callbacks.popitem(last=False)
    return {_KEY: "Authorizer", "v": key, "serviceAccount": []}


def _value(kind: str, **fields: Any) -> dict[str, Any]:
    return {_KEY: kind, **fields}


def _expect(o: Any, kind: str) -> dict[str, Any]:
    if not isinstance(o, dict) or o.get(_KEY) != kind:
        raise CelError("no such overload")
    return o


def _service_account(a: Any, namespace: str, name: str) -> dict[str, Any]:
    base = _expect(a, "Authorizer")
    return {**base, "serviceAccount": [namespace, name]}


def _path(a: Any, path: str) -> dict[str, Any]:
    base = _expect(a, "Authorizer")
    return _value("PathCheck", v=base["v"], serviceAccount=base["serviceAccount"], path=path)


def _group(a: Any, group: str) -> dict[str, Any]:
    base = _expect(a, "Authorizer")
    return _value("GroupCheck", v=base["v"], serviceAccount=base["serviceAccount"], group=group)


def _resource(g: Any, resource: str) -> dict[str, Any]:
    base = _expect(g, "GroupCheck")
    return _value("ResourceCheck", v=base["v"], serviceAccount=base["serviceAccount"], group=base["group"],
                  resource=resource, subresource="", namespace="", name="", fieldSelector="", labelSelector="")


def _with(field: str) -> Callable[[Any, str], dict[str, Any]]:
    def set_(r: Any, value: str) -> dict[str, Any]:
        return {**_expect(r, "ResourceCheck"), field: value}
    return set_


def _check(c: Any, verb: str) -> dict[str, Any]:
    if not isinstance(c, dict) or c.get(_KEY) not in ("PathCheck", "ResourceCheck"):
        raise CelError("no such overload")
    with _lock:
        authorize = _callbacks.get(str(c["v"]))
    if authorize is None:
        raise CelError("authorizer is not available")
    attributes = {k: v for k, v in c.items() if k not in (_KEY, "v")}
    attributes["verb"] = verb
    decision, reason, error = authorize(attributes)
    return _value("Decision", allowed=decision == "allow", decision=decision, reason=reason, error=error)


def _decision(field: str) -> Callable[[Any], Any]:
    def get(d: Any) -> Any:
        o = _expect(d, "Decision")
        if field == "errored":
            return bool(o["error"])
        return o[field]
    return get


def declarations(opaque_type: Callable[[str], Any]) -> list[Any]:
    """The authorizer library's functions, with `opaque_type(kind)` giving the declared type of each kind."""
    authorizer, path, group, resource, decision = (opaque_type(k) for k in KINDS)
    s, b = T.STRING, T.BOOL
    decls = [
        cel.FunctionDecl("path", [guarded_overload("authorizer_path", path, [authorizer, s], _path, True)]),
        cel.FunctionDecl("group", [guarded_overload("authorizer_group", group, [authorizer, s], _group, True)]),
        cel.FunctionDecl("serviceAccount", [guarded_overload("authorizer_serviceaccount", authorizer,
                                                             [authorizer, s, s], _service_account, True)]),
        cel.FunctionDecl("resource", [guarded_overload("groupcheck_resource", resource, [group, s], _resource, True)]),
        cel.FunctionDecl("check", [guarded_overload("pathcheck_check", decision, [path, s], _check, True)] + (
            [] if path == resource else  # the runtime's maps: one overload serves both
            [guarded_overload("resourcecheck_check", decision, [resource, s], _check, True)])),
        cel.FunctionDecl("allowed", [guarded_overload("decision_allowed", b, [decision], _decision("allowed"), True)]),
        cel.FunctionDecl("reason", [guarded_overload("decision_reason", s, [decision], _decision("reason"), True)]),
        cel.FunctionDecl("errored", [guarded_overload("decision_errored", b, [decision], _decision("errored"), True)]),
        cel.FunctionDecl("error", [guarded_overload("decision_error", s, [decision], _decision("error"), True)]),
    ]
    for name in ("subresource", "namespace", "name", "fieldSelector", "labelSelector"):
        decls.append(cel.FunctionDecl(name, [guarded_overload(f"resourcecheck_{name}", resource, [resource, s],
                                                              _with(name), True)]))
    return decls
