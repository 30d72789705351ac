"""The csrapproving controller: node client certificate requests are approved when a SubjectAccessReview says
the requester may create certificatesigningrequests/selfnodeclient (its own name) or .../nodeclient (any node),
as kube-controller-manager's sarapprove does."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesat.auth.authz import ALLOW, Attributes
from kubesat.auth.user import UserInfo
from kubesat.controllers.csrsigner import CSRWatcher, rfc3339
from kubesat.registry import csr as csrs
from kubesat.registry.kinds import builtin_kind
from kubesat.registry.store import Registry

NODES = builtin_kind("v1", "Node")
SERVING_MESSAGE = "Auto approving kubelet serving certificate for the node's own name and addresses."


@dataclass(frozen=True)
class Recognizer:
    subresource: str
    message: str

    def recognize(self, csr: dict[str, Any], subject: csrs.Subject) -> bool:
        spec = csrs.as_dict(csr.get("spec"))
        if spec.get("signerName") != csrs.KUBE_APISERVER_CLIENT_KUBELET:
            return False
        if self.subresource == "selfnodeclient" and spec.get("username") != subject.common_name:
            return False
        return not csrs.kubelet_client_error(subject, [str(u) for u in spec.get("usages") or []])


RECOGNIZERS = (
    Recognizer("selfnodeclient", "Auto approving self kubelet client certificate after SubjectAccessReview."),
    Recognizer("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."),
)


def requester(csr: dict[str, Any]) -> UserInfo:
    spec = csrs.as_dict(csr.get("spec"))
    extra = {str(k): tuple(str(x) for x in v) for k, v in csrs.as_dict(spec.get("extra")).items()
             if isinstance(v, list)}
    return UserInfo(str(spec.get("username") or ""), str(spec.get("uid") or ""),
                    tuple(str(g) for g in spec.get("groups") or []), extra)


class CSRApprovingController(CSRWatcher):
    name = "csrapproving"

    def __init__(self, registry: Registry, authorize: Callable[[Attributes], tuple[str, str]],
                 *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(registry)
        self.authorize = authorize
        self.clock = clock

    def approval_message(self, csr: dict[str, Any]) -> str:
        """The message of the first recognizer whose SubjectAccessReview allows the requester ('' if none)."""
        subject = _undecided_subject(csr)
        if subject is None:
            return ""
        user = requester(csr)
        for r in RECOGNIZERS:
            if not r.recognize(csr, subject):
                continue
            attrs = Attributes(user, "create", True, "", csrs.GROUP, "*", "certificatesigningrequests",
                               r.subresource)
            if self.authorize(attrs)[0] == ALLOW:
                return r.message
        return ""

    async def serving_message(self, csr: dict[str, Any]) -> str:
        """kubesat's addition (kube-controller-manager leaves kubelet-serving requests to an admin or an external
        approver): a node's request for its own serving certificate is approved when it names only the node's
        name and the addresses in its Node's status."""
        spec = csrs.as_dict(csr.get("spec"))
        subject = _undecided_subject(csr) if spec.get("signerName") == csrs.KUBELET_SERVING else None
        if subject is None:
            return ""
        user = requester(csr)
        if csrs.kubelet_serving_error(subject, [str(u) for u in spec.get("usages") or []]) or \
                user.name != subject.common_name or csrs.NODES_GROUP not in user.groups:
            return ""
        node_name = subject.common_name[len(csrs.NODE_USER_PREFIX):]
        node = await self.registry.get_or_none(NODES, "", node_name)
        if node is None:
            return ""
        known = {node_name} | {str(a.get("address")) for a in (node.get("status") or {}).get("addresses") or []
                               if isinstance(a, dict)}
        return SERVING_MESSAGE if set(subject.dns) | set(subject.ips) <= known else ""

    async def handle(self, csr: dict[str, Any]) -> None:
        message = self.approval_message(csr) or await self.serving_message(csr)
        if not message:
            return
        now = rfc3339(self.clock())
        csr.setdefault("status", {}).setdefault("conditions", []).append({
            "type": csrs.APPROVED, "status": "True", "reason": "AutoApproved", "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now,
        })
        await self.write(csr, "approval")


def _undecided_subject(csr: dict[str, Any]) -> csrs.Subject | None:
    """The subject of a request no one has approved, denied or signed yet; None otherwise, or when it does not
    parse."""
    if csrs.as_dict(csr.get("status")).get("certificate"):
        return None
    if {c.get("type") for c in csrs.conditions(csr)} & {csrs.APPROVED, csrs.DENIED}:
        return None
    try:
        return csrs.subject_of(csrs.parse_csr(csrs.request_bytes(csr)))
    except csrs.CSRError:
        return None
