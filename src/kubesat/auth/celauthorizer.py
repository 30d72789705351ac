"""The CEL `authorizer` variable of admission expressions (webhooks' matchConditions, ValidatingAdmissionPolicy),
answered by the server's authorizer for the request's user, with `authorizer.requestResource` (a check of the
request's own resource)."""

from __future__ import annotations

import functools
from typing import Any

from kubesat.apimachinery.cel import DYN, Compiled, authorizer_value, compile_expression, evaluate
from kubesat.apimachinery.cel.authz import Authorize
from kubesat.auth import authz
from kubesat.auth.user import UserInfo
from kubesat.auth.webhookrules import RequestResource

_DECISIONS = {authz.ALLOW: "allow", authz.DENY: "deny"}


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


@functools.cache
def _request_resource_program() -> Compiled:
    """Builds authorizer.requestResource through the authorizer library itself."""
    return compile_expression("authorizer.group(g).resource(r).subresource(s).namespace(ns).name(n)",
                              dict.fromkeys(("authorizer", "g", "r", "s", "ns", "n"), DYN))


def authorize_for(authorizer: authz.Authorizer, user: UserInfo | None) -> Authorize:
    """The `authorizer` variable's checks answered by the server's authorizer, for the request's user or (after
    authorizer.serviceAccount(ns, name)) for that ServiceAccount."""
    def authorize(check: dict[str, Any]) -> tuple[str, str, str]:
        sa = check.get("serviceAccount") or []
        who = user
        if len(sa) == 2:
            who = UserInfo(f"system:serviceaccount:{sa[0]}:{sa[1]}",
                           groups=("system:serviceaccounts", f"system:serviceaccounts:{sa[0]}"))
        if who is None:
            return "noOpinion", "", "no user in the request"
        path = _s(check.get("path"))
        decision, reason = authorizer.authorize(authz.Attributes(
            user=who, verb=_s(check.get("verb")), resource_request=not path, namespace=_s(check.get("namespace")),
            api_group=_s(check.get("group")), api_version="*", resource=_s(check.get("resource")),
            subresource=_s(check.get("subresource")), name=_s(check.get("name")), path=path,
            field_selector=_s(check.get("fieldSelector"))))
        return _DECISIONS.get(decision, "noOpinion"), reason, ""
    return authorize


def authorizer_variable(authorizer: authz.Authorizer, user: UserInfo | None, resource: RequestResource,
                        name: str) -> dict[str, Any]:
    """The `authorizer` value of one request, `requestResource` included."""
    value = authorizer_value(authorize_for(authorizer, user))
    check = evaluate(_request_resource_program(), {"authorizer": value, "g": resource.group, "r": resource.resource,
                                                   "s": resource.subresource, "ns": resource.namespace, "n": name})
    return {**value, "requestResource": check}
