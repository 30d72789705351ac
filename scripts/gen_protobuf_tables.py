"""Write kubesat's protobuf field tables (apimachinery/protobuf_tables.py) from Kubernetes' generated.proto files.

Usage: python scripts/gen_protobuf_tables.py PROTO_DIR [--out FILE]

PROTO_DIR holds the generated.proto files of k8s.io/api and k8s.io/apimachinery under their Go import paths
(PROTO_DIR/k8s.io/api/core/v1/generated.proto, ...).  Only the messages reachable from ROOTS are written.
Field numbers, names, scalar kinds, repetition, maps and message references come from the proto text.  Two
things the proto text does not carry are kept below as tables, each checked against the proto files so that
an entry naming a field that no longer exists stops the script:

- POINTERS: the scalar fields that are Go pointers.  go-to-protobuf writes every singular field as proto2
  `optional` whether or not the Go field is a pointer, and `// +optional` marks what the API lets a client
  leave out, not pointer-ness (PodSpec.hostNetwork is +optional and a plain bool), so neither says it.
- INLINE: the Go structs embedded with `json:",inline"`: in the proto they are ordinary message fields
  named after their type, like nodeAffinity (a NodeAffinity) which is not embedded.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

KUBERNETES_VERSION = "v1.32"

# The messages whose bodies kubesat decodes: every kind a client may send as a protobuf object.
ROOTS = [
    "apps.v1.ControllerRevision",
    "apps.v1.DaemonSet",
    "apps.v1.Deployment",
    "apps.v1.ReplicaSet",
    "apps.v1.StatefulSet",
    "authentication.v1.SelfSubjectReview",
    "authentication.v1.TokenRequest",
    "authentication.v1.TokenReview",
    "authorization.v1.LocalSubjectAccessReview",
    "authorization.v1.SelfSubjectAccessReview",
    "authorization.v1.SelfSubjectRulesReview",
    "authorization.v1.SubjectAccessReview",
    "autoscaling.v1.Scale",
    "batch.v1.CronJob",
    "batch.v1.Job",
    "coordination.v1.Lease",
    "core.v1.ConfigMap",
    "core.v1.Endpoints",
    "core.v1.Event",
    "core.v1.LimitRange",
    "core.v1.Namespace",
    "core.v1.Node",
    "core.v1.PersistentVolume",
    "core.v1.PersistentVolumeClaim",
    "core.v1.Pod",
    "core.v1.ReplicationController",
    "core.v1.ResourceQuota",
    "core.v1.Secret",
    "core.v1.Service",
    "core.v1.ServiceAccount",
    "discovery.v1.EndpointSlice",
    "events.v1.Event",
    "meta.v1.DeleteOptions",
    "networking.v1.Ingress",
    "networking.v1.IngressClass",
    "networking.v1.NetworkPolicy",
    "policy.v1.Eviction",
    "policy.v1.PodDisruptionBudget",
    "rbac.v1.ClusterRole",
    "rbac.v1.ClusterRoleBinding",
    "rbac.v1.Role",
    "rbac.v1.RoleBinding",
]

# Messages with a JSON form of their own, decoded by the engine in kubesat's protobuf.py: proto name -> kind.
SPECIAL = {
    "meta.v1.Time": "TIME",
    "meta.v1.MicroTime": "MICROTIME",
    "intstr.IntOrString": "INTORSTR",
    "resource.Quantity": "QUANTITY",
    "meta.v1.FieldsV1": "FIELDSV1",
    "runtime.RawExtension": "RAWEXTENSION",
}
EXTRA_VALUE = "ExtraValue"  # every group that has user info has its own copy of this one (a list of str)
SCALARS = {"string": "STRING", "bytes": "BYTES", "bool": "BOOL", "int32": "INT32", "int64": "INT64"}

# The Go embedded structs (`json:",inline"`): message -> proto field names.  From the Go types of k8s.io/api
# v0.32.4; the proto gives them no mark of their own.
INLINE: dict[str, list[str]] = {
    "core.v1.ConfigMapEnvSource": ["localObjectReference"],
    "core.v1.ConfigMapKeySelector": ["localObjectReference"],
    "core.v1.ConfigMapProjection": ["localObjectReference"],
    "core.v1.ConfigMapVolumeSource": ["localObjectReference"],
    "core.v1.EphemeralContainer": ["ephemeralContainerCommon"],
    "core.v1.PersistentVolumeSpec": ["persistentVolumeSource"],
    "core.v1.Probe": ["handler"],
    "core.v1.SecretEnvSource": ["localObjectReference"],
    "core.v1.SecretKeySelector": ["localObjectReference"],
    "core.v1.SecretProjection": ["localObjectReference"],
    "core.v1.Volume": ["volumeSource"],
    "networking.v1.IngressRule": ["ingressRuleValue"],
}

# The scalar fields that are Go pointers (*int32, *bool, *string and named string types): message -> proto
# field names.  From the Go types of k8s.io/api and k8s.io/apimachinery v0.32.4; a zero value present on the
# wire is kept in the JSON for these, dropped (Go's omitempty) for every other scalar.
POINTERS: dict[str, list[str]] = {
    "apps.v1.DaemonSetSpec": ["revisionHistoryLimit"],
    "apps.v1.DaemonSetStatus": ["collisionCount"],
    "apps.v1.DeploymentSpec": ["replicas", "revisionHistoryLimit", "progressDeadlineSeconds"],
    "apps.v1.DeploymentStatus": ["collisionCount"],
    "apps.v1.ReplicaSetSpec": ["replicas"],
    "apps.v1.RollingUpdateStatefulSetStrategy": ["partition"],
    "apps.v1.StatefulSetSpec": ["replicas", "revisionHistoryLimit"],
    "apps.v1.StatefulSetStatus": ["collisionCount"],
    "authentication.v1.TokenRequestSpec": ["expirationSeconds"],
    "batch.v1.CronJobSpec": [
        "startingDeadlineSeconds", "suspend", "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "timeZone",
    ],
    "batch.v1.JobSpec": [
        "parallelism", "completions", "activeDeadlineSeconds", "manualSelector", "backoffLimit",
        "ttlSecondsAfterFinished", "completionMode", "suspend", "backoffLimitPerIndex", "maxFailedIndexes",
        "podReplacementPolicy", "managedBy",
    ],
    "batch.v1.JobStatus": ["ready", "failedIndexes", "terminating"],
    "batch.v1.PodFailurePolicyOnExitCodesRequirement": ["containerName"],
    "batch.v1.SuccessPolicyRule": ["succeededIndexes", "succeededCount"],
    "coordination.v1.LeaseSpec": [
        "holderIdentity", "leaseDurationSeconds", "leaseTransitions", "strategy", "preferredHolder",
    ],
    "core.v1.AppArmorProfile": ["localhostProfile"],
    "core.v1.AzureDiskVolumeSource": ["cachingMode", "fsType", "readOnly", "kind"],
    "core.v1.AzureFilePersistentVolumeSource": ["secretNamespace"],
    "core.v1.CSIVolumeSource": ["readOnly", "fsType"],
    "core.v1.ClientIPConfig": ["timeoutSeconds"],
    "core.v1.ClusterTrustBundleProjection": ["name", "signerName", "optional"],
    "core.v1.ConfigMap": ["immutable"],
    "core.v1.ConfigMapEnvSource": ["optional"],
    "core.v1.ConfigMapKeySelector": ["optional"],
    "core.v1.ConfigMapProjection": ["optional"],
    "core.v1.ConfigMapVolumeSource": ["defaultMode", "optional"],
    "core.v1.Container": ["restartPolicy"],
    "core.v1.ContainerStatus": ["started"],
    "core.v1.DownwardAPIVolumeFile": ["mode"],
    "core.v1.DownwardAPIVolumeSource": ["defaultMode"],
    "core.v1.EndpointAddress": ["nodeName"],
    "core.v1.EndpointPort": ["appProtocol"],
    "core.v1.EphemeralContainerCommon": ["restartPolicy"],
    "core.v1.FCVolumeSource": ["lun"],
    "core.v1.GRPCAction": ["service"],
    "core.v1.GlusterfsPersistentVolumeSource": ["endpointsNamespace"],
    "core.v1.HostPathVolumeSource": ["type"],
    "core.v1.ISCSIPersistentVolumeSource": ["initiatorName"],
    "core.v1.ISCSIVolumeSource": ["initiatorName"],
    "core.v1.KeyToPath": ["mode"],
    "core.v1.LoadBalancerIngress": ["ipMode"],
    "core.v1.LocalVolumeSource": ["fsType"],
    "core.v1.NodeFeatures": ["supplementalGroupsPolicy"],
    "core.v1.NodeRuntimeHandlerFeatures": ["recursiveReadOnlyMounts", "userNamespaces"],
    "core.v1.PersistentVolumeClaimSpec": ["storageClassName", "volumeMode", "volumeAttributesClassName"],
    "core.v1.PersistentVolumeClaimStatus": ["currentVolumeAttributesClassName"],
    "core.v1.PersistentVolumeSpec": ["volumeMode", "volumeAttributesClassName"],
    "core.v1.PodDNSConfigOption": ["value"],
    "core.v1.PodResourceClaim": ["resourceClaimName", "resourceClaimTemplateName"],
    "core.v1.PodResourceClaimStatus": ["resourceClaimName"],
    "core.v1.PodSecurityContext": [
        "runAsUser", "runAsNonRoot", "fsGroup", "runAsGroup", "fsGroupChangePolicy", "supplementalGroupsPolicy",
        "seLinuxChangePolicy",
    ],
    "core.v1.PodSpec": [
        "terminationGracePeriodSeconds", "activeDeadlineSeconds", "automountServiceAccountToken", "priority",
        "shareProcessNamespace", "runtimeClassName", "enableServiceLinks", "preemptionPolicy", "setHostnameAsFQDN",
        "hostUsers",
    ],
    "core.v1.PortStatus": ["error"],
    "core.v1.Probe": ["terminationGracePeriodSeconds"],
    "core.v1.ProjectedVolumeSource": ["defaultMode"],
    "core.v1.ReplicationControllerSpec": ["replicas"],
    "core.v1.SeccompProfile": ["localhostProfile"],
    "core.v1.Secret": ["immutable"],
    "core.v1.SecretEnvSource": ["optional"],
    "core.v1.SecretKeySelector": ["optional"],
    "core.v1.SecretProjection": ["optional"],
    "core.v1.SecretVolumeSource": ["defaultMode", "optional"],
    "core.v1.SecurityContext": [
        "privileged", "runAsUser", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "runAsGroup",
        "procMount",
    ],
    "core.v1.ServiceAccount": ["automountServiceAccountToken"],
    "core.v1.ServiceAccountTokenProjection": ["expirationSeconds"],
    "core.v1.ServicePort": ["appProtocol"],
    "core.v1.ServiceSpec": [
        "ipFamilyPolicy", "allocateLoadBalancerNodePorts", "loadBalancerClass", "internalTrafficPolicy",
        "trafficDistribution",
    ],
    "core.v1.Toleration": ["tolerationSeconds"],
    "core.v1.TopologySpreadConstraint": ["minDomains", "nodeAffinityPolicy", "nodeTaintsPolicy"],
    "core.v1.TypedLocalObjectReference": ["apiGroup"],
    "core.v1.TypedObjectReference": ["apiGroup", "namespace"],
    "core.v1.VolumeMount": ["mountPropagation", "recursiveReadOnly"],
    "core.v1.VolumeMountStatus": ["recursiveReadOnly"],
    "core.v1.WindowsSecurityContextOptions": [
        "gmsaCredentialSpecName", "gmsaCredentialSpec", "runAsUserName", "hostProcess",
    ],
    "discovery.v1.Endpoint": ["hostname", "nodeName", "zone"],
    "discovery.v1.EndpointConditions": ["ready", "serving", "terminating"],
    "discovery.v1.EndpointPort": ["name", "protocol", "port", "appProtocol"],
    "meta.v1.DeleteOptions": [
        "gracePeriodSeconds", "orphanDependents", "propagationPolicy",
        "ignoreStoreReadErrorWithClusterBreakingPotential",
    ],
    "meta.v1.ObjectMeta": ["deletionGracePeriodSeconds"],
    "meta.v1.OwnerReference": ["controller", "blockOwnerDeletion"],
    "meta.v1.Preconditions": ["uid", "resourceVersion"],
    "networking.v1.HTTPIngressPath": ["pathType"],
    "networking.v1.IngressClassParametersReference": ["aPIGroup", "scope", "namespace"],
    "networking.v1.IngressPortStatus": ["error"],
    "networking.v1.IngressSpec": ["ingressClassName"],
    "networking.v1.NetworkPolicyPort": ["protocol", "endPort"],
    "policy.v1.PodDisruptionBudgetSpec": ["unhealthyPodEvictionPolicy"],
}

_PACKAGE = re.compile(r"^package\s+([\w.]+)\s*;")
_MESSAGE = re.compile(r"^message\s+(\w+)\s*\{")
_FIELD = re.compile(r"^(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
_MAP = re.compile(r"^map<\s*string\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_IGNORED = re.compile(r"^(syntax|import|option)\b")
# go-to-protobuf names a field after its Go name, not its JSON name, when the Go name starts with an
# initialism (UID -> uID, APIGroup -> aPIGroup); the JSON name lower-cases the whole initialism.
_INITIALISM = re.compile(r"^([a-z])([A-Z]+?)(?=[A-Z][a-z]|$)")


class ProtoError(ValueError):
    """A proto file, root or override this script cannot make sense of."""


@dataclass
class Field:
    """One field of a proto message, as written in the proto file."""

    number: int
    name: str
    type: str  # a scalar type, or a message's kubesat name
    repeated: bool = False
    map_value: bool = False  # the field is map<string, type>


@dataclass
class Message:
    """One proto message: its kubesat name ("core.v1.PodSpec") and its fields."""

    name: str
    fields: list[Field] = field(default_factory=list)


def short_package(package: str) -> str:
    """kubesat's prefix for a proto package: k8s.io.api.core.v1 -> core.v1, ...apis.meta.v1 -> meta.v1."""
    parts = package.split(".")
    if re.fullmatch(r"v\d+(alpha\d+|beta\d+)?", parts[-1]):
        return ".".join(parts[-2:])
    return parts[-1]


