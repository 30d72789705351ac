"""Nodes in the server: the Node authorizer ahead of RBAC, its pod graph fed by store events, NodeRestriction.

Every hook returns at once for a user who is not a node (one string prefix test), so requests from
anyone else pay nothing for it.
"""

from __future__ import annotations

from typing import Any

from kubesat import errors
from kubesat.api.app import App, Handler, Request, Response, Stream
from kubesat.api.rbac_api import RBAC
from kubesat.api.resources import CreateHandler, ResourceHandler
from kubesat.auth import noderestriction
from kubesat.auth.node import NodeAuthorizer, NodeGraph, node_identity
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import Registry

PODS = builtin_kind("v1", "Pod")
NODES = builtin_kind("v1", "Node")
LEASES = builtin_kind("coordination.k8s.io/v1", "Lease")
TOKEN_REQUESTS = ("", "serviceaccounts", "token")


def _node_of(req: Request) -> str | None:
    """The node a request comes from, or None when its user is not a node (Kubernetes refuses a node
    user with an empty name: `could not determine node from user`)."""
    if req.user is None:
        return None
    node, is_node = node_identity(req.user)
    if not is_node:
        return None
    if not node:
        why = f'could not determine node from user "{req.user.name}"'
        raise errors.forbidden(req.info.resource, req.info.name, why, req.info.api_group)
    return node


class NodeRestriction:
    """The admission plugin's checks at the points where kubesat sees each write."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def admit_create(self, req: Request, res: ResourceInfo, ns: str, obj: dict[str, Any]) -> None:
        """Pod creates need the Node's UID, so they are checked here; other kinds in `check_write`."""
        node = _node_of(req)
        if node is None or res is not PODS:
            return
        node_obj = await self.registry.get_or_none(NODES, "", node)
        noderestriction.check_mirror_pod_create(node, obj, node_obj["metadata"]["uid"] if node_obj else None)

    def check_write(self, req: Request, res: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """Creates and updates of Nodes, Leases and pod status, on the object as it would be stored."""
        node = _node_of(req)
        if node is None or (res is not PODS and res is not NODES and res is not LEASES):
            return
        sub = req.info.subresource
        name = new.get("metadata", {}).get("name") or req.info.name
        if res is NODES:
            noderestriction.check_node(node, name, old, new)
        elif res is LEASES:
            noderestriction.check_lease(req.info.namespace, name, node)
        elif sub == "status" and old is not None:
            noderestriction.check_pod_status_update(node, old, new)
        elif sub or old is not None:
            raise noderestriction.unexpected_pod_write(node, name, sub, "UPDATE")

    async def check_delete(self, req: Request) -> None:
        node = _node_of(req)
        info = req.info
        if node is None or info.api_group not in ("", "coordination.k8s.io") \
                or info.resource not in ("pods", "nodes", "leases"):
            return
        if info.resource == "nodes":
            noderestriction.check_node(node, info.name, None, None)
        elif info.resource == "leases":
            noderestriction.check_lease(info.namespace, info.name, node)
        elif info.subresource:
            raise noderestriction.unexpected_pod_write(node, info.name, info.subresource, "DELETE")
        else:
            noderestriction.check_pod_delete(node, await self.registry.get(PODS, info.namespace, info.name))

    async def check_token_request(self, req: Request, body: dict[str, Any]) -> None:
        node = _node_of(req)
        if node is None:
            return
        sa_name = req.info.name
        pod_name, uid = noderestriction.token_request_pod(sa_name, body)
        pod = await self.registry.get(PODS, req.info.namespace, pod_name)
        noderestriction.check_token_request_pod(node, sa_name, uid, pod)


def install(app: App, resources: ResourceHandler, registry: Registry, rbac: RBAC) -> NodeGraph:
    """Node,RBAC authorization and the NodeRestriction plugin; returns the graph (for tests and metrics)."""
    graph = NodeGraph()

    def on_write(info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info is PODS:
            graph.put_pod(obj)

    def on_delete(info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info is PODS:
            m = obj["metadata"]
            graph.delete_pod(m.get("namespace", ""), m["name"])

    async def load() -> None:
        # Before the first request is served (uvicorn serves once startup is done); events keep it current after.
        graph.load((await registry.list(PODS, "")).items)

    registry.on_write.append(on_write)
    registry.on_delete.append(on_delete)
    app.on_startup.append(load)

    authorizer = NodeAuthorizer(graph, rbac.authorizer)
    app.authorizer = authorizer
    rbac.decider = authorizer  # access reviews and impersonation answer as the request path does

    restriction = NodeRestriction(registry)
    resources.admission.append(restriction.admit_create)
    resources.write_checks.append(restriction.check_write)
    _guard_token_requests(resources, restriction)
    _guard_deletes(app, restriction)
    return graph


def _guard_token_requests(resources: ResourceHandler, restriction: NodeRestriction) -> None:
    issue: CreateHandler = resources.create_handlers[TOKEN_REQUESTS]

    async def token_request(req: Request, res: ResourceInfo, body: dict[str, Any]) -> Response:
        await restriction.check_token_request(req, body)
        return await issue(req, res, body)

    resources.create_handlers[TOKEN_REQUESTS] = token_request


def _guard_deletes(app: App, restriction: NodeRestriction) -> None:
    inner: Handler | None = app.resource_handler
    assert inner is not None, "the resource handler is installed before node authorization"

    async def handler(req: Request) -> Response | Stream:
        if req.method == "DELETE":
            await restriction.check_delete(req)
        return await inner(req)

    app.resource_handler = handler
