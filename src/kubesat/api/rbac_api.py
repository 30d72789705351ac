"""RBAC in the server: the live index, bootstrap policy, escalation checks, access reviews, impersonation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

from kubesat import errors
from kubesat.apimachinery import codec
from kubesat.api.app import App, Request, Response, json_response
from kubesat.api.resources import ResourceHandler
from kubesat.auth import bootstrap_policy, escalation, reviews
from kubesat.auth.authz import ALLOW, DENY, Attributes, Authorizer
from kubesat.auth.node import RULES_NOT_ENUMERATED, node_identity
from kubesat.auth.rbac import RBAC_GROUP, RBACAuthorizer, RBACIndex
from kubesat.auth.user import AUTHENTICATED, MASTERS, UserInfo
from kubesat.registry.kinds import ResourceInfo, builtin_kind
from kubesat.registry.store import Registry

log = logging.getLogger("kubesat.rbac")

ROLES = builtin_kind(f"{RBAC_GROUP}/v1", "Role")
CLUSTER_ROLES = builtin_kind(f"{RBAC_GROUP}/v1", "ClusterRole")
ROLE_BINDINGS = builtin_kind(f"{RBAC_GROUP}/v1", "RoleBinding")
CLUSTER_ROLE_BINDINGS = builtin_kind(f"{RBAC_GROUP}/v1", "ClusterRoleBinding")
assert ROLES and CLUSTER_ROLES and ROLE_BINDINGS and CLUSTER_ROLE_BINDINGS
RBAC_KINDS = {ROLES.plural: ROLES, CLUSTER_ROLES.plural: CLUSTER_ROLES, ROLE_BINDINGS.plural: ROLE_BINDINGS,
              CLUSTER_ROLE_BINDINGS.plural: CLUSTER_ROLE_BINDINGS}

IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"
IMPERSONATE_UID = "impersonate-uid"
IMPERSONATE_EXTRA = "impersonate-extra-"


class RBAC:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.index = RBACIndex()
        self.authorizer = RBACAuthorizer(self.index)
        # The whole chain (Node, then RBAC) once node authorization is installed: reviews and impersonation use it.
        self.decider: Authorizer = self.authorizer
        self._aggregation: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the index
    def on_write(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info.group != RBAC_GROUP:
            return
        if info is ROLES:
            self.index.put_role(obj)
        elif info is CLUSTER_ROLES:
            self.index.put_cluster_role(obj)
            self._schedule_aggregation()
        else:
            self.index.put_binding(obj)

    # ------------------------------------------------------- aggregated ClusterRoles
    def _schedule_aggregation(self) -> None:
        """Write aggregated rules into admin/edit/view-style roles soon (the index already applies them)."""
        if self._aggregation is not None and not self._aggregation.done():
            return
        try:
            self._aggregation = asyncio.get_running_loop().create_task(self.write_aggregated_rules())
        except RuntimeError:
            self._aggregation = None  # no loop yet (startup load); bootstrap calls it directly

    async def write_aggregated_rules(self) -> None:
        await asyncio.sleep(0)  # let the write that triggered us finish first
        for name, obj in sorted(self.index.cluster_role_objs.items()):
            if not obj.get("aggregationRule"):
                continue
            want = [r.raw for r in self.index.cluster_role_rules(name)]
            if (obj.get("rules") or []) == want:
                continue

            def mutate(o: dict[str, Any], want: list[dict[str, Any]] = want) -> dict[str, Any]:
                o["rules"] = want
                return o

            try:
                await self.registry.guaranteed_update(CLUSTER_ROLES, "", name, mutate)
            except errors.StatusError as e:
                if e.code != 404:
                    log.warning("aggregating rules into clusterrole %s: %s", name, e.message)

    def on_delete(self, info: ResourceInfo, obj: dict[str, Any]) -> None:
        if info.group != RBAC_GROUP:
            return
        m = obj["metadata"]
        if info is ROLES:
            self.index.delete_role(m.get("namespace", ""), m["name"])
        elif info is CLUSTER_ROLES:
            self.index.delete_cluster_role(m["name"])
            self._schedule_aggregation()
        else:
            self.index.delete_binding(m.get("namespace", ""), m["name"])

    async def load(self) -> None:
        for info in (ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS):
            for obj in (await self.registry.list(info, "")).items:
                self.on_write(info, obj)

    async def bootstrap(self) -> None:
        """Reconcile the bootstrap roles and bindings, keeping user changes as autoupdate allows."""
        for desired in bootstrap_policy.cluster_roles():
            name = desired["metadata"]["name"]
            existing = await self.registry.get_or_none(CLUSTER_ROLES, "", name)
            new = bootstrap_policy.reconcile_cluster_role(existing, desired)
            if new is None:
                continue
            if existing is None:
                await self.registry.create(CLUSTER_ROLES, "", new)
            else:
                new.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
                await self.registry.update(CLUSTER_ROLES, "", name, new)
        for desired in bootstrap_policy.cluster_role_bindings():
            name = desired["metadata"]["name"]
            existing = await self.registry.get_or_none(CLUSTER_ROLE_BINDINGS, "", name)
            new = bootstrap_policy.reconcile_binding(existing, desired)
            if new is None:
                continue
            if existing is not None and bootstrap_policy.needs_recreate(existing, desired):
                await self.registry.delete(CLUSTER_ROLE_BINDINGS, "", name)
                existing = None
            if existing is None:
                await self.registry.create(CLUSTER_ROLE_BINDINGS, "", new)
            else:
                new.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
                await self.registry.update(CLUSTER_ROLE_BINDINGS, "", name, new)
        await self.write_aggregated_rules()

    # ------------------------------------------------------------ escalation checks
    def _allowed(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        attrs = Attributes(user, verb, True, namespace, RBAC_GROUP, "v1", resource, "", name)
        return self.authorizer.authorize(attrs)[0] == ALLOW

    def check_write(self, req: Request, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """Escalation prevention for Role, ClusterRole and their bindings (raises 403/404)."""
        if info.group != RBAC_GROUP or req.user is None or MASTERS in req.user.groups:
            return
        ns = new.get("metadata", {}).get("namespace", "") if info.namespaced else ""
        if info in (ROLES, CLUSTER_ROLES):
            self._check_role_write(req.user, info, ns, old, new)
        elif old is None or not _only_gc_fields_changed(old, new):
            self._check_binding_write(req.user, info, ns, new)

    def _check_role_write(self, user: UserInfo, info: ResourceInfo, ns: str, old: dict[str, Any] | None,
                          new: dict[str, Any]) -> None:
        """A role may hold only rules its writer holds, unless the writer may escalate; so may its aggregation rule."""
        name = new.get("metadata", {}).get("name", "")
        user_rules = self.index.rules_for(user, ns)
        can_escalate = self._allowed(user, "escalate", info.plural, ns, name)
        only_gc = old is not None and _only_gc_fields_changed(old, new)
        missing = escalation.check_role_write(user, user_rules, new.get("rules") or [], can_escalate,
                                              only_gc_fields=only_gc)
        if missing:
            raise escalation.escalation_forbidden(info.plural, name, user, missing)
        if info is not CLUSTER_ROLES or can_escalate or only_gc:
            return
        before, after = (old or {}).get("aggregationRule") or None, new.get("aggregationRule") or None
        if before != after and not escalation.holds_full_authority(user_rules):
            raise escalation.aggregation_rule_forbidden(name)

    def _check_binding_write(self, user: UserInfo, info: ResourceInfo, ns: str, new: dict[str, Any]) -> None:
        """A binding may grant only a role its writer holds all of, unless the writer may bind that role."""
        ref = new.get("roleRef") or {}
        ref_name = ref.get("name", "")
        ref_kind = ref.get("kind", "")
        ref_ns = ns if ref_kind == "Role" else ""
        ref_res = "roles" if ref_kind == "Role" else "clusterroles"
        can_bind = self._allowed(user, "bind", ref_res, ns, ref_name)
        role_rules = None
        if ref_kind == "ClusterRole" and ref_name in self.index.cluster_role_objs:
            role_rules = list(self.index.cluster_role_rules(ref_name))
        elif ref_kind == "Role" and (ref_ns, ref_name) in self.index.roles:
            role_rules = list(self.index.roles[(ref_ns, ref_name)])
        user_rules = self.index.rules_for(user, ns)
        result = escalation.check_binding_write(user, user_rules, role_rules, can_bind, role_ref=ref)
        if isinstance(result, str):
            raise escalation.role_ref_not_found(ref)
        if result:
            raise escalation.escalation_forbidden(info.plural, new.get("metadata", {}).get("name", ""), user, result)

    # --------------------------------------------------------------- access reviews
    async def review(self, req: Request, res: ResourceInfo, body: dict[str, Any]) -> Response:
        assert req.user is not None
        codec.check_kind(body, res.api_version, res.kind)
        kind = res.kind
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        if kind == reviews.SELF_RULES:
            namespace = spec.get("namespace", "")
            if not namespace:
                raise errors.bad_request("no namespace on request")
            rules = list(self.index.rules_for(req.user, namespace))
            if MASTERS in req.user.groups:
                rules = list(reviews.MASTERS_RULES) + rules
            # The Node authorizer cannot list what it allows a node, so a node's rules are never complete.
            is_node = node_identity(req.user)[1]
            status = reviews.rules_review_status(rules, incomplete=is_node,
                                                 evaluation_error=RULES_NOT_ENUMERATED if is_node else "")
            return json_response(201, {"kind": kind, "apiVersion": res.api_version,
                                       "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}, req)
        reviews.validate_sar(kind, body, req.info.namespace)
        subject = req.user if kind == reviews.SELF_SAR else reviews.user_from_sar_spec(spec)
        attrs = reviews.attributes_from_sar_spec(spec, subject)
        decision, reason = self.decider.authorize(attrs)
        out_spec = dict(spec)
        if kind == reviews.SELF_SAR:
            pass
        meta = body.get("metadata") or {}
        out_meta: dict[str, Any] = {"creationTimestamp": None}
        if res.namespaced:
            out_meta["namespace"] = meta.get("namespace") or req.info.namespace
        return json_response(201, {"kind": kind, "apiVersion": res.api_version, "metadata": out_meta,
                                   "spec": out_spec, "status": reviews.sar_status(decision, reason)}, req)

    # ---------------------------------------------------------------- impersonation
    def impersonate(self, req: Request) -> None:
        """Honour Impersonate-* headers, each authorized by the `impersonate` verb (403 otherwise)."""
        h = req.headers
        target_user = h.get(IMPERSONATE_USER)
        groups_raw = [v for k, v in req.scope["headers"] if k.lower() == b"impersonate-group"]
        uid = h.get(IMPERSONATE_UID, "")
        extras: dict[str, list[str]] = {}
        for k, v in req.scope["headers"]:
            lk = k.decode("latin-1").lower()
            if lk.startswith(IMPERSONATE_EXTRA):
                extras.setdefault(unquote(lk[len(IMPERSONATE_EXTRA):]), []).append(v.decode("latin-1"))
        if not target_user and not groups_raw and not uid and not extras:
            return
        if not target_user:
            raise errors.StatusError(
                400, "BadRequest", "requested impersonation without a user: Impersonate-User header is required")
        assert req.user is not None
        actor = req.user

        def need(resource: str, name: str, group: str = "", sub: str = "", ns: str = "") -> None:
            attrs = Attributes(actor, "impersonate", True, ns, group, "v1", resource, sub, name)
            if self.decider.authorize(attrs)[0] != ALLOW:
                raise errors.StatusError(
                    403, "Forbidden",
                    f'{resource} "{name}" is forbidden: User "{actor.name}" cannot impersonate resource '
                    f'"{resource}{"/" + sub if sub else ""}" in API group "{group}"'
                    + (f' in the namespace "{ns}"' if ns else " at the cluster scope"),
                    details={"name": name, "kind": resource})

        groups: list[str] = []
        if target_user.startswith("system:serviceaccount:"):
            rest = target_user[len("system:serviceaccount:"):]
            sa_ns, _, sa_name = rest.partition(":")
            need("serviceaccounts", sa_name, ns=sa_ns)
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa_ns}"]
        else:
            need("users", target_user)
        for g in groups_raw:
            gname = g.decode("latin-1")
            need("groups", gname)
            groups.append(gname)
        if uid:
            need("uids", uid, group="authentication.k8s.io")
        for key, values in extras.items():
            for v in values:
                need("userextras", v, group="authentication.k8s.io", sub=key)
        if target_user != "system:anonymous" and AUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
        req.audit["kubesat.io/impersonated-by"] = actor.name
        req.scope["kubesat.authenticated_user"] = actor
        req.user = UserInfo(target_user, uid, tuple(groups), {k: tuple(v) for k, v in extras.items()})


def _only_gc_fields_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when an update changes nothing but ownerReferences and finalizers (Kubernetes lets those through)."""
    def strip(o: dict[str, Any]) -> dict[str, Any]:
        c = {k: v for k, v in o.items() if k != "metadata"}
        m = {k: v for k, v in (o.get("metadata") or {}).items()
             if k not in ("ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation")}
        c["metadata"] = m
        return c

    return strip(old) == strip(new)


def install(app: App, resources: ResourceHandler, registry: Registry) -> RBAC:
    rbac = RBAC(registry)
    app.authorizer = rbac.authorizer
    registry.on_write.append(rbac.on_write)
    registry.on_delete.append(rbac.on_delete)
    resources.write_checks.append(rbac.check_write)
    app.impersonator = rbac.impersonate
    for kind in ("subjectaccessreviews", "selfsubjectaccessreviews", "localsubjectaccessreviews",
                 "selfsubjectrulesreviews"):
        resources.create_handlers[("authorization.k8s.io", kind, "")] = rbac.review
    return rbac


__all__ = ["RBAC", "install", "DENY"]
