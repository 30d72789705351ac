"""OpenAPI documents (v2 Swagger and per group-version v3) for the served resources, built lazily and cached."""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from kubesat.apimachinery import openapi_proto
from kubesat.api.discovery import parse_media_ranges
from kubesat.registry import customresource, kinds
from kubesat.apimachinery import schema
from kubesat.registry.kinds import ResourceInfo, Subresource

SPEC_VERSION = "v1.32.0"

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
STATUS = META + "Status"
DELETE_OPTIONS = META + "DeleteOptions"
WATCH_EVENT = META + "WatchEvent"
PATCH = META + "Patch"
API_RESOURCE_LIST = META + "APIResourceList"
API_GROUP = META + "APIGroup"
API_GROUP_LIST = META + "APIGroupList"
API_VERSIONS = META + "APIVersions"
VERSION_INFO = "io.k8s.apimachinery.pkg.version.Info"

_ALWAYS = (STATUS, DELETE_OPTIONS, WATCH_EVENT, PATCH, API_RESOURCE_LIST, API_GROUP, API_GROUP_LIST, API_VERSIONS)

_OBJECT_MEDIA = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
_WATCH_MEDIA = _OBJECT_MEDIA + [
    "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch",
]
_PATCH_MEDIA = [
    "application/json-patch+json", "application/merge-patch+json",
    "application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/apply-patch+cbor",
]
_UNAUTHORIZED = {"401": {"description": "Unauthorized"}}


# ----------------------------------------------------------------------------------------- naming

def _group_words(group: str) -> list[str]:
    if not group:
        return ["core"]
    return [w for w in group.removesuffix(".k8s.io").split(".") if w]


def _group_camel(group: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in _group_words(group))


def _tag(group: str, version: str) -> str:
    camel = _group_camel(group)
    return f"{camel[:1].lower()}{camel[1:]}_{version}"


def _prefix(group: str, version: str) -> str:
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


# ------------------------------------------------------------------------------------- parameters