def _resolve(type_name: str, package: str) -> str:
    """The kubesat name of a field's type: scalars stay, messages get their package's short prefix."""
    if type_name in SCALARS:
        return type_name
    qualified = type_name[1:] if type_name.startswith(".") else f"{package}.{type_name}"
    owner, _, message = qualified.rpartition(".")
    return f"{short_package(owner)}.{message}"


def _field(line: str, package: str) -> Field | None:
    """The field a (comment-free) line declares, or None when it declares none."""
    m = _FIELD.match(line)
    if m:
        label, type_name, name, number = m.groups()
        return Field(int(number), name, _resolve(type_name, package), repeated=label == "repeated")
    m = _MAP.match(line)
    if m:
        type_name, name, number = m.groups()
        return Field(int(number), name, _resolve(type_name, package), map_value=True)
    return None


def parse_proto(text: str, where: str) -> dict[str, Message]:
    """The messages of one generated.proto file, by kubesat name."""
    package = ""
    messages: dict[str, Message] = {}
    current: Message | None = None
    # Block comments (the licence header) become blank lines, so line numbers stay right.
    text = _BLOCK_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if current is None:
            if m := _PACKAGE.match(line):
                package = m.group(1)
            elif m := _MESSAGE.match(line):
                current = Message(f"{short_package(package)}.{m.group(1)}")
            elif not _IGNORED.match(line):
                raise ProtoError(f"{where}:{lineno}: unexpected line outside a message: {line}")
            continue
        if line == "}":
            messages[current.name] = current
            current = None
            continue
        parsed = _field(line, package)
        if parsed is None:
            raise ProtoError(f"{where}:{lineno}: unexpected line in message {current.name}: {line}")
        current.fields.append(parsed)
    if current is not None:
        raise ProtoError(f"{where}: message {current.name} is not closed")
    return messages


