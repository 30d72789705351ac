"""Resource endpoints: get, list, watch, create, update, patch, delete, deletecollection for every served kind."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
from dataclasses import dataclass
from typing import Any
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import orjson

from kubesat import errors, limits
from kubesat.apimachinery import apply as ssa
from kubesat.api import liststream
from kubesat.apimachinery import codec, yamlproc
from kubesat.apimachinery import patch as patching
from kubesat.api.app import Handler, Request, Response, Stream, json_response
from kubesat.api import requestinfo
from kubesat.api.requestinfo import RequestInfo
from kubesat.api.tables import to_table, wants_table
from kubesat.auth.webhookrules import RequestResource
from kubesat.auth.user import UserInfo
from kubesat.auth.webhooks import Attributes, RequestAdmission, WebhookAdmission
from kubesat.apimachinery import structural
from kubesat.registry import conversion, customresource, kinds
from kubesat.apimachinery import fieldcheck
from kubesat.registry.kinds import ResourceInfo
from kubesat.apimachinery.selectors import parse_field_selector, parse_label_selector
from kubesat.registry.store import DeleteOptions, ListStream, Registry
from kubesat.registry.strategy import Strategy

log = logging.getLogger("kubesat.api")

# (group, resource, subresource) -> handler for POSTs the generic code does not own (TokenRequest, reviews).
CreateHandler = Callable[[Request, ResourceInfo, dict[str, Any]], Awaitable[Response]]
# Called before a create reaches the registry (admission): may mutate the object or raise a StatusError; may
# answer a callback to be told, once the create is over, whether the object was stored (ResourceQuota's charge).
Settle = Callable[[bool], None]
Admission = Callable[[Request, ResourceInfo, str, dict[str, Any]], Awaitable[Settle | None]]

BOOKMARK_EVERY = 60.0
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_LIMIT = 2**31  # more than any store holds
_WATCH_SECONDS = 1800  # a watch without timeoutSeconds


def int64_param(req: Request, name: str, default: int) -> int:
    """A query parameter Kubernetes declares int64: 400 naming it when it is not one."""
    text = req.q(name)
    if not text:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise errors.bad_request(
            f'invalid value for query parameter {name}: "{_clip(text)}" is not an integer') from None
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise errors.bad_request(f'invalid value for query parameter {name}: "{_clip(text)}" is out of the int64 range')
    return value


def check_list_options(req: Request) -> None:
    """The ListOptions query parameters of a list or watch, refused as Kubernetes refuses them."""
    int64_param(req, "timeoutSeconds", 0)
    req.flag("watch")
    req.flag("allowWatchBookmarks")
    rv = req.q("resourceVersion")
    if rv and not (rv.isascii() and rv.isdigit() and int(rv) <= _INT64_MAX):
        raise errors.bad_request(f'invalid resource version "{_clip(rv)}"')
    match = req.q("resourceVersionMatch")
    if not match:
        return
    errs = []
    if not req.q("resourceVersion"):
        errs.append(errors.forbidden_field("resourceVersionMatch",
                                           "resourceVersionMatch is forbidden unless resourceVersion is provided"))
    if match not in ("Exact", "NotOlderThan"):
        errs.append(errors.not_supported("resourceVersionMatch", match, ["Exact", "NotOlderThan"]))
    if errs:
        raise errors.invalid("ListOptions", "", errs, "meta.k8s.io")


def _clip(text: str) -> str:
    return text if len(text) <= 64 else text[:64] + "..."


def check_path_segment(what: str, value: str) -> None:
    """Names and namespaces in the path can never hold control characters, '/' or '%' (400 naming them)."""
    if value and (not value.isprintable() or "/" in value or "%" in value):
        raise errors.bad_request(f"invalid {what} in the request path: {_clip(value)!r} may not contain "
                                 "control characters, '/' or '%'")


@dataclass(frozen=True)
class _BodyKind:
    """The kind a request body decodes to: its name and version for messages, its OpenAPI definition."""

    kind: str
    version: str
    definition: str
    group: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


_DELETE_OPTIONS = _BodyKind("DeleteOptions", "v1", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")


@functools.cache
def _resource_kind(res: ResourceInfo) -> _BodyKind:
    return _BodyKind(res.kind, res.version, res.definition, res.group)


@functools.cache
def _request_kind(res: ResourceInfo, subresource: str) -> _BodyKind:
    """The kind a create-only endpoint reads (TokenRequest for serviceaccounts/token, else the resource's)."""
    sub = next((s for s in res.subresources if s.name == subresource), None) if subresource else None
    if sub is None or sub.kind == res.kind:
        return _resource_kind(res)
    group, version = sub.group or res.group, sub.version or res.version
    return _BodyKind(sub.kind, version, kinds.definition_name(group, version, sub.kind), group)


def _large(req: Request) -> bool:
    """Whether the request's body is large enough that working on it belongs off the event loop."""
    return len(req.body) > limits.OFFLOAD_BYTES


def _user_agent_manager(req: Request) -> str:
    """Kubernetes' default field manager: the User-Agent's program name, e.g. `kubectl` or `Python`."""
    ua = req.headers.get("user-agent", "")
    name = ua.split("/", 1)[0].strip()
    return name[:128] or "unknown"


_NOT_FOUND = "the server could not find the requested resource"
# What kube-apiserver reads and writes custom resources as.
CUSTOM_MEDIA_TYPES = ("application/json", "application/yaml")
_MAX_CONVERTING = 256


def _accepts_json_or_yaml(accept: str) -> bool:
    """Whether an Accept header lets the answer be JSON or YAML (a list naming protobuf first still does)."""
    for part in accept.split(","):
        mt = part.split(";", 1)[0].strip().lower()
        if mt in ("application/json", "application/yaml", "application/*", "*/*", "", "application/x-yaml",
                  "application/json;stream=watch"):
            return True
    return False


def _served(info: RequestInfo) -> tuple[ResourceInfo, tuple[str, ...]]:
    """The resource a request names and the verbs its (sub)resource allows; 404 when it is not served,
    400 when the path's namespace or name could never be one."""
    res = kinds.lookup(info.api_group, info.api_version, info.resource)
    if res is None or (res.namespaced is False and info.namespace and res.plural != "namespaces"):
        raise errors.StatusError(404, "NotFound", _NOT_FOUND, details={})
    allowed = res.verbs
    if info.subresource:
        sub = next((s for s in res.subresources if s.name == info.subresource), None)
        if sub is None or sub.connect:  # a connect subresource reaches here only when no handler serves it
            raise errors.StatusError(404, "NotFound", _NOT_FOUND, details={})
        allowed = sub.verbs
    check_path_segment("namespace", info.namespace)
    check_path_segment("name", info.name)
    return res, allowed


def _watch_start(req: Request) -> tuple[int, float]:
    """A watch's starting revision (0: from the current state) and how long it lasts: timeoutSeconds
    when given, else the server's 30 minutes."""
    rv_s = req.q("resourceVersion")
    try:
        rv = int(rv_s) if rv_s else 0
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{rv_s}"') from None
    if not 0 <= rv <= _INT64_MAX:
        raise errors.bad_request(f'invalid resource version "{rv_s}"')
    timeout = float(min(int64_param(req, "timeoutSeconds", 0), _MAX_LIMIT) or _WATCH_SECONDS)
    if timeout < 0:
        raise errors.bad_request("invalid value for query parameter timeoutSeconds: must not be negative")
    return rv, timeout


class ResourceHandler:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.yaml = yamlproc.YamlHelper()
        self.create_handlers: dict[tuple[str, str, str], CreateHandler] = {}
        # (group, resource, subresource) -> handler of a connect subresource (pods/exec, pods/log, nodes/proxy):
        # any method, no stored object of its own.
        self.connect_handlers: dict[tuple[str, str, str], Handler] = {}
        self.admission: list[Admission] = []
        # The admission webhooks (auth/webhooks.py), called by the registry around each write it stores.
        self.webhooks: WebhookAdmission | None = None
        # How CRDs' conversion webhooks are called (auth/conversionwebhook.py); without it Webhook converts as None.
        self.conversion_webhooks: conversion.CustomConverter | None = None
        # Checks on the final object of every write, old None on create (e.g. RBAC escalation); raise to refuse.
        self.write_checks: list[Callable[[Request, ResourceInfo, dict[str, Any] | None, dict[str, Any]], None]] = []
        # Handlers of resources stored as another (events.k8s.io Events), each over a registry that converts.
        self._converting: dict[ResourceInfo, ResourceHandler] = {}
        # subresource -> its handler for custom resources (scale), whatever their group and version.
        self.custom_subresources: dict[str, Handler] = {}
        self._by_verb: dict[str, Callable[[Request, ResourceInfo, str], Awaitable[Response | Stream]]] = {
            "get": self._get, "list": self._list, "watch": self._watch, "create": self._create,
            "update": self._update, "patch": self._patch, "delete": self._delete,
            "deletecollection": self._delete_collection,
        }

    async def __call__(self, req: Request) -> Response | Stream:
        info = req.info
        connect = self.connect_handlers.get((info.api_group, info.resource, info.subresource))
        if connect is not None and info.name and info.api_version == "v1":
            check_path_segment("namespace", info.namespace)
            check_path_segment("name", info.name)
            await self._admit_connect(req)
            return await connect(req)
        res, allowed = _served(info)
        ns = info.namespace if res.namespaced and res.plural != "namespaces" else ""
        if res.custom is not None:
            custom = self._custom_request(req, res)
            if custom is not None:
                return await custom(req)
        special = self.create_handlers.get((res.group, res.plural, info.subresource))
        if special is not None:
            if req.method != "POST":
                raise errors.method_not_allowed()
            body = await self._body(req, _request_kind(res, info.subresource))
            if res.stored or info.subresource:  # reviews are answers, not writes
                await self._admit_special_create(req, res, ns, body)
            return await special(req, res, body)
        verb = info.verb
        handler = self._by_verb.get(verb)
        if handler is None or not (res.stored or res.stored_as) or verb not in allowed or (
                verb == "create" and info.name):
            if verb == "create" and res.custom is not None and res.custom.terminating:
                raise errors.method_not_allowed("create not allowed while custom resource definition is terminating")
            raise errors.method_not_allowed()
        if res.stored_as or (res.custom is not None and res.custom.multi_version):
            return await self._converting_handler(res)._by_verb[verb](req, res, ns)
        return await handler(req, res, ns)

    def _custom_request(self, req: Request, res: ResourceInfo) -> Handler | None:
        """What differs for a custom resource: JSON and YAML only (no protobuf either way), and its own handlers
        of subresources such as scale; None to go on as for any resource."""
        if req.body and codec.media_type(req.headers.get("content-type")) == codec.PROTOBUF:
            raise errors.StatusError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                     "accepted media types include: " + ", ".join(CUSTOM_MEDIA_TYPES))
        accept = req.headers.get("accept")
        if accept and not _accepts_json_or_yaml(accept):
            raise errors.not_acceptable("only the following media types are accepted: "
                                        + ", ".join(CUSTOM_MEDIA_TYPES))
        warning = customresource.deprecation_warning(res)
        if warning:
            req.warnings.append(warning)
        return self.custom_subresources.get(req.info.subresource) if req.info.subresource else None

    def _converting_handler(self, res: ResourceInfo) -> ResourceHandler:
        """These same endpoints for a resource stored as another: bodies are converted on their way to and from
        the store, so that get, list, watch, writes, patches and tables all see the resource's own form."""
        view = self._converting.get(res)
        if view is None:
            if len(self._converting) > _MAX_CONVERTING:  # views of custom resources whose CRD has changed since
                self._converting.clear()
            view = ResourceHandler(conversion.served_registry(self.registry, res, self.conversion_webhooks))
            view.yaml, view.admission, view.write_checks = self.yaml, self.admission, self.write_checks
            view.webhooks, view.conversion_webhooks = self.webhooks, self.conversion_webhooks
            self._converting[res] = view
        return view

    async def _get(self, req: Request, res: ResourceInfo, ns: str) -> Response:
        obj = await self.registry.get(res, ns, req.info.name)
        return self._reply_one(req, res, obj, 200)

    # ------------------------------------------------------------------------- helpers
    def _reply_one(self, req: Request, res: ResourceInfo, obj: dict[str, Any], status: int) -> Response:
        if wants_table(req.headers.get("accept")):
            strategy = self.registry.strategy(res)
            table = to_table(strategy, [obj], include_object=req.q("includeObject", "Metadata"),
                             list_meta={"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")})
            return json_response(status, table, req)
        return json_response(status, obj, req)

    def _dry_run(self, req: Request) -> bool:
        values = req.query.get("dryRun") or []
        for v in values:
            if v != "All":
                raise errors.bad_request(f'Invalid dry run value: "{v}". Supported values: "All"')
        return bool(values)

    async def _body(self, req: Request, kind: _BodyKind, check_kind: bool = True) -> dict[str, Any]:
        """The request body decoded, its kind and fields checked; a large one is worked on off the event
        loop (YAML in a child process, the rest in a thread), so that it never stalls other requests."""
        content_type, raw = req.headers.get("content-type"), req.body
        if codec.media_type(content_type) in codec.YAML_TYPES:
            raw, content_type = await self.yaml.to_json(raw), codec.JSON
        if len(raw) <= limits.OFFLOAD_BYTES:
            return self._body_now(req, kind, check_kind, content_type, raw)
        return await asyncio.to_thread(self._body_now, req, kind, check_kind, content_type, raw)

    def _body_now(self, req: Request, kind: _BodyKind, check_kind: bool, content_type: str | None,
                  raw: bytes) -> dict[str, Any]:
        obj = codec.decode_object(content_type, raw)
        if check_kind:
            codec.check_kind(obj, kind.api_version, kind.kind)
        json_body = raw if codec.media_type(content_type) in ("", codec.JSON) else None
        self._check_fields(req, kind, obj, json_body)
        return obj

    async def _decode(self, req: Request, res: ResourceInfo) -> dict[str, Any]:
        obj = await self._body(req, _resource_kind(res))
        if res.custom is not None:
            self._custom_fields(req, res, obj)
        return obj

    def _field_validation(self, req: Request, res: ResourceInfo, obj: dict[str, Any]) -> None:
        self._check_fields(req, _resource_kind(res), obj, None)
        if res.custom is not None:
            self._custom_fields(req, res, obj)

    def _custom_fields(self, req: Request, res: ResourceInfo, obj: dict[str, Any]) -> None:
        """A custom resource's fields its schema does not declare: pruned, and reported as fieldValidation says."""
        removed = customresource.prune_unknown(res, obj)
        mode = req.q("fieldValidation", "Warn")
        if not removed or mode == "Ignore":
            return
        if mode == "Strict":
            raise errors.bad_request(structural.strict_unknown_fields_message(res.kind, res.version, removed))
        req.warnings.extend(structural.unknown_field_warnings(removed))

    def _check_fields(self, req: Request, kind: _BodyKind, obj: dict[str, Any], json_body: bytes | None) -> None:
        """Type errors are 400s; unknown fields are dropped (as Go decoding drops them) and, per
        fieldValidation, reported as warnings or refused; duplicate JSON fields likewise."""
        mode = req.q("fieldValidation", "Warn")
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f'fieldValidation parameter unsupported: "{mode}". Supported values: "Ignore", "Warn", "Strict"'
            )
        keys = fieldcheck.fitting_keys(obj, kind.definition)
        unknown: list[str] = []
        if keys < 0:  # something does not fit: the walks say what
            type_errs = fieldcheck.type_errors(obj, kind.definition)
            if type_errs:
                # Kubernetes' decoder stops at the first type error.
                raise errors.bad_request(f'{kind.kind} in version "{kind.version}" cannot be handled as a '
                                         f'{kind.kind}: ' + type_errs[0])
            unknown = fieldcheck.unknown_fields(obj, kind.definition, prune=mode != "Strict")
        if mode == "Ignore":
            return
        dups = fieldcheck.find_duplicate_fields(json_body, keys if keys >= 0 else None) if json_body else []
        if not unknown and not dups:
            return
        if mode == "Strict":
            raise errors.bad_request(fieldcheck.strict_error_message(unknown, dups))
        for f in unknown:
            req.warnings.append(f'unknown field "{f}"')
        for f in dups:
            req.warnings.append(f'duplicate field "{f}"')

    def _manager(self, req: Request, default_suffix: str = "") -> str:
        m = req.q("fieldManager")
        if m:
            if len(m) > 128:
                raise errors.bad_request("fieldManager: Too long: may not be more than 128 bytes")
            return m
        return _user_agent_manager(req)

    def _managed_hook(self, req: Request, res: ResourceInfo, subresource: str = "",  # type: ignore[no-untyped-def]
                      record: bool = True):
        manager = self._manager(req) if record else ""
        checks = self.write_checks

        def hook(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
            for check in checks:
                check(req, res, old, new)
            if not record:
                return
            mf = ssa.record_update(old, new, manager, res.definition, self.registry.now(), subresource)
            if mf:
                new["metadata"]["managedFields"] = mf
            else:
                new["metadata"].pop("managedFields", None)

        return hook

    # ------------------------------------------------------------------------ webhooks
    def _webhooks(self, req: Request, res: ResourceInfo, ns: str, operation: str, name: str,
                  options: dict[str, Any]) -> RequestAdmission | None:
        """The admission webhook calls of one write, None when none could apply."""
        if self.webhooks is None:
            return None
        r = RequestResource.of(res, req.info.subresource, ns)
        return self.webhooks.for_request(Attributes(
            operation, r, name, req.user, bool(options.get("dryRun")), options,
            _equivalents(res, req.info.subresource, ns), req.warnings, req.audit))

    async def _admit_connect(self, req: Request) -> None:
        """Webhooks on CONNECT (exec, attach, portforward, the proxies), with the options as the object."""
        info = req.info
        res = kinds.lookup(info.api_group, info.api_version, info.resource)
        sub = next((s for s in res.subresources if s.name == info.subresource), None) if res is not None else None
        # Only real connect subresources (pods/log is a read; scale has handlers of its own that admit updates).
        if self.webhooks is None or res is None or sub is None or not sub.connect or sub.name == "log":
            return
        ns = info.namespace if res.namespaced else ""
        r = RequestResource.of(res, info.subresource, ns)
        calls = self.webhooks.for_request(Attributes("CONNECT", r, info.name, req.user, False, None, (),
                                                     req.warnings, req.audit))
        if calls is not None:
            obj = _connect_options(req, r.kind)
            await calls.mutate(None, obj)
            await calls.validate(None, obj)

    def update_webhooks(self, req: Request, res: ResourceInfo, ns: str) -> RequestAdmission | None:
        """The webhook calls of an UPDATE of the request's object, for the handlers of subresources (scale)."""
        return self._webhooks(req, res, ns, "UPDATE", req.info.name,
                              _options(req, "UpdateOptions", self._dry_run(req)))

    async def _admit_special_create(self, req: Request, res: ResourceInfo, ns: str, body: dict[str, Any]) -> None:
        """Webhooks on a create the generic code does not store (pods/eviction, pods/binding, serviceaccounts/token):
        called on the body before its handler reads it."""
        name = req.info.name or str((body.get("metadata") or {}).get("name") or "")
        calls = self._webhooks(req, res, ns, "CREATE", name, _options(req, "CreateOptions", self._dry_run(req)))
        if calls is not None:
            await calls.mutate(None, body)
            await calls.validate(None, body)

    def _create_webhooks(self, req: Request, res: ResourceInfo, ns: str,
                         obj: dict[str, Any]) -> RequestAdmission | None:
        meta = obj.get("metadata")
        name = str(meta.get("name") or "") if isinstance(meta, dict) else ""
        return self._webhooks(req, res, ns, "CREATE", name, _options(req, "CreateOptions", self._dry_run(req)))

    def _delete_webhooks(self, req: Request, res: ResourceInfo, ns: str, name: str,
                         opts: DeleteOptions) -> RequestAdmission | None:
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        if opts.grace_period is not None:
            options["gracePeriodSeconds"] = opts.grace_period
        if opts.propagation:
            options["propagationPolicy"] = opts.propagation
        if opts.uid or opts.resource_version:
            options["preconditions"] = {k: v for k, v in (("uid", opts.uid),
                                                          ("resourceVersion", opts.resource_version)) if v}
        if opts.dry_run:
            options["dryRun"] = ["All"]
        return self._webhooks(req, res, ns, "DELETE", name, options)

    # --------------------------------------------------------------------------- reads
    async def _list(self, req: Request, res: ResourceInfo, ns: str) -> Response | Stream:
        check_list_options(req)
        strategy = self.registry.strategy(res)
        labels = parse_label_selector(req.q("labelSelector"))
        fields = parse_field_selector(
            req.q("fieldSelector"),
            lambda f: f in ("metadata.name", "metadata.namespace") or f in res.field_selectors,
            res.kind, res.version,
        )
        # Any int64 is a valid limit; past what a store could hold it means "everything".
        limit = min(max(int64_param(req, "limit", 0), 0), _MAX_LIMIT)
        page = await self.registry.open_list(res, ns, labels=labels, fields=fields, limit=limit,
                                             continue_token=req.q("continue"))
        list_meta: dict[str, Any] = {"resourceVersion": page.resource_version}
        if page.continue_token:
            list_meta["continue"] = page.continue_token
        table = wants_table(req.headers.get("accept"))
        if page.items is None:  # more than a chunk: streamed from the list's snapshot
            return _list_stream(req, res, page, list_meta, strategy if table else None)
        if table:
            return json_response(200, to_table(strategy, page.items, include_object=req.q("includeObject", "Metadata"),
                                               list_meta=list_meta), req)
        return json_response(200, {
            "kind": res.list_kind_name,
            "apiVersion": res.api_version,
            "metadata": list_meta,
            "items": page.items,
        }, req)

    async def _watch(self, req: Request, res: ResourceInfo, ns: str) -> Stream:
        check_list_options(req)
        labels = parse_label_selector(req.q("labelSelector"))
        fields = parse_field_selector(
            req.q("fieldSelector"),
            lambda f: f in ("metadata.name", "metadata.namespace") or f in res.field_selectors,
            res.kind, res.version,
        )
        if req.info.name:
            fields = fields + (("metadata.name", "=", req.info.name),)
        rv, timeout = _watch_start(req)
        bookmarks = req.flag("allowWatchBookmarks")
        table = wants_table(req.headers.get("accept"))
        strategy = self.registry.strategy(res)
        registry = self.registry
        if rv and rv < registry.store.oldest_revision():
            # As kube-apiserver: the watch starts (200) and its one event is an ERROR carrying the 410 Status,
            # the form the official clients and client-go's reflector look for.
            expired = errors.gone(f"too old resource version: {rv} ({registry.store.oldest_revision()})")

            async def expired_stream(write: Callable[[bytes], Awaitable[None]], _req: Request) -> None:
                await write(orjson.dumps({"type": "ERROR", "object": expired.status()}) + b"\n")

            return Stream(200, expired_stream)
        send_initial = rv == 0

        def encode(kind: str, obj: dict[str, Any]) -> bytes:
            if table and kind != "BOOKMARK":
                obj = to_table(strategy, [obj], include_object=req.q("includeObject", "Metadata"),
                               list_meta={"resourceVersion": obj["metadata"].get("resourceVersion", "")})
            return orjson.dumps({"type": kind, "object": obj}) + b"\n"

        async def streamer(write: Callable[[bytes], Awaitable[None]], _req: Request) -> None:
            start = rv
            if send_initial:
                # "Get state and start at most recent": synthetic ADDED for what exists, then the changes after
                # the list's revision.
                listed = await _initial_events(registry.open_list(res, ns, labels=labels, fields=fields), write,
                                               encode)
                if listed is None:
                    return
                start = listed
            last_rv = start
            events = registry.watch(res, ns, after_revision=start, labels=labels, fields=fields)
            it = events.__aiter__()
            deadline = asyncio.get_running_loop().time() + timeout
            try:
                while True:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        return
                    wait = min(remaining, BOOKMARK_EVERY) if bookmarks else remaining
                    try:
                        kind, obj = await asyncio.wait_for(it.__anext__(), wait)
                    except TimeoutError:
                        if bookmarks:
                            cur = max(last_rv, await registry.revision())
                            await write(encode("BOOKMARK", {
                                "kind": res.kind, "apiVersion": res.api_version,
                                "metadata": {"resourceVersion": str(cur)},
                            }))
                        continue
                    except StopAsyncIteration:
                        return
                    except errors.StatusError as e:
                        await write(_watch_error(e))
                        return
                    last_rv = int(obj["metadata"].get("resourceVersion") or last_rv)
                    await write(encode(kind, obj))
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        return Stream(200, streamer)

    # -------------------------------------------------------------------------- writes
    async def _create(self, req: Request, res: ResourceInfo, ns: str) -> Response:
        obj = await self._decode(req, res)
        dry = self._dry_run(req)
        async with self._admitted(req, res, ns, obj):
            created = await self.registry.create(res, ns, obj, dry_run=dry, hook=self._managed_hook(req, res),
                                                 offload=_large(req), admit=self._create_webhooks(req, res, ns, obj))
        return self._reply_one(req, res, created, 201)

    async def create_as(self, user: UserInfo, user_agent: str, res: ResourceInfo, ns: str,
                        obj: dict[str, Any]) -> dict[str, Any]:
        """A create made inside the server on behalf of `user` (a controller's pod), through what an API request
        goes through: the admission plugins (ServiceAccount, LimitRanger, ResourceQuota ...), the webhooks and the
        policies, and managedFields under the manager `user_agent` names, as kube-controller-manager's creates."""
        group = f"apis/{res.group}" if res.group else "api"
        path = f"/{group}/{res.version}/namespaces/{ns}/{res.plural}" if res.namespaced else \
            f"/{group}/{res.version}/{res.plural}"
        req = Request({}, "POST", path, {}, {"user-agent": user_agent}, requestinfo.parse("POST", path, False),
                      user=user)
        async with self._admitted(req, res, ns, obj):
            return await self.registry.create(res, ns, obj, hook=self._managed_hook(req, res),
                                              admit=self._create_webhooks(req, res, ns, obj))

    @contextlib.asynccontextmanager
    async def _admitted(self, req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> AsyncIterator[None]:
        """Run the admission steps on a new object; the body stores it, and the steps that asked are told whether
        it was stored."""
        settles: list[Settle] = []
        stored = False
        try:
            for adm in self.admission:
                if (settle := await adm(req, res, ns, obj)) is not None:
                    settles.append(settle)
            yield
            stored = True
        finally:
            for settle in settles:
                settle(stored)

    async def _update(self, req: Request, res: ResourceInfo, ns: str) -> Response:
        obj = await self._decode(req, res)
        dry = self._dry_run(req)
        sub = req.info.subresource
        updated, created = await self.registry.update(
            res, ns, req.info.name, obj, dry_run=dry, subresource=sub,
            hook=self._managed_hook(req, res, sub), offload=_large(req),
            admit=self._webhooks(req, res, ns, "UPDATE", req.info.name, _options(req, "UpdateOptions", dry)),
        )
        return self._reply_one(req, res, updated, 201 if created else 200)

    async def _patch(self, req: Request, res: ResourceInfo, ns: str) -> Response:
        ct = codec.media_type(req.headers.get("content-type"))
        dry = self._dry_run(req)
        sub = req.info.subresource
        name = req.info.name
        if ct in (codec.APPLY_PATCH_YAML, codec.APPLY_PATCH_CBOR):
            return await self._apply(req, res, ns, dry)
        if res.custom is not None and ct not in (codec.JSON_PATCH, codec.MERGE_PATCH):
            raise errors.StatusError(
                415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types "
                f"include: {codec.JSON_PATCH}, {codec.MERGE_PATCH}, {codec.APPLY_PATCH_YAML}")
        if ct not in (codec.JSON_PATCH, codec.MERGE_PATCH, codec.STRATEGIC_PATCH):
            raise errors.StatusError(
                415, "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{codec.JSON_PATCH}, {codec.MERGE_PATCH}, {codec.STRATEGIC_PATCH}, {codec.APPLY_PATCH_YAML}",
            )
        patch_body: Any = req.body
        if len(patch_body) > limits.OFFLOAD_BYTES:  # parsed off the event loop, as other large bodies are
            patch_body = await asyncio.to_thread(patching.decode_patch, ct == codec.JSON_PATCH,
                                                 ct == codec.MERGE_PATCH, patch_body)

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            # A parsed patch is copied for each try: what one try stored must not change the next.
            body = patch_body if isinstance(patch_body, bytes) else copy.deepcopy(patch_body)
            with _bad_input_is_400():
                if ct == codec.JSON_PATCH:
                    new = patching.apply_json_patch(current, body)
                elif ct == codec.MERGE_PATCH:
                    new = patching.apply_merge_patch(current, body)
                else:
                    new = patching.apply_strategic_merge_patch(current, body, res.definition)
            if not isinstance(new, dict):
                raise errors.bad_request("the patch did not produce an object")
            limits.check_document(new)
            codec.check_kind(new, res.api_version, res.kind)
            self._field_validation(req, res, new)
            return new

        updated, created = await self.registry.guaranteed_update(
            res, ns, name, mutate, dry_run=dry, subresource=sub, hook=self._managed_hook(req, res, sub),
            # Copies can make a small JSON patch do megabytes of work (bounded, but not for the loop).
            offload=_large(req) or (ct == codec.JSON_PATCH and b'"copy"' in req.body),
            admit=self._webhooks(req, res, ns, "UPDATE", name, _options(req, "UpdateOptions", dry)),
        )
        return self._reply_one(req, res, updated, 201 if created else 200)

    async def _apply(self, req: Request, res: ResourceInfo, ns: str, dry: bool) -> Response:
        manager = req.q("fieldManager")
        if not manager:
            raise errors.bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        force = req.flag("force")
        applied = await self._body(req, _resource_kind(res))
        sub = req.info.subresource
        name = req.info.name
        meta = applied.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            with _bad_input_is_400():
                new = ssa.server_side_apply(current, applied, manager, force, res.definition,
                                            self.registry.now(), sub)
            limits.check_document(new)
            return new

        def create() -> dict[str, Any]:
            with _bad_input_is_400():
                return ssa.server_side_apply(None, copy.deepcopy(applied), manager, force, res.definition,
                                             self.registry.now(), sub)

        if await self.registry.get_or_none(res, ns, name) is None and self.admission:
            obj = create()
            obj.setdefault("metadata", {})["name"] = name
            async with self._admitted(req, res, ns, obj):
                created = await self.registry.create(res, ns, obj, dry_run=dry,
                                                     hook=self._managed_hook(req, res, sub, record=False),
                                                     offload=_large(req),
                                                     admit=self._create_webhooks(req, res, ns, obj))
            return self._reply_one(req, res, created, 201)
        updated, created_flag = await self.registry.guaranteed_update(
            res, ns, name, mutate, dry_run=dry, subresource=sub, create_if_missing=create,
            hook=self._managed_hook(req, res, sub, record=False), offload=_large(req),
            admit=self._webhooks(req, res, ns, "UPDATE", name, _options(req, "UpdateOptions", dry)),
        )
        return self._reply_one(req, res, updated, 201 if created_flag else 200)

    async def _delete_options(self, req: Request) -> DeleteOptions:
        opts = DeleteOptions(dry_run=self._dry_run(req))
        body: dict[str, Any] = {}
        if req.body.strip():
            body = await self._body(req, _DELETE_OPTIONS, check_kind=False)
            kind = body.get("kind")
            if kind not in (None, "DeleteOptions"):
                raise errors.bad_request(
                    f"the kind in the data ({kind}) does not match the expected kind (DeleteOptions)")
        prop = req.q("propagationPolicy") or body.get("propagationPolicy") or ""
        if prop and prop not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid("DeleteOptions", "", [errors.not_supported(
                "propagationPolicy", prop, ["Foreground", "Background", "Orphan", "nil"])])
        orphan = body.get("orphanDependents")
        if req.q("orphanDependents") in ("true", "false"):
            orphan = req.q("orphanDependents") == "true"
        if isinstance(orphan, bool):
            opts.orphan_dependents = orphan
        if orphan is True:
            prop = prop or "Orphan"
        opts.propagation = prop
        pre = body.get("preconditions") or {}
        if isinstance(pre, dict):
            opts.uid = str(pre.get("uid") or "")
            opts.resource_version = str(pre.get("resourceVersion") or "")
        if body.get("dryRun") == ["All"]:
            opts.dry_run = True
        if req.q("gracePeriodSeconds"):
            opts.grace_period = int64_param(req, "gracePeriodSeconds", 0)
        elif body.get("gracePeriodSeconds") is not None:
            grace = body["gracePeriodSeconds"]
            if isinstance(grace, bool) or not isinstance(grace, int) or not _INT64_MIN <= grace <= _INT64_MAX:
                raise errors.bad_request("gracePeriodSeconds must be an integer")
            opts.grace_period = grace
        return opts

    async def _delete(self, req: Request, res: ResourceInfo, ns: str) -> Response:
        opts = await self._delete_options(req)
        obj, gone = await self.registry.delete(res, ns, req.info.name, opts,
                                               admit=self._delete_webhooks(req, res, ns, req.info.name, opts))
        # 202 only for an object that stays and a request that set orphanDependents=false, as kube-apiserver
        # answers (finalizers, graceful pods and namespaces are 200 with the object otherwise).
        return self._reply_one(req, res, obj, 202 if not gone and opts.orphan_dependents is False else 200)

    async def _delete_collection(self, req: Request, res: ResourceInfo, ns: str) -> Response:
        opts = await self._delete_options(req)
        labels = parse_label_selector(req.q("labelSelector"))
        fields = parse_field_selector(
            req.q("fieldSelector"),
            lambda f: f in ("metadata.name", "metadata.namespace") or f in res.field_selectors,
            res.kind, res.version,
        )
        page = await self.registry.list(res, ns, labels=labels, fields=fields)
        deleted = []
        for obj in page.items:
            m = obj["metadata"]
            try:
                d, _ = await self.registry.delete(
                    res, m.get("namespace", ""), m["name"], opts,
                    admit=self._delete_webhooks(req, res, m.get("namespace", ""), m["name"], opts))
                deleted.append(d)
            except errors.StatusError as e:
                if e.code != 404:
                    raise
        return json_response(200, {
            "kind": res.list_kind_name, "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(await self.registry.revision())},
            "items": deleted,
        }, req)


async def _initial_events(opening: Awaitable[ListStream], write: Callable[[bytes], Awaitable[None]],
                          encode: Callable[[str, dict[str, Any]], bytes]) -> int | None:
    """A watch's synthetic ADDED events (read and written a chunk at a time); the list's revision, or None when
    an ERROR event ended the watch (a custom resource its conversion webhook cannot convert)."""
    out, page = liststream.Buffered(write), None
    try:
        page = await opening
        start = int(page.resource_version)
        async for obj in page.objects():
            await out.add(encode("ADDED", obj))
        await out.flush()
        return start
    except errors.StatusError as e:
        await out.flush()
        await write(_watch_error(e))
        return None
    finally:
        if page is not None:
            page.close()


def _watch_error(e: errors.StatusError) -> bytes:
    """A watch's ERROR event, a reasonless error wrapped as kube-apiserver's watchers wrap it."""
    return orjson.dumps({"type": "ERROR", "object": errors.wrapped_internal(e).status()}) + b"\n"


def _options(req: Request, kind: str, dry_run: bool) -> dict[str, Any]:
    """The CreateOptions or UpdateOptions of a write, as an AdmissionReview carries them."""
    out: dict[str, Any] = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if dry_run:
        out["dryRun"] = ["All"]
    for key in ("fieldManager", "fieldValidation"):
        if req.q(key):
            out[key] = req.q(key)
    return out


def _connect_options(req: Request, kind: str) -> dict[str, Any]:
    """The options object of a connect request (PodExecOptions and the like), read from its query as Kubernetes
    decodes it."""
    out: dict[str, Any] = {"kind": kind, "apiVersion": "v1"}
    for flag in ("stdin", "stdout", "stderr", "tty"):
        if req.q(flag) in ("true", "1"):
            out[flag] = True
    if req.q("container"):
        out["container"] = req.q("container")
    if kind == "PodExecOptions":
        out["command"] = list(req.query.get("command") or [])
    elif kind == "PodPortForwardOptions":
        out["ports"] = [int(p) for p in req.query.get("ports") or [] if p.isdigit() and len(p) <= 5]
    elif kind.endswith("ProxyOptions") and req.q("path"):
        out["path"] = req.q("path")
    return out


def _equivalents(res: ResourceInfo, subresource: str, ns: str) -> tuple[RequestResource, ...]:
    """The other served versions of the same group and resource (a custom resource's versions)."""
    if res.custom is None:
        return ()
    others = (kinds.lookup(res.group, v, res.plural) for v in res.custom.versions if v != res.version)
    return tuple(RequestResource.of(o, subresource, ns) for o in others if o is not None)


def _list_stream(req: Request, res: ResourceInfo, page: ListStream, list_meta: dict[str, Any],
                 table: Strategy | None) -> Stream:
    """A list too large to hold at once, encoded and sent a chunk at a time (the snapshot keeps it consistent)."""
    encoder = liststream.list_encoder(res.list_kind_name, res.api_version, list_meta, table,
                                      req.q("includeObject", "Metadata"), codec.wants_yaml(req.headers.get("accept")))

    async def streamer(write: Callable[[bytes], Awaitable[None]], _req: Request) -> None:
        try:
            await liststream.write_list(write, encoder, page.objects())
        except Exception:  # noqa: BLE001 - the status is sent; cutting the body is all that is left
            log.exception("list of %s cut short", res.plural)
        finally:
            page.close()

    return Stream(200, streamer, encoder.content_type, long_running=False)


@contextlib.contextmanager
def _bad_input_is_400() -> Iterator[None]:
    """Patch and apply report some malformed input as 500 (as Kubernetes does); we never answer 500 to bad input."""
    try:
        yield
    except errors.StatusError as e:
        if e.code >= 500:
            raise errors.bad_request(e.message) from None
        raise


def status_success(details: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        out["details"] = details
    return out
