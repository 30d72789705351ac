"""The Strategy of every stored kind, keyed by (apiVersion, kind)."""

from __future__ import annotations

from kubesat.registry.admissionpolicy import (
    ValidatingAdmissionPolicyBindingStrategy,
    ValidatingAdmissionPolicyStrategy,
)
from kubesat.registry.admissionregistration import (
    MutatingWebhookConfigurationStrategy,
    ValidatingWebhookConfigurationStrategy,
)
from kubesat.registry.apiextensions import CustomResourceDefinitionStrategy
from kubesat.registry.apps import (
    ControllerRevisionStrategy,
    DaemonSetStrategy,
    DeploymentStrategy,
    ReplicaSetStrategy,
    StatefulSetStrategy,
)
from kubesat.registry.batch import CronJobStrategy, JobStrategy
from kubesat.registry.configmap import ConfigMapStrategy
from kubesat.registry.customresource import CustomResourceStrategy
from kubesat.registry.csr import CertificateSigningRequestStrategy
from kubesat.registry.event import EventStrategy
from kubesat.registry.eventsv1 import EventsV1Strategy
from kubesat.registry.kinds import RESOURCES, ResourceInfo
from kubesat.registry.lease import LeaseStrategy
from kubesat.registry.namespace import NamespaceStrategy
from kubesat.registry.node import NodeStrategy
from kubesat.registry.replicationcontroller import ReplicationControllerStrategy
from kubesat.registry.rbac import (
    ClusterRoleBindingStrategy,
    ClusterRoleStrategy,
    RoleBindingStrategy,
    RoleStrategy,
)
from kubesat.registry.networking import IngressClassStrategy, IngressStrategy, NetworkPolicyStrategy
from kubesat.registry.persistentvolume import PersistentVolumeClaimStrategy, PersistentVolumeStrategy
from kubesat.registry.policy import PodDisruptionBudgetStrategy
from kubesat.registry.quota import LimitRangeStrategy, ResourceQuotaStrategy
from kubesat.registry.secret import SecretStrategy
from kubesat.registry.service import EndpointSliceStrategy, EndpointsStrategy, ServiceStrategy
from kubesat.registry.serviceaccount import ServiceAccountStrategy
from kubesat.registry.storageclass import StorageClassStrategy
from kubesat.registry.strategy import Strategy
from kubesat.registry.pod import PodStrategy

_CLASSES: dict[tuple[str, str], type[Strategy]] = {
    ("v1", "Namespace"): NamespaceStrategy,
    ("v1", "ServiceAccount"): ServiceAccountStrategy,
    ("v1", "Secret"): SecretStrategy,
    ("v1", "ConfigMap"): ConfigMapStrategy,
    ("v1", "Pod"): PodStrategy,
    ("v1", "Node"): NodeStrategy,
    ("v1", "Event"): EventStrategy,
    ("events.k8s.io/v1", "Event"): EventsV1Strategy,
    ("v1", "Service"): ServiceStrategy,
    ("v1", "Endpoints"): EndpointsStrategy,
    ("v1", "ReplicationController"): ReplicationControllerStrategy,
    ("v1", "PersistentVolume"): PersistentVolumeStrategy,
    ("v1", "PersistentVolumeClaim"): PersistentVolumeClaimStrategy,
    ("v1", "LimitRange"): LimitRangeStrategy,
    ("v1", "ResourceQuota"): ResourceQuotaStrategy,
    ("discovery.k8s.io/v1", "EndpointSlice"): EndpointSliceStrategy,
    ("rbac.authorization.k8s.io/v1", "Role"): RoleStrategy,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ClusterRoleStrategy,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): RoleBindingStrategy,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ClusterRoleBindingStrategy,
    ("coordination.k8s.io/v1", "Lease"): LeaseStrategy,
    ("policy/v1", "PodDisruptionBudget"): PodDisruptionBudgetStrategy,
    ("networking.k8s.io/v1", "Ingress"): IngressStrategy,
    ("networking.k8s.io/v1", "IngressClass"): IngressClassStrategy,
    ("networking.k8s.io/v1", "NetworkPolicy"): NetworkPolicyStrategy,
    ("storage.k8s.io/v1", "StorageClass"): StorageClassStrategy,
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): CertificateSigningRequestStrategy,
    ("batch/v1", "Job"): JobStrategy,
    ("batch/v1", "CronJob"): CronJobStrategy,
    ("apps/v1", "Deployment"): DeploymentStrategy,
    ("apps/v1", "ReplicaSet"): ReplicaSetStrategy,
    ("apps/v1", "StatefulSet"): StatefulSetStrategy,
    ("apps/v1", "DaemonSet"): DaemonSetStrategy,
    ("apps/v1", "ControllerRevision"): ControllerRevisionStrategy,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): CustomResourceDefinitionStrategy,
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): ValidatingWebhookConfigurationStrategy,
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): MutatingWebhookConfigurationStrategy,
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): ValidatingAdmissionPolicyStrategy,
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): ValidatingAdmissionPolicyBindingStrategy,
}


def _build() -> dict[tuple[str, str], Strategy]:
    out: dict[tuple[str, str], Strategy] = {}
    for info in RESOURCES:
        if not info.stored and not info.stored_as:
            continue
        cls = _CLASSES.get((info.api_version, info.kind), Strategy)
        out[(info.api_version, info.kind)] = cls(info)
    return out


STRATEGIES: dict[tuple[str, str], Strategy] = _build()
_PLAIN: dict[tuple[str, str], Strategy] = {}
# Custom resources' strategies, by the ResourceInfo of one revision of their CRD (a new revision, a new strategy).
_CUSTOM: dict[ResourceInfo, Strategy] = {}
_CUSTOM_MAX = 1024


def strategy_for(info: ResourceInfo) -> Strategy:
    """The strategy for a resource; virtual resources (reviews) and unknown kinds get the plain one."""
    if info.custom is not None:
        return _custom_strategy(info)
    key = (info.api_version, info.kind)
    s = STRATEGIES.get(key)
    if s is None:
        s = _PLAIN.get(key)
        if s is None:
            s = _PLAIN[key] = Strategy(info)
    return s


def _custom_strategy(info: ResourceInfo) -> Strategy:
    s = _CUSTOM.get(info)
    if s is None:
        if len(_CUSTOM) >= _CUSTOM_MAX:  # strategies of CRD revisions no longer served
            _CUSTOM.clear()
        s = _CUSTOM[info] = CustomResourceStrategy(info)
    return s
