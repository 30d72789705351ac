"""Request authorization: the attributes Kubernetes authorizes on and the authorizer interface.

The RBAC authorizer (auth/rbac.py) plugs in behind this interface; before it does, everything is denied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kubesat.auth.user import UserInfo


@dataclass(frozen=True)
class Attributes:
    user: UserInfo
    verb: str
    resource_request: bool
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    field_selector: str = ""  # a list's or watch's raw fieldSelector (the Node authorizer reads it)


ALLOW = "allow"
DENY = "deny"
NO_OPINION = "no-opinion"


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        """(decision, reason)."""
        ...


class DenyAll:
    """The authorizer before RBAC is installed: deny by default."""

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        return NO_OPINION, ""


def forbidden_message(attrs: Attributes) -> str:
    """The reason part of a 403, as Kubernetes words it."""
    u = attrs.user.name
    if not attrs.resource_request:
        return f'User "{u}" cannot {attrs.verb} path "{attrs.path}"'
    res = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    msg = f'User "{u}" cannot {attrs.verb} resource "{res}" in API group "{attrs.api_group}"'
    if attrs.namespace:
        msg += f' in the namespace "{attrs.namespace}"'
    else:
        msg += " at the cluster scope"
    return msg
