"""kube-apiserver's dynamic admission order for one write: the mutating webhooks, then ValidatingAdmissionPolicy,
then the validating webhooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubesat.auth.authz import Authorizer
from kubesat.auth.policyadmission import ValidatingPolicyAdmission
from kubesat.auth.webhookcall import WebhookClient
from kubesat.auth.webhookrules import exempt
from kubesat.auth.webhooks import Attributes, RequestAdmission, WebhookAdmission
from kubesat.registry.store import Registry


class DynamicAdmission(WebhookAdmission):
    """The webhook plugins with the ValidatingAdmissionPolicy plugin between them."""

    def __init__(self, registry: Registry, client: WebhookClient | None = None,
                 authorizer: Callable[[], Authorizer] | None = None) -> None:
        super().__init__(registry, client, authorizer)
        self.policies = ValidatingPolicyAdmission(registry, authorizer)

    def for_request(self, attrs: Attributes) -> RequestAdmission | None:
        if exempt(attrs.resource):  # neither webhooks nor policies apply to the admission kinds
            return None
        return _PoliciesThenWebhooks(self, attrs, self.policies)


class _PoliciesThenWebhooks(RequestAdmission):
    def __init__(self, plugin: WebhookAdmission, attrs: Attributes, policies: ValidatingPolicyAdmission) -> None:
        super().__init__(plugin, attrs)
        self.policies = policies

    async def validate(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        await self.policies.validate(self.attrs, old, new, self.attrs.audit)
        await super().validate(old, new)