def _q(name: str, desc: str, typ: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": desc, "type": typ, "uniqueItems": True}


def _path_param(name: str, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "description": desc, "required": True, "type": "string", "uniqueItems": True}


def _body(definition: str, required: bool = True) -> dict[str, Any]:
    p: dict[str, Any] = {"name": "body", "in": "body", "schema": _ref(definition)}
    if required:
        p["required"] = True
    return p


P_PRETTY = _q("pretty", "If 'true', the output is indented.")
P_NAMESPACE = _path_param("namespace", "object name and auth scope, such as for teams and projects")
P_DRY_RUN = _q("dryRun", "When set to All, the request is checked but nothing is persisted.")
P_FIELD_MANAGER = _q("fieldManager", "Name of the actor making the change, recorded in managedFields.")
P_FIELD_VALIDATION = _q(
    "fieldValidation", "How unknown or duplicate fields are treated: Ignore, Warn (default) or Strict."
)
P_FORCE = _q("force", "Apply only: take over fields owned by other managers.", "boolean")
P_LIST = [
    _q("allowWatchBookmarks", "Ask for BOOKMARK watch events.", "boolean"),
    _q("continue", "Continuation token from a previous, limited list call."),
    _q("fieldSelector", "Restrict results by their fields."),
    _q("labelSelector", "Restrict results by their labels."),
    _q("limit", "Largest number of items to return in one answer.", "integer"),
    _q("resourceVersion", "Which resource version the answer must be at least as new as."),
    _q("resourceVersionMatch", "How resourceVersion is applied to list calls."),
    _q("sendInitialEvents", "With watch=true, start with synthetic ADDED events for current state.", "boolean"),
    _q("timeoutSeconds", "Time limit for the list or watch call.", "integer"),
    _q("watch", "Stream changes instead of listing.", "boolean"),
]
P_DELETE = [
    _q("gracePeriodSeconds", "Seconds before the object is deleted; 0 deletes at once.", "integer"),
    _q("ignoreStoreReadErrorWithClusterBreakingPotential", "Delete objects the store cannot read.", "boolean"),
    _q("orphanDependents", "Deprecated: use propagationPolicy.", "boolean"),
    _q("propagationPolicy", "Garbage collection of dependents: Orphan, Background or Foreground."),
]


def _responses(codes: tuple[str, ...], definition: str | None) -> dict[str, Any]:
    words = {"200": "OK", "201": "Created", "202": "Accepted"}
    out: dict[str, Any] = {}
    for c in codes:
        entry: dict[str, Any] = {"description": words[c]}
        if definition:
            entry["schema"] = _ref(definition)
        out[c] = entry
    out.update(copy.deepcopy(_UNAUTHORIZED))
    return out


# ------------------------------------------------------------------------------------------ paths

def _op(op_id: str, tag: str, action: str, gvk: dict[str, str] | None, responses: dict[str, Any],
        params: list[dict[str, Any]] | None = None, consumes: list[str] | None = None,
        produces: list[str] | None = None, desc: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {
        "description": desc,
        "consumes": consumes or ["*/*"],
        "produces": produces or list(_OBJECT_MEDIA),
        "schemes": ["https"],
        "tags": [tag],
        "operationId": op_id,
    }
    if params:
        op["parameters"] = params
    op["responses"] = responses
    op["x-kubernetes-action"] = action
    if gvk is not None:
        op["x-kubernetes-group-version-kind"] = gvk
    return op


def _resource_paths(r: ResourceInfo) -> dict[str, dict[str, Any]]:
    """Path items for one resource and its subresources, as kube-apiserver names and shapes them."""
    g, v, kind = r.group, r.version, r.kind
    gv = _group_camel(g) + v[:1].upper() + v[1:]
    tag = _tag(g, v)
    gvk = _gvk(g, v, kind)
    ns = "Namespaced" if r.namespaced else ""
    base = _prefix(g, v)
    coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
    item = f"{coll}/{{name}}"
    scope = [P_NAMESPACE] if r.namespaced else []
    name_p = _path_param("name", f"name of the {kind}")
    verbs = set(r.verbs)
    defn = r.definition
    list_defn = r.definition + "List"
    has_list = list_defn in schema.definitions() or (r.custom is not None and list_defn in _custom_definitions(True))
    paths: dict[str, dict[str, Any]] = {}

    c: dict[str, Any] = {}
    if "list" in verbs and has_list:
        c["get"] = _op(f"list{gv}{ns}{kind}", tag, "list", gvk, _responses(("200",), list_defn),
                       P_LIST, produces=_WATCH_MEDIA, desc=f"list or watch objects of kind {kind}")
    if "create" in verbs:
        c["post"] = _op(f"create{gv}{ns}{kind}", tag, "post", gvk, _responses(("200", "201", "202"), defn),
                        [_body(defn), P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION], desc=f"create a {kind}")
    if "deletecollection" in verbs:
        c["delete"] = _op(f"delete{gv}Collection{ns}{kind}", tag, "deletecollection", gvk,
                          _responses(("200",), STATUS), [_body(DELETE_OPTIONS, False), P_DRY_RUN, *P_DELETE, *P_LIST],
                          desc=f"delete collection of {kind}")
    if c:
        c["parameters"] = [*scope, P_PRETTY]
        paths[coll] = c

    i: dict[str, Any] = {}
    if "get" in verbs:
        i["get"] = _op(f"read{gv}{ns}{kind}", tag, "get", gvk, _responses(("200",), defn),
                       desc=f"read the specified {kind}")
    if "update" in verbs:
        i["put"] = _op(f"replace{gv}{ns}{kind}", tag, "put", gvk, _responses(("200", "201"), defn),
                       [_body(defn), P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION],
                       desc=f"replace the specified {kind}")
    if "delete" in verbs:
        deleted = STATUS if kind == "Namespace" else defn
        i["delete"] = _op(f"delete{gv}{ns}{kind}", tag, "delete", gvk, _responses(("200", "202"), deleted),
                          [_body(DELETE_OPTIONS, False), P_DRY_RUN, *P_DELETE], desc=f"delete a {kind}")
    if "patch" in verbs:
        i["patch"] = _op(f"patch{gv}{ns}{kind}", tag, "patch", gvk, _responses(("200", "201"), defn),
                         [_body(PATCH), P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION, P_FORCE],
                         consumes=list(_PATCH_MEDIA), desc=f"partially update the specified {kind}")
    if i:
        i["parameters"] = [name_p, *scope, P_PRETTY]
        paths[item] = i

    if "watch" in verbs:
        wbase = f"{base}/watch/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/watch/{r.plural}"
        paths[wbase] = {
            "get": _op(f"watch{gv}{ns}{kind}List", tag, "watchlist", gvk, _responses(("200",), WATCH_EVENT),
                       produces=_WATCH_MEDIA, desc=f"watch individual changes to a list of {kind}"),
            "parameters": [*P_LIST, *scope, P_PRETTY],
        }
        paths[f"{wbase}/{{name}}"] = {
            "get": _op(f"watch{gv}{ns}{kind}", tag, "watch", gvk, _responses(("200",), WATCH_EVENT),
                       produces=_WATCH_MEDIA, desc=f"watch changes to an object of kind {kind}"),
            "parameters": [*P_LIST, name_p, *scope, P_PRETTY],
        }
    if r.namespaced and "list" in verbs and has_list:
        paths[f"{base}/{r.plural}"] = {
            "get": _op(f"list{gv}{kind}ForAllNamespaces", tag, "list", gvk, _responses(("200",), list_defn),
                       produces=_WATCH_MEDIA, desc=f"list or watch objects of kind {kind}"),
            "parameters": [*P_LIST, P_PRETTY],
        }
        if "watch" in verbs:
            paths[f"{base}/watch/{r.plural}"] = {
                "get": _op(f"watch{gv}{kind}ListForAllNamespaces", tag, "watchlist", gvk,
                           _responses(("200",), WATCH_EVENT), produces=_WATCH_MEDIA,
                           desc=f"watch individual changes to a list of {kind}"),
                "parameters": [*P_LIST, P_PRETTY],
            }

    for s in r.subresources:
        if s.connect:
            paths.update(_connect_paths(r, s, item, gv, tag, ns, scope))
        else:
            paths[f"{item}/{s.name}"] = _subresource_path(r, s, gv, tag, ns, scope)
    return paths


# The query parameters of each connect subresource's options kind (kube-apiserver lists them sorted by name).
_CONNECT_QUERY: dict[str, list[dict[str, Any]]] = {
    "PodAttachOptions": [
        _q("container", "The container in which to execute the command. Defaults to only container if there is "
                        "only one container in the pod."),
        _q("stderr", "Stderr if true indicates that stderr is to be redirected for the attach call.", "boolean"),
        _q("stdin", "Stdin if true, redirects the standard input stream of the pod for this call.", "boolean"),
        _q("stdout", "Stdout if true indicates that stdout is to be redirected for the attach call.", "boolean"),
        _q("tty", "TTY if true indicates that a tty will be allocated for the attach call.", "boolean"),
    ],
    "PodExecOptions": [
        _q("command", "Command is the remote command to execute. argv array. Not executed within a shell."),
        _q("container", "Container in which to execute the command. Defaults to only container if there is only "
                        "one container in the pod."),
        _q("stderr", "Redirect the standard error stream of the pod for this call.", "boolean"),
        _q("stdin", "Redirect the standard input stream of the pod for this call. Defaults to false.", "boolean"),
        _q("stdout", "Redirect the standard output stream of the pod for this call.", "boolean"),
        _q("tty", "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
           "boolean"),
    ],
    "PodPortForwardOptions": [_q("ports", "List of ports to forward Required when using WebSockets", "integer")],
}
_LOG_QUERY = [
    _q("container", "The container for which to stream logs. Defaults to only container if there is one "
                    "container in the pod."),
    _q("follow", "Follow the log stream of the pod. Defaults to false.", "boolean"),
    _q("insecureSkipTLSVerifyBackend", "Do not verify the serving certificate of the backend.", "boolean"),
    _q("limitBytes", "The number of bytes to read from the server before terminating the log output.", "integer"),
    _q("previous", "Return previous terminated container logs. Defaults to false.", "boolean"),
    _q("sinceSeconds", "A relative time in seconds before the current time from which to show logs.", "integer"),
    _q("tailLines", "The number of lines from the end of the logs to show.", "integer"),
    _q("timestamps", "Add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output.",
       "boolean"),
]
# The HTTP methods each connect subresource takes, as kube-apiserver's connecters declare them.
_STREAM_METHODS = ("get", "post")
_PROXY_METHODS = ("delete", "get", "head", "options", "patch", "post", "put")
_STRING_RESPONSE = {"200": {"description": "OK", "schema": {"type": "string"}}, **_UNAUTHORIZED}


def _connect_paths(r: ResourceInfo, s: Subresource, item: str, gv: str, tag: str, ns: str,
                   scope: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A connect subresource's paths as kube-apiserver documents them: `connect<Method>...` operations on the
    options kind (and /proxy/{path} for the proxies); pods/log is a read that answers text."""
    suffix = f"{r.kind}{s.name[:1].upper()}{s.name[1:]}"
    gvk = _gvk(r.group, r.version, s.kind)
    name_p = _path_param("name", f"name of the {s.kind}")
    if s.name == "log":
        op = _op(f"read{gv}{ns}{suffix}", tag, "get", gvk, copy.deepcopy(_STRING_RESPONSE),
                 produces=["text/plain", *_OBJECT_MEDIA], desc=f"read log of the specified {r.kind}")
        return {f"{item}/log": {"get": op, "parameters": sorted([*_LOG_QUERY, name_p, *scope, P_PRETTY],
                                                                key=lambda p: p["name"])}}
    methods = _PROXY_METHODS if s.name == "proxy" else _STREAM_METHODS

    def item_for(with_path: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in methods:
            word = m[:1].upper() + m[1:]
            out[m] = _op(f"connect{gv}{word}{ns}{suffix}{with_path}", tag, "connect", gvk,
                         copy.deepcopy(_STRING_RESPONSE), produces=["*/*"],
                         desc=f"connect {m.upper()} requests to {s.name} of {r.kind}")
        out["parameters"] = sorted(params, key=lambda p: (p["name"], p["in"]))
        return out

    base = f"{item}/{s.name}"
    if s.name != "proxy":
        return {base: item_for("", [*_CONNECT_QUERY.get(s.kind, []), name_p, *scope])}
    target = "node" if r.kind == "Node" else r.kind.lower()
    path_q = _q("path", f"Path is the URL path to use for the current proxy request to {target}.")
    return {
        base: item_for("", [name_p, *scope, path_q]),
        f"{base}/{{path}}": item_for("WithPath", [name_p, *scope, _path_param("path", "path to the resource"),
                                                  path_q]),
    }


def _subresource_path(r: ResourceInfo, s: Subresource, gv: str, tag: str, ns: str,
                      scope: list[dict[str, Any]]) -> dict[str, Any]:
    sg = s.group if (s.group or s.version) else r.group
    sv = s.version or r.version
    sdef = r.definition if (sg, sv, s.kind) == (r.group, r.version, r.kind) else kinds.definition_name(sg, sv, s.kind)
    gvk = _gvk(sg, sv, s.kind)
    suffix = f"{r.kind}{s.name[:1].upper()}{s.name[1:]}"
    out: dict[str, Any] = {}
    verbs = set(s.verbs)
    write = [P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION]
    if "get" in verbs:
        out["get"] = _op(f"read{gv}{ns}{suffix}", tag, "get", gvk, _responses(("200",), sdef),
                         desc=f"read {s.name} of the specified {r.kind}")
    if "create" in verbs:
        out["post"] = _op(f"create{gv}{ns}{suffix}", tag, "post", gvk, _responses(("200", "201", "202"), sdef),
                          [_body(sdef), *write], desc=f"create {s.name} of a {r.kind}")
    if "update" in verbs:
        out["put"] = _op(f"replace{gv}{ns}{suffix}", tag, "put", gvk, _responses(("200", "201"), sdef),
                         [_body(sdef), *write], desc=f"replace {s.name} of the specified {r.kind}")
    if "patch" in verbs:
        out["patch"] = _op(f"patch{gv}{ns}{suffix}", tag, "patch", gvk, _responses(("200", "201"), sdef),
                           [_body(PATCH), *write, P_FORCE], consumes=list(_PATCH_MEDIA),
                           desc=f"partially update {s.name} of the specified {r.kind}")
    out["parameters"] = [_path_param("name", f"name of the {s.kind}"), *scope, P_PRETTY]
    return out


def _discovery_paths(group: str, version: str) -> dict[str, dict[str, Any]]:
    tag = _tag(group, version)
    gv = _group_camel(group) + version[:1].upper() + version[1:]
    return {
        f"{_prefix(group, version)}/": {
            "get": _op(f"get{gv}APIResources", tag, "", None, _responses(("200",), API_RESOURCE_LIST),
                       consumes=list(_OBJECT_MEDIA), desc="get available resources"),
        }
    }


def _group_paths(group: str) -> dict[str, dict[str, Any]]:
    if not group:
        return {"/api/": {"get": _op("getCoreAPIVersions", "core", "", None, _responses(("200",), API_VERSIONS),
                                     consumes=list(_OBJECT_MEDIA), desc="get available API versions")}}
    camel = _group_camel(group)
    return {f"/apis/{group}/": {"get": _op(f"get{camel}APIGroup", camel[:1].lower() + camel[1:], "", None,
                                           _responses(("200",), API_GROUP), consumes=list(_OBJECT_MEDIA),
                                           desc="get information of a group")}}


def _root_paths() -> dict[str, dict[str, Any]]:
    return {"/apis/": {"get": _op("getAPIVersions", "apis", "", None, _responses(("200",), API_GROUP_LIST),
                                  consumes=list(_OBJECT_MEDIA), desc="get available API versions")}}


def _version_paths() -> dict[str, dict[str, Any]]:
    return {"/version/": {"get": _op("getCodeVersion", "version", "", None, _responses(("200",), VERSION_INFO),
                                     consumes=["application/json"], produces=["application/json"],
                                     desc="get the version information for this server")}}


def _oidc_paths() -> dict[str, dict[str, Any]]:
    return {
        "/.well-known/openid-configuration/": {"get": _op(
            "getServiceAccountIssuerOpenIDConfiguration", "WellKnown", "", None, _responses(("200",), None),
            produces=["application/json"], desc="get service account issuer OpenID configuration")},
        "/openid/v1/jwks/": {"get": _op(
            "getServiceAccountIssuerOpenIDKeyset", "openid", "", None, _responses(("200",), None),
            produces=["application/jwk-set+json"], desc="get service account issuer OpenID JSON Web Key Set")},
    }


def _gv_paths(group: str, version: str) -> dict[str, dict[str, Any]]:
    paths = _discovery_paths(group, version)
    for r in sorted(kinds.resources_in(group, version), key=lambda r: r.plural):
        paths.update(_resource_paths(r))
    return paths


# ------------------------------------------------------------------------------------ definitions

def _refs_in(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            _refs_in(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs_in(v, out)


def _closure(roots: set[str], v2: bool = True) -> dict[str, dict[str, Any]]:
    defs = {**schema.definitions(), **_custom_definitions(v2)}
    seen: dict[str, dict[str, Any]] = {}
    todo = [n for n in roots if n in defs]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen[n] = defs[n]
        found: set[str] = set()
        _refs_in(defs[n], found)
        todo.extend(f for f in found if f in defs and f not in seen)
    return {k: seen[k] for k in sorted(seen)}


def _served_groups() -> list[str]:
    out: list[str] = []
    for r in kinds.all_resources():
        if r.group not in out:
            out.append(r.group)
    return out


# ------------------------------------------------------------------------------- custom resources

def _custom_list_definition(r: ResourceInfo) -> dict[str, Any]:
    return {
        "description": f"{r.list_kind_name} is a list of {r.kind}",
        "required": ["items"],
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {"type": "array", "items": _ref(r.definition)},
            "kind": {"type": "string"},
            "metadata": _ref(META + "ListMeta"),
        },
        "x-kubernetes-group-version-kind": [_gvk(r.group, r.version, r.list_kind_name)],
    }


def _custom_definitions(v2: bool) -> dict[str, dict[str, Any]]:
    return _custom_definitions_at(v2, kinds.CUSTOM.generation)


@functools.lru_cache(maxsize=4)
def _custom_definitions_at(v2: bool, generation: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in kinds.CUSTOM.all():
        out[r.definition] = customresource.published_schema(r, v2)
        out[r.definition + "List"] = _custom_list_definition(r)
    return out


# ------------------------------------------------------------------------------------------- v2

def openapi_v2() -> bytes:
    """The Swagger 2.0 document of every served path, with the definitions they reach."""
    return _openapi_v2(kinds.CUSTOM.generation)


@functools.lru_cache(maxsize=2)
def _openapi_v2(generation: int) -> bytes:
    paths: dict[str, Any] = {}
    paths.update(_oidc_paths())
    for g in _served_groups():
        paths.update(_group_paths(g))
        for v in kinds.group_versions().get(g, []):
            if kinds.resources_in(g, v):
                paths.update(_gv_paths(g, v))
    paths.update(_root_paths())
    paths.update(_version_paths())
    roots: set[str] = set(_ALWAYS) | {VERSION_INFO}
    _refs_in(paths, roots)
    doc = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": SPEC_VERSION},
        "paths": dict(sorted(paths.items())),
        "definitions": _closure(roots),
        "securityDefinitions": {
            "BearerToken": {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization",
                            "in": "header"}
        },
        "security": [{"BearerToken": []}],
    }
    return orjson.dumps(doc)


# The protobuf form of /openapi/v2 (gnostic's openapi.v2.Document), under both names kube-openapi accepts;
# it answers with the second whichever was asked for.
V2_PROTOBUF_DEPRECATED = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
V2_JSON = "application/json"
_V2_OFFERS = ((V2_JSON, V2_JSON), (V2_PROTOBUF_DEPRECATED, V2_PROTOBUF), (V2_PROTOBUF, V2_PROTOBUF))


def openapi_v2_protobuf() -> bytes:
    """The v2 document as gnostic's protobuf, made from the JSON bytes as kube-openapi makes it."""
    return _openapi_v2_protobuf(kinds.CUSTOM.generation)


@functools.lru_cache(maxsize=2)
def _openapi_v2_protobuf(generation: int) -> bytes:
    return openapi_proto.encode_document(orjson.loads(_openapi_v2(generation)))


def openapi_v2_etag() -> str:
    """The quoted ETag of /openapi/v2 (either form): uppercase hex SHA-512 of the JSON form, as kube-openapi has it."""
    return _openapi_v2_etag(kinds.CUSTOM.generation)


@functools.lru_cache(maxsize=2)
def _openapi_v2_etag(generation: int) -> str:
    return f'"{hashlib.sha512(_openapi_v2(generation)).hexdigest().upper()}"'


def openapi_v2_media_type(accept: str) -> str | None:
    """The Content-Type /openapi/v2 answers an Accept header with (JSON or protobuf), or None for a 406.

    As kube-openapi: the clauses by quality, then concrete types before wildcards; the first that matches an offered
    type, in the order JSON, protobuf (old name), protobuf. A missing header is */*.
    """
    ranges = parse_media_ranges(accept or "*/*")
    ranges.sort(key=lambda r: (-r[2], r[0].startswith("*/"), r[0].endswith("/*")))
    for mt, _params, q in ranges:
        if q <= 0:
            continue
        want_type, _, want_sub = ("*/*" if mt == "*" else mt).partition("/")
        for offer, answer in _V2_OFFERS:
            offer_type, _, offer_sub = offer.partition("/")
            if want_type in ("*", offer_type) and want_sub in ("*", offer_sub):
                return answer
    return None


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names etag (or is *), compared weakly as Go's http.ServeContent does."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag.removeprefix("W/"):
            return True
    return False


# ------------------------------------------------------------------------------------------- v3

def _schema_v3(node: Any) -> Any:
    """A v2 definition in v3 form: component refs, and a $ref with siblings wrapped in allOf as Kubernetes does."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = {"$ref": ref.replace("#/definitions/", "#/components/schemas/")}
            siblings = {k: _schema_v3(v) for k, v in node.items() if k != "$ref"}
            if not siblings:
                return target
            out["allOf"] = [target]
            out.update(siblings)
            return out
        for k, v in node.items():
            out[k] = _schema_v3(v)
        return out
    if isinstance(node, list):
        return [_schema_v3(v) for v in node]
    return node


def _param_v3(p: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in p.items() if k not in ("type", "uniqueItems")}
    out["schema"] = {"type": p.get("type", "string"), "uniqueItems": True}
    return out


def _op_v3(op: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    produces = op.get("produces") or ["application/json"]
    consumes = op.get("consumes") or ["*/*"]
    for k, v in op.items():
        if k in ("consumes", "produces", "schemes", "parameters", "responses"):
            continue
        out[k] = v
    params = []
    for p in op.get("parameters", []):
        if p.get("in") == "body":
            schema_ = _schema_v3(p["schema"])
            out["requestBody"] = {"content": {ct: {"schema": schema_} for ct in consumes},
                                  "required": bool(p.get("required"))}
        else:
            params.append(_param_v3(p))
    if params:
        out["parameters"] = params
    responses: dict[str, Any] = {}
    for code, resp in op.get("responses", {}).items():
        r: dict[str, Any] = {"description": resp.get("description", "")}
        if "schema" in resp:
            r["content"] = {ct: {"schema": _schema_v3(resp["schema"])} for ct in produces}
        responses[code] = r
    out["responses"] = responses
    # Keep the Kubernetes extensions after the standard keys.
    for ext in ("x-kubernetes-action", "x-kubernetes-group-version-kind"):
        if ext in out:
            out[ext] = out.pop(ext)
    return out


def _paths_v3(paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, item in paths.items():
        new: dict[str, Any] = {}
        for method, op in item.items():
            if method == "parameters":
                new["parameters"] = [_param_v3(p) for p in op]
            else:
                new[method] = _op_v3(op)
        out[path] = new
    return out


def _v3_doc(paths: dict[str, dict[str, Any]], extra_roots: tuple[str, ...] = ()) -> dict[str, Any]:
    roots: set[str] = set(extra_roots)
    _refs_in(paths, roots)
    schemas = {name: _schema_v3(d) for name, d in _closure(roots, v2=False).items()}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SPEC_VERSION},
        "paths": _paths_v3(dict(sorted(paths.items()))),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {"type": "apiKey", "description": "Bearer Token authentication",
                                "name": "authorization", "in": "header"}
            },
        },
    }


def _v3_paths_for(path: str) -> tuple[dict[str, dict[str, Any]], tuple[str, ...]] | None:
    """The v2-shaped paths a v3 document serves, keyed the way /openapi/v3 names it (api/v1, apis/g/v...)."""
    parts = [p for p in path.strip("/").split("/") if p]
    groups = _served_groups()
    gvs = kinds.group_versions()
    if parts == ["api"]:
        return _group_paths(""), ()
    if parts == ["apis"]:
        return _root_paths(), ()
    if parts == ["version"]:
        return _version_paths(), ()
    if parts == [".well-known", "openid-configuration"]:
        return {k: v for k, v in _oidc_paths().items() if k.startswith("/.well-known")}, ()
    if parts == ["openid", "v1", "jwks"]:
        return {k: v for k, v in _oidc_paths().items() if k.startswith("/openid")}, ()
    if len(parts) == 2 and parts[0] == "api":
        if "" in groups and parts[1] in gvs.get("", []) and kinds.resources_in("", parts[1]):
            return _gv_paths("", parts[1]), ()
        return None
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups and parts[1]:
        return _group_paths(parts[1]), ()
    if (
        len(parts) == 3
        and parts[0] == "apis"
        and parts[1]
        and parts[1] in groups
        and parts[2] in gvs.get(parts[1], [])
        and kinds.resources_in(parts[1], parts[2])
    ):
        return _gv_paths(parts[1], parts[2]), ()
    return None


def _v3_keys() -> list[str]:
    keys = [".well-known/openid-configuration", "api", "apis", "openid/v1/jwks", "version"]
    gvs = kinds.group_versions()
    for g in _served_groups():
        for v in gvs.get(g, []):
            if kinds.resources_in(g, v):
                keys.append(f"api/{v}" if not g else f"apis/{g}/{v}")
        if g:
            keys.append(f"apis/{g}")
    return sorted(set(keys))


def _v3_bytes(path: str) -> bytes | None:
    return _v3_bytes_at(path, kinds.CUSTOM.generation)


@functools.lru_cache(maxsize=512)
def _v3_bytes_at(path: str, generation: int) -> bytes | None:
    found = _v3_paths_for(path)
    if found is None:
        return None
    paths, roots = found
    return orjson.dumps(_v3_doc(paths, roots))


def _normalize_key(path: str) -> str:
    return path.split("?", 1)[0].strip("/")


def openapi_v3_group(path: str) -> bytes | None:
    """The OpenAPI 3.0 document for one index entry (e.g. "api/v1", "apis/rbac.authorization.k8s.io/v1"), or None."""
    return _v3_bytes(_normalize_key(path))


def _v3_hash(key: str) -> str:
    return _v3_hash_at(key, kinds.CUSTOM.generation)


@functools.lru_cache(maxsize=512)
def _v3_hash_at(key: str, generation: int) -> str:
    doc = _v3_bytes_at(key, generation)
    return hashlib.sha512(doc or b"").hexdigest().upper()


def openapi_v3_hash(path: str) -> str:
    """Uppercase hex SHA-512 of the v3 document for path, the value Kubernetes puts in ?hash= and the ETag."""
    return _v3_hash(_normalize_key(path))


def openapi_v3_index(hash_fn: Callable[[str], str] | None = None) -> dict[str, Any]:
    """GET /openapi/v3: each document's path with its hash-pinned server-relative URL."""
    fn = hash_fn or openapi_v3_hash
    return {"paths": {k: {"serverRelativeURL": f"/openapi/v3/{k}?hash={fn(k)}"} for k in _v3_keys()}}
