"""Who is asking: the user info every authenticator produces and every authorizer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_anonymous(self) -> bool:
        return self.name == ANONYMOUS

    def to_api(self) -> dict[str, Any]:
        """The authentication.k8s.io/v1 UserInfo JSON form (empty fields omitted)."""
        out: dict[str, Any] = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ANONYMOUS_USER = UserInfo(ANONYMOUS, groups=(UNAUTHENTICATED,))


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """What Kubernetes' group adder does: every authenticated user is in system:authenticated."""
    if AUTHENTICATED in user.groups:
        return user
    return UserInfo(user.name, user.uid, user.groups + (AUTHENTICATED,), user.extra)