def read_protos(proto_dir: Path) -> dict[str, Message]:
    """Every message of the generated.proto files under proto_dir."""
    files = sorted(proto_dir.rglob("generated.proto"))
    if not files:
        raise ProtoError(f"no generated.proto files under {proto_dir}")
    messages: dict[str, Message] = {}
    for path in files:
        messages.update(parse_proto(path.read_text(encoding="utf-8"), str(path.relative_to(proto_dir))))
    return messages


def reachable(messages: dict[str, Message], roots: Iterable[str]) -> list[str]:
    """The non-special messages reachable from roots, sorted."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or special_kind(name):
            continue
        if name not in messages:
            raise ProtoError(f"message {name} is not in the proto files")
        seen.add(name)
        todo.extend(f.type for f in messages[name].fields if f.type not in SCALARS)
    return sorted(seen)


def special_kind(message: str) -> str | None:
    """The kind of a message the engine converts itself (Time -> "TIME"), or None for an ordinary one."""
    if message.rpartition(".")[2] == EXTRA_VALUE:
        return "EXTRA"
    return SPECIAL.get(message)


def json_name(proto_name: str) -> str:
    """The JSON name of a field: its proto name, with a leading initialism lower-cased (uID -> uid)."""
    m = _INITIALISM.match(proto_name)
    if m is None:
        return proto_name
    return m.group(1) + m.group(2).lower() + proto_name[m.end():]


def _check_overrides(messages: dict[str, Message], emitted: list[str]) -> None:
    """Stop when an override names a message that is not emitted or a field that is not in it."""
    for table_name, table in (("INLINE", INLINE), ("POINTERS", POINTERS)):
        for owner, names in table.items():
            if owner not in emitted:
                raise ProtoError(f"{table_name} names {owner}, which is not among the messages written")
            known = {f.name: f for f in messages[owner].fields}
            for name in names:
                f = known.get(name)
                if f is None:
                    raise ProtoError(f"{table_name} names {owner}.{name}, which is not a field of {owner}")
                scalar = f.type in SCALARS and not f.repeated and not f.map_value
                if (table_name == "POINTERS") != scalar:
                    raise ProtoError(f"{table_name} names {owner}.{name}, a field of the wrong shape ({f.type})")


def spec(owner: str, f: Field) -> str:
    """The table entry of one field: ("jsonName", KIND | FLAGS[, "message" or value kind])."""
    name = json_name(f.name)
    if f.map_value:
        value = SCALARS.get(f.type) or special_kind(f.type) or f'"{f.type}"'
        return f'("{name}", MAP, {value})'
    flags = " | REP" if f.repeated else ""
    if f.type in SCALARS:
        pointer = " | PTR" if f.name in POINTERS.get(owner, ()) else ""
        return f'("{name}", {SCALARS[f.type]}{flags}{pointer})'
    special = special_kind(f.type)
    if special:
        return f'("{name}", {special}{flags})'
    kind = "INLINE" if f.name in INLINE.get(owner, ()) else "MSG"
    return f'("{name}", {kind}{flags}, "{f.type}")'


HEADER = '''\
"""Protobuf field tables of the Kubernetes kinds kubesat decodes, generated from Kubernetes' generated.proto files."""

