"""Parse a request path and method into what Kubernetes calls RequestInfo (verb, group, resource, ...)."""

from __future__ import annotations

from dataclasses import dataclass

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True)
class RequestInfo:
    resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""  # "api" or "apis"
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()


def parse(method: str, path: str, watch_param: bool) -> RequestInfo:
    """Split `/api/v1/namespaces/ns/pods/name/status`-style paths; anything else is a non-resource request."""
    verb = method.lower()
    segs = [s for s in path.split("/") if s]
    if not segs or segs[0] not in ("api", "apis"):
        return RequestInfo(False, path, verb)
    prefix = segs[0]
    rest = segs[1:]
    group = ""
    if prefix == "apis":
        if not rest:
            return RequestInfo(False, path, verb)
        group = rest[0]
        rest = rest[1:]
    if not rest:
        return RequestInfo(False, path, verb)
    version = rest[0]
    rest = rest[1:]
    if not rest:
        return RequestInfo(False, path, verb)

    resource_verb = {
        "get": "get", "head": "get", "post": "create", "put": "update",
        "patch": "patch", "delete": "delete",
    }.get(verb, verb)
    if rest[0] == "watch":
        resource_verb = "watch"
        rest = rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if not name:
        if resource_verb == "get":
            resource_verb = "watch" if watch_param else "list"
        elif resource_verb == "delete":
            resource_verb = "deletecollection"
    elif resource_verb == "get" and watch_param:
        resource_verb = "watch"
    return RequestInfo(
        True, path, resource_verb, prefix, group, version, namespace, resource, sub, name, tuple(rest)
    )