# GENERATED from the generated.proto files of Kubernetes {version} (k8s.io/api, k8s.io/apimachinery) by
# `python scripts/gen_protobuf_tables.py PROTO_DIR --out src/kubesat/apimachinery/protobuf_tables.py`.
# Do not edit: change the script and run it again.

from __future__ import annotations

# Value kinds of a field.  The low byte is the kind, REP and PTR are flags or-ed into it.
STRING, BYTES, BOOL, INT32, INT64 = 1, 2, 3, 4, 5  # scalars
MSG = 6  # a nested message: its JSON object
INLINE = 7  # a Go struct embedded with `json:",inline"`: its fields land in the parent object
MAP = 8  # map<string, V>: the third tuple item is V (a kind or a message name)
TIME = 9  # meta.v1.Time {{seconds=1, nanos=2}}: RFC 3339 string, whole seconds
MICROTIME = 10  # meta.v1.MicroTime {{seconds=1, nanos=2}}: RFC 3339 string, 6 fractional digits
INTORSTR = 11  # intstr.IntOrString {{type=1, intVal=2, strVal=3}}: int or str
QUANTITY = 12  # resource.Quantity {{string=1}}: str
FIELDSV1 = 13  # meta.v1.FieldsV1 {{raw=1}}: the embedded JSON document
EXTRA = 14  # ExtraValue {{items=1}}: list of str
RAWEXTENSION = 16  # runtime.RawExtension {{raw=1}}: the embedded JSON document
REP = 0x100  # repeated (a JSON array)
PTR = 0x200  # a Go pointer: a zero value that is present on the wire is kept in the JSON

# message -> {{field number: (JSON name, kind | flags[, message name or map value kind])}}
Spec = tuple[str, int] | tuple[str, int, str | int]
MESSAGES: dict[str, dict[int, Spec]] = {{
'''


def render(messages: dict[str, Message], roots: Iterable[str]) -> str:
    """The text of the generated module."""
    emitted = reachable(messages, roots)
    _check_overrides(messages, emitted)
    out = [HEADER.format(version=KUBERNETES_VERSION)]
    group = ""
    for name in emitted:
        package = name.rpartition(".")[0]
        if package != group:
            out.append(f"    # {package}\n")
            group = package
        out.append(f'    "{name}": {{\n')
        for f in sorted(messages[name].fields, key=lambda f: f.number):
            out.append(f"        {f.number}: {spec(name, f)},\n")
        out.append("    },\n")
    out.append("}\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("proto_dir", type=Path, help="directory holding k8s.io/api/.../generated.proto")
    parser.add_argument("--out", type=Path, help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        text = render(read_protos(args.proto_dir), ROOTS)
    except (ProtoError, OSError) as e:
        print(f"gen_protobuf_tables: {e}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
