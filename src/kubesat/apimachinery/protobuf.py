"""Strict decoder turning the Kubernetes protobuf request bodies that kubectl sends into Kubernetes' JSON form."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["MAGIC", "ProtobufError", "decode"]


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf object of a known kind."""


MAGIC = b"k8s\x00"
MAX_BODY = 3 * 1024 * 1024
MAX_DEPTH = 64

# Value kinds of a field.  The low byte is the kind, REP and PTR are flags or-ed into it.
STRING, BYTES, BOOL, INT32, INT64 = 1, 2, 3, 4, 5  # scalars
MSG = 6  # a nested message: its JSON object
INLINE = 7  # a Go struct embedded with `json:",inline"`: its fields land in the parent object
MAP = 8  # map<string, V>: the third tuple item is V (a kind or a message name)
TIME = 9  # meta.v1.Time {seconds=1, nanos=2}: RFC 3339 string, whole seconds
MICROTIME = 10  # meta.v1.MicroTime {seconds=1, nanos=2}: RFC 3339 string, 6 fractional digits
INTORSTR = 11  # intstr.IntOrString {type=1, intVal=2, strVal=3}: int or str
QUANTITY = 12  # resource.Quantity {string=1}: str
FIELDSV1 = 13  # meta.v1.FieldsV1 {raw=1}: the embedded JSON document
EXTRA = 14  # ExtraValue {items=1}: list of str
REP = 0x100  # repeated (a JSON array)
PTR = 0x200  # a Go pointer: a zero value that is present on the wire is kept in the JSON

# Field tables: message -> {field number: (JSON name, kind | flags[, message name or map value kind])}.
# Numbers, names and pointer-ness are those of the generated.proto files of Kubernetes v1.32 (k8s.io/api and
# k8s.io/apimachinery, as compiled into kubectl v1.32.4), plus the few fields v1.33 added; JSON names are the
# Go json tags where they differ from the proto name (BoundObjectReference.uid).  Scalars that are not
# pointers follow Go's omitempty: zero values are left out.
# A field's entry: (JSON name, kind | flags) or (JSON name, kind | flags, message name or map value kind).
_Spec = tuple[str, int] | tuple[str, int, str | int]
_MESSAGES: dict[str, dict[int, _Spec]] = {
    # authentication.v1
    "authentication.v1.BoundObjectReference": {
        1: ("kind", STRING),
        2: ("apiVersion", STRING),
        3: ("name", STRING),
        4: ("uid", STRING),
    },
    "authentication.v1.SelfSubjectReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("status", MSG, "authentication.v1.SelfSubjectReviewStatus"),
    },
    "authentication.v1.SelfSubjectReviewStatus": {
        1: ("userInfo", MSG, "authentication.v1.UserInfo"),
    },
    "authentication.v1.TokenRequest": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "authentication.v1.TokenRequestSpec"),
        3: ("status", MSG, "authentication.v1.TokenRequestStatus"),
    },
    "authentication.v1.TokenRequestSpec": {
        1: ("audiences", STRING | REP),
        3: ("boundObjectRef", MSG, "authentication.v1.BoundObjectReference"),
        4: ("expirationSeconds", INT64 | PTR),
    },
    "authentication.v1.TokenRequestStatus": {
        1: ("token", STRING),
        2: ("expirationTimestamp", TIME),
    },
    "authentication.v1.TokenReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "authentication.v1.TokenReviewSpec"),
        3: ("status", MSG, "authentication.v1.TokenReviewStatus"),
    },
    "authentication.v1.TokenReviewSpec": {
        1: ("token", STRING),
        2: ("audiences", STRING | REP),
    },
    "authentication.v1.TokenReviewStatus": {
        1: ("authenticated", BOOL),
        2: ("user", MSG, "authentication.v1.UserInfo"),
        3: ("error", STRING),
        4: ("audiences", STRING | REP),
    },
    "authentication.v1.UserInfo": {
        1: ("username", STRING),
        2: ("uid", STRING),
        3: ("groups", STRING | REP),
        4: ("extra", MAP, EXTRA),
    },
    # authentication.v1alpha1
    "authentication.v1alpha1.SelfSubjectReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("status", MSG, "authentication.v1alpha1.SelfSubjectReviewStatus"),
    },
    "authentication.v1alpha1.SelfSubjectReviewStatus": {
        1: ("userInfo", MSG, "authentication.v1.UserInfo"),
    },
    # authentication.v1beta1
    "authentication.v1beta1.SelfSubjectReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("status", MSG, "authentication.v1beta1.SelfSubjectReviewStatus"),
    },
    "authentication.v1beta1.SelfSubjectReviewStatus": {
        1: ("userInfo", MSG, "authentication.v1.UserInfo"),
    },
    # authorization.v1
    "authorization.v1.FieldSelectorAttributes": {
        1: ("rawSelector", STRING),
        2: ("requirements", MSG | REP, "meta.v1.FieldSelectorRequirement"),
    },
    "authorization.v1.LabelSelectorAttributes": {
        1: ("rawSelector", STRING),
        2: ("requirements", MSG | REP, "meta.v1.LabelSelectorRequirement"),
    },
    "authorization.v1.LocalSubjectAccessReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "authorization.v1.SubjectAccessReviewSpec"),
        3: ("status", MSG, "authorization.v1.SubjectAccessReviewStatus"),
    },
    "authorization.v1.NonResourceAttributes": {
        1: ("path", STRING),
        2: ("verb", STRING),
    },
    "authorization.v1.NonResourceRule": {
        1: ("verbs", STRING | REP),
        2: ("nonResourceURLs", STRING | REP),
    },
    "authorization.v1.ResourceAttributes": {
        1: ("namespace", STRING),
        2: ("verb", STRING),
        3: ("group", STRING),
        4: ("version", STRING),
        5: ("resource", STRING),
        6: ("subresource", STRING),
        7: ("name", STRING),
        8: ("fieldSelector", MSG, "authorization.v1.FieldSelectorAttributes"),
        9: ("labelSelector", MSG, "authorization.v1.LabelSelectorAttributes"),
    },
    "authorization.v1.ResourceRule": {
        1: ("verbs", STRING | REP),
        2: ("apiGroups", STRING | REP),
        3: ("resources", STRING | REP),
        4: ("resourceNames", STRING | REP),
    },
    "authorization.v1.SelfSubjectAccessReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "authorization.v1.SelfSubjectAccessReviewSpec"),
        3: ("status", MSG, "authorization.v1.SubjectAccessReviewStatus"),
    },
    "authorization.v1.SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", MSG, "authorization.v1.ResourceAttributes"),
        2: ("nonResourceAttributes", MSG, "authorization.v1.NonResourceAttributes"),
    },
    "authorization.v1.SelfSubjectRulesReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "authorization.v1.SelfSubjectRulesReviewSpec"),
        3: ("status", MSG, "authorization.v1.SubjectRulesReviewStatus"),
    },
    "authorization.v1.SelfSubjectRulesReviewSpec": {
        1: ("namespace", STRING),
    },
    "authorization.v1.SubjectAccessReview": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "authorization.v1.SubjectAccessReviewSpec"),
        3: ("status", MSG, "authorization.v1.SubjectAccessReviewStatus"),
    },
    "authorization.v1.SubjectAccessReviewSpec": {
        1: ("resourceAttributes", MSG, "authorization.v1.ResourceAttributes"),
        2: ("nonResourceAttributes", MSG, "authorization.v1.NonResourceAttributes"),
        3: ("user", STRING),
        4: ("groups", STRING | REP),
        5: ("extra", MAP, EXTRA),
        6: ("uid", STRING),
    },
    "authorization.v1.SubjectAccessReviewStatus": {
        1: ("allowed", BOOL),
        2: ("reason", STRING),
        3: ("evaluationError", STRING),
        4: ("denied", BOOL),
    },
    "authorization.v1.SubjectRulesReviewStatus": {
        1: ("resourceRules", MSG | REP, "authorization.v1.ResourceRule"),
        2: ("nonResourceRules", MSG | REP, "authorization.v1.NonResourceRule"),
        3: ("incomplete", BOOL),
        4: ("evaluationError", STRING),
    },
    # coordination.v1
    "coordination.v1.Lease": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "coordination.v1.LeaseSpec"),
    },
    "coordination.v1.LeaseSpec": {
        1: ("holderIdentity", STRING | PTR),
        2: ("leaseDurationSeconds", INT32 | PTR),
        3: ("acquireTime", MICROTIME),
        4: ("renewTime", MICROTIME),
        5: ("leaseTransitions", INT32 | PTR),
        6: ("strategy", STRING | PTR),
        7: ("preferredHolder", STRING | PTR),
    },
    # core.v1
    "core.v1.AWSElasticBlockStoreVolumeSource": {
        1: ("volumeID", STRING),
        2: ("fsType", STRING),
        3: ("partition", INT32),
        4: ("readOnly", BOOL),
    },
    "core.v1.Affinity": {
        1: ("nodeAffinity", MSG, "core.v1.NodeAffinity"),
        2: ("podAffinity", MSG, "core.v1.PodAffinity"),
        3: ("podAntiAffinity", MSG, "core.v1.PodAntiAffinity"),
    },
    "core.v1.AppArmorProfile": {
        1: ("type", STRING),
        2: ("localhostProfile", STRING | PTR),
    },
    "core.v1.AttachedVolume": {
        1: ("name", STRING),
        2: ("devicePath", STRING),
    },
    "core.v1.AzureDiskVolumeSource": {
        1: ("diskName", STRING),
        2: ("diskURI", STRING),
        3: ("cachingMode", STRING | PTR),
        4: ("fsType", STRING | PTR),
        5: ("readOnly", BOOL | PTR),
        6: ("kind", STRING | PTR),
    },
    "core.v1.AzureFileVolumeSource": {
        1: ("secretName", STRING),
        2: ("shareName", STRING),
        3: ("readOnly", BOOL),
    },
    "core.v1.CSIVolumeSource": {
        1: ("driver", STRING),
        2: ("readOnly", BOOL | PTR),
        3: ("fsType", STRING | PTR),
        4: ("volumeAttributes", MAP, STRING),
        5: ("nodePublishSecretRef", MSG, "core.v1.LocalObjectReference"),
    },
    "core.v1.Capabilities": {
        1: ("add", STRING | REP),
        2: ("drop", STRING | REP),
    },
    "core.v1.CephFSVolumeSource": {
        1: ("monitors", STRING | REP),
        2: ("path", STRING),
        3: ("user", STRING),
        4: ("secretFile", STRING),
        5: ("secretRef", MSG, "core.v1.LocalObjectReference"),
        6: ("readOnly", BOOL),
    },
    "core.v1.CinderVolumeSource": {
        1: ("volumeID", STRING),
        2: ("fsType", STRING),
        3: ("readOnly", BOOL),
        4: ("secretRef", MSG, "core.v1.LocalObjectReference"),
    },
    "core.v1.ClusterTrustBundleProjection": {
        1: ("name", STRING | PTR),
        2: ("signerName", STRING | PTR),
        3: ("labelSelector", MSG, "meta.v1.LabelSelector"),
        4: ("path", STRING),
        5: ("optional", BOOL | PTR),
    },
    "core.v1.ConfigMap": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("data", MAP, STRING),
        3: ("binaryData", MAP, BYTES),
        4: ("immutable", BOOL | PTR),
    },
    "core.v1.ConfigMapEnvSource": {
        1: ("localObjectReference", INLINE, "core.v1.LocalObjectReference"),
        2: ("optional", BOOL | PTR),
    },
    "core.v1.ConfigMapKeySelector": {
        1: ("localObjectReference", INLINE, "core.v1.LocalObjectReference"),
        2: ("key", STRING),
        3: ("optional", BOOL | PTR),
    },
    "core.v1.ConfigMapNodeConfigSource": {
        1: ("namespace", STRING),
        2: ("name", STRING),
        3: ("uid", STRING),
        4: ("resourceVersion", STRING),
        5: ("kubeletConfigKey", STRING),
    },
    "core.v1.ConfigMapProjection": {
        1: ("localObjectReference", INLINE, "core.v1.LocalObjectReference"),
        2: ("items", MSG | REP, "core.v1.KeyToPath"),
        4: ("optional", BOOL | PTR),
    },
    "core.v1.ConfigMapVolumeSource": {
        1: ("localObjectReference", INLINE, "core.v1.LocalObjectReference"),
        2: ("items", MSG | REP, "core.v1.KeyToPath"),
        3: ("defaultMode", INT32 | PTR),
        4: ("optional", BOOL | PTR),
    },
    "core.v1.Container": {
        1: ("name", STRING),
        2: ("image", STRING),
        3: ("command", STRING | REP),
        4: ("args", STRING | REP),
        5: ("workingDir", STRING),
        6: ("ports", MSG | REP, "core.v1.ContainerPort"),
        7: ("env", MSG | REP, "core.v1.EnvVar"),
        8: ("resources", MSG, "core.v1.ResourceRequirements"),
        9: ("volumeMounts", MSG | REP, "core.v1.VolumeMount"),
        10: ("livenessProbe", MSG, "core.v1.Probe"),
        11: ("readinessProbe", MSG, "core.v1.Probe"),
        12: ("lifecycle", MSG, "core.v1.Lifecycle"),
        13: ("terminationMessagePath", STRING),
        14: ("imagePullPolicy", STRING),
        15: ("securityContext", MSG, "core.v1.SecurityContext"),
        16: ("stdin", BOOL),
        17: ("stdinOnce", BOOL),
        18: ("tty", BOOL),
        19: ("envFrom", MSG | REP, "core.v1.EnvFromSource"),
        20: ("terminationMessagePolicy", STRING),
        21: ("volumeDevices", MSG | REP, "core.v1.VolumeDevice"),
        22: ("startupProbe", MSG, "core.v1.Probe"),
        23: ("resizePolicy", MSG | REP, "core.v1.ContainerResizePolicy"),
        24: ("restartPolicy", STRING | PTR),
    },
    "core.v1.ContainerImage": {
        1: ("names", STRING | REP),
        2: ("sizeBytes", INT64),
    },
    "core.v1.ContainerPort": {
        1: ("name", STRING),
        2: ("hostPort", INT32),
        3: ("containerPort", INT32),
        4: ("protocol", STRING),
        5: ("hostIP", STRING),
    },
    "core.v1.ContainerResizePolicy": {
        1: ("resourceName", STRING),
        2: ("restartPolicy", STRING),
    },
    "core.v1.ContainerState": {
        1: ("waiting", MSG, "core.v1.ContainerStateWaiting"),
        2: ("running", MSG, "core.v1.ContainerStateRunning"),
        3: ("terminated", MSG, "core.v1.ContainerStateTerminated"),
    },
    "core.v1.ContainerStateRunning": {
        1: ("startedAt", TIME),
    },
    "core.v1.ContainerStateTerminated": {
        1: ("exitCode", INT32),
        2: ("signal", INT32),
        3: ("reason", STRING),
        4: ("message", STRING),
        5: ("startedAt", TIME),
        6: ("finishedAt", TIME),
        7: ("containerID", STRING),
    },
    "core.v1.ContainerStateWaiting": {
        1: ("reason", STRING),
        2: ("message", STRING),
    },
    "core.v1.ContainerStatus": {
        1: ("name", STRING),
        2: ("state", MSG, "core.v1.ContainerState"),
        3: ("lastState", MSG, "core.v1.ContainerState"),
        4: ("ready", BOOL),
        5: ("restartCount", INT32),
        6: ("image", STRING),
        7: ("imageID", STRING),
        8: ("containerID", STRING),
        9: ("started", BOOL | PTR),
        10: ("allocatedResources", MAP, QUANTITY),
        11: ("resources", MSG, "core.v1.ResourceRequirements"),
        12: ("volumeMounts", MSG | REP, "core.v1.VolumeMountStatus"),
        13: ("user", MSG, "core.v1.ContainerUser"),
        14: ("allocatedResourcesStatus", MSG | REP, "core.v1.ResourceStatus"),
        15: ("stopSignal", STRING | PTR),  # added in v1.33
    },
    "core.v1.ContainerUser": {
        1: ("linux", MSG, "core.v1.LinuxContainerUser"),
    },
    "core.v1.DaemonEndpoint": {
        1: ("Port", INT32),
    },
    "core.v1.DownwardAPIProjection": {
        1: ("items", MSG | REP, "core.v1.DownwardAPIVolumeFile"),
    },
    "core.v1.DownwardAPIVolumeFile": {
        1: ("path", STRING),
        2: ("fieldRef", MSG, "core.v1.ObjectFieldSelector"),
        3: ("resourceFieldRef", MSG, "core.v1.ResourceFieldSelector"),
        4: ("mode", INT32 | PTR),
    },
    "core.v1.DownwardAPIVolumeSource": {
        1: ("items", MSG | REP, "core.v1.DownwardAPIVolumeFile"),
        2: ("defaultMode", INT32 | PTR),
    },
    "core.v1.EmptyDirVolumeSource": {
        1: ("medium", STRING),
        2: ("sizeLimit", QUANTITY),
    },
    "core.v1.EnvFromSource": {
        1: ("prefix", STRING),
        2: ("configMapRef", MSG, "core.v1.ConfigMapEnvSource"),
        3: ("secretRef", MSG, "core.v1.SecretEnvSource"),
    },
    "core.v1.EnvVar": {
        1: ("name", STRING),
        2: ("value", STRING),
        3: ("valueFrom", MSG, "core.v1.EnvVarSource"),
    },
    "core.v1.EnvVarSource": {
        1: ("fieldRef", MSG, "core.v1.ObjectFieldSelector"),
        2: ("resourceFieldRef", MSG, "core.v1.ResourceFieldSelector"),
        3: ("configMapKeyRef", MSG, "core.v1.ConfigMapKeySelector"),
        4: ("secretKeyRef", MSG, "core.v1.SecretKeySelector"),
    },
    "core.v1.EphemeralContainer": {
        1: ("ephemeralContainerCommon", INLINE, "core.v1.EphemeralContainerCommon"),
        2: ("targetContainerName", STRING),
    },
    "core.v1.EphemeralVolumeSource": {
        1: ("volumeClaimTemplate", MSG, "core.v1.PersistentVolumeClaimTemplate"),
    },
    "core.v1.Event": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("involvedObject", MSG, "core.v1.ObjectReference"),
        3: ("reason", STRING),
        4: ("message", STRING),
        5: ("source", MSG, "core.v1.EventSource"),
        6: ("firstTimestamp", TIME),
        7: ("lastTimestamp", TIME),
        8: ("count", INT32),
        9: ("type", STRING),
        10: ("eventTime", MICROTIME),
        11: ("series", MSG, "core.v1.EventSeries"),
        12: ("action", STRING),
        13: ("related", MSG, "core.v1.ObjectReference"),
        14: ("reportingComponent", STRING),
        15: ("reportingInstance", STRING),
    },
    "core.v1.EventSeries": {
        1: ("count", INT32),
        2: ("lastObservedTime", MICROTIME),
    },
    "core.v1.EventSource": {
        1: ("component", STRING),
        2: ("host", STRING),
    },
    "core.v1.ExecAction": {
        1: ("command", STRING | REP),
    },
    "core.v1.FCVolumeSource": {
        1: ("targetWWNs", STRING | REP),
        2: ("lun", INT32 | PTR),
        3: ("fsType", STRING),
        4: ("readOnly", BOOL),
        5: ("wwids", STRING | REP),
    },
    "core.v1.FlexVolumeSource": {
        1: ("driver", STRING),
        2: ("fsType", STRING),
        3: ("secretRef", MSG, "core.v1.LocalObjectReference"),
        4: ("readOnly", BOOL),
        5: ("options", MAP, STRING),
    },
    "core.v1.FlockerVolumeSource": {
        1: ("datasetName", STRING),
        2: ("datasetUUID", STRING),
    },
    "core.v1.GCEPersistentDiskVolumeSource": {
        1: ("pdName", STRING),
        2: ("fsType", STRING),
        3: ("partition", INT32),
        4: ("readOnly", BOOL),
    },
    "core.v1.GRPCAction": {
        1: ("port", INT32),
        2: ("service", STRING | PTR),
    },
    "core.v1.GitRepoVolumeSource": {
        1: ("repository", STRING),
        2: ("revision", STRING),
        3: ("directory", STRING),
    },
    "core.v1.GlusterfsVolumeSource": {
        1: ("endpoints", STRING),
        2: ("path", STRING),
        3: ("readOnly", BOOL),
    },
    "core.v1.HTTPGetAction": {
        1: ("path", STRING),
        2: ("port", INTORSTR),
        3: ("host", STRING),
        4: ("scheme", STRING),
        5: ("httpHeaders", MSG | REP, "core.v1.HTTPHeader"),
    },
    "core.v1.HTTPHeader": {
        1: ("name", STRING),
        2: ("value", STRING),
    },
    "core.v1.HostAlias": {
        1: ("ip", STRING),
        2: ("hostnames", STRING | REP),
    },
    "core.v1.HostIP": {
        1: ("ip", STRING),
    },
    "core.v1.HostPathVolumeSource": {
        1: ("path", STRING),
        2: ("type", STRING | PTR),
    },
    "core.v1.ISCSIVolumeSource": {
        1: ("targetPortal", STRING),
        2: ("iqn", STRING),
        3: ("lun", INT32),
        4: ("iscsiInterface", STRING),
        5: ("fsType", STRING),
        6: ("readOnly", BOOL),
        7: ("portals", STRING | REP),
        8: ("chapAuthDiscovery", BOOL),
        10: ("secretRef", MSG, "core.v1.LocalObjectReference"),
        11: ("chapAuthSession", BOOL),
        12: ("initiatorName", STRING | PTR),
    },
    "core.v1.ImageVolumeSource": {
        1: ("reference", STRING),
        2: ("pullPolicy", STRING),
    },
    "core.v1.KeyToPath": {
        1: ("key", STRING),
        2: ("path", STRING),
        3: ("mode", INT32 | PTR),
    },
    "core.v1.Lifecycle": {
        1: ("postStart", MSG, "core.v1.LifecycleHandler"),
        2: ("preStop", MSG, "core.v1.LifecycleHandler"),
        3: ("stopSignal", STRING | PTR),  # added in v1.33
    },
    "core.v1.LifecycleHandler": {
        1: ("exec", MSG, "core.v1.ExecAction"),
        2: ("httpGet", MSG, "core.v1.HTTPGetAction"),
        3: ("tcpSocket", MSG, "core.v1.TCPSocketAction"),
        4: ("sleep", MSG, "core.v1.SleepAction"),
    },
    "core.v1.LinuxContainerUser": {
        1: ("uid", INT64),
        2: ("gid", INT64),
        3: ("supplementalGroups", INT64 | REP),
    },
    "core.v1.LocalObjectReference": {
        1: ("name", STRING),
    },
    "core.v1.NFSVolumeSource": {
        1: ("server", STRING),
        2: ("path", STRING),
        3: ("readOnly", BOOL),
    },
    "core.v1.Namespace": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "core.v1.NamespaceSpec"),
        3: ("status", MSG, "core.v1.NamespaceStatus"),
    },
    "core.v1.NamespaceCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
    },
    "core.v1.NamespaceSpec": {
        1: ("finalizers", STRING | REP),
    },
    "core.v1.NamespaceStatus": {
        1: ("phase", STRING),
        2: ("conditions", MSG | REP, "core.v1.NamespaceCondition"),
    },
    "core.v1.Node": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "core.v1.NodeSpec"),
        3: ("status", MSG, "core.v1.NodeStatus"),
    },
    "core.v1.NodeAddress": {
        1: ("type", STRING),
        2: ("address", STRING),
    },
    "core.v1.NodeAffinity": {
        1: ("requiredDuringSchedulingIgnoredDuringExecution", MSG, "core.v1.NodeSelector"),
        2: ("preferredDuringSchedulingIgnoredDuringExecution", MSG | REP, "core.v1.PreferredSchedulingTerm"),
    },
    "core.v1.NodeCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        3: ("lastHeartbeatTime", TIME),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
    },
    "core.v1.NodeConfigSource": {
        2: ("configMap", MSG, "core.v1.ConfigMapNodeConfigSource"),
    },
    "core.v1.NodeConfigStatus": {
        1: ("assigned", MSG, "core.v1.NodeConfigSource"),
        2: ("active", MSG, "core.v1.NodeConfigSource"),
        3: ("lastKnownGood", MSG, "core.v1.NodeConfigSource"),
        4: ("error", STRING),
    },
    "core.v1.NodeDaemonEndpoints": {
        1: ("kubeletEndpoint", MSG, "core.v1.DaemonEndpoint"),
    },
    "core.v1.NodeFeatures": {
        1: ("supplementalGroupsPolicy", BOOL | PTR),
    },
    "core.v1.NodeRuntimeHandler": {
        1: ("name", STRING),
        2: ("features", MSG, "core.v1.NodeRuntimeHandlerFeatures"),
    },
    "core.v1.NodeRuntimeHandlerFeatures": {
        1: ("recursiveReadOnlyMounts", BOOL | PTR),
        2: ("userNamespaces", BOOL | PTR),
    },
    "core.v1.NodeSelector": {
        1: ("nodeSelectorTerms", MSG | REP, "core.v1.NodeSelectorTerm"),
    },
    "core.v1.NodeSelectorRequirement": {
        1: ("key", STRING),
        2: ("operator", STRING),
        3: ("values", STRING | REP),
    },
    "core.v1.NodeSelectorTerm": {
        1: ("matchExpressions", MSG | REP, "core.v1.NodeSelectorRequirement"),
        2: ("matchFields", MSG | REP, "core.v1.NodeSelectorRequirement"),
    },
    "core.v1.NodeSpec": {
        1: ("podCIDR", STRING),
        2: ("externalID", STRING),
        3: ("providerID", STRING),
        4: ("unschedulable", BOOL),
        5: ("taints", MSG | REP, "core.v1.Taint"),
        6: ("configSource", MSG, "core.v1.NodeConfigSource"),
        7: ("podCIDRs", STRING | REP),
    },
    "core.v1.NodeStatus": {
        1: ("capacity", MAP, QUANTITY),
        2: ("allocatable", MAP, QUANTITY),
        3: ("phase", STRING),
        4: ("conditions", MSG | REP, "core.v1.NodeCondition"),
        5: ("addresses", MSG | REP, "core.v1.NodeAddress"),
        6: ("daemonEndpoints", MSG, "core.v1.NodeDaemonEndpoints"),
        7: ("nodeInfo", MSG, "core.v1.NodeSystemInfo"),
        8: ("images", MSG | REP, "core.v1.ContainerImage"),
        9: ("volumesInUse", STRING | REP),
        10: ("volumesAttached", MSG | REP, "core.v1.AttachedVolume"),
        11: ("config", MSG, "core.v1.NodeConfigStatus"),
        12: ("runtimeHandlers", MSG | REP, "core.v1.NodeRuntimeHandler"),
        13: ("features", MSG, "core.v1.NodeFeatures"),
    },
    "core.v1.NodeSwapStatus": {
        1: ("capacity", INT64 | PTR),  # added in v1.33
    },
    "core.v1.NodeSystemInfo": {
        1: ("machineID", STRING),
        2: ("systemUUID", STRING),
        3: ("bootID", STRING),
        4: ("kernelVersion", STRING),
        5: ("osImage", STRING),
        6: ("containerRuntimeVersion", STRING),
        7: ("kubeletVersion", STRING),
        8: ("kubeProxyVersion", STRING),
        9: ("operatingSystem", STRING),
        10: ("architecture", STRING),
        11: ("swap", MSG, "core.v1.NodeSwapStatus"),  # added in v1.33
    },
    "core.v1.ObjectFieldSelector": {
        1: ("apiVersion", STRING),
        2: ("fieldPath", STRING),
    },
    "core.v1.ObjectReference": {
        1: ("kind", STRING),
        2: ("namespace", STRING),
        3: ("name", STRING),
        4: ("uid", STRING),
        5: ("apiVersion", STRING),
        6: ("resourceVersion", STRING),
        7: ("fieldPath", STRING),
    },
    "core.v1.PersistentVolumeClaimSpec": {
        1: ("accessModes", STRING | REP),
        2: ("resources", MSG, "core.v1.VolumeResourceRequirements"),
        3: ("volumeName", STRING),
        4: ("selector", MSG, "meta.v1.LabelSelector"),
        5: ("storageClassName", STRING | PTR),
        6: ("volumeMode", STRING | PTR),
        7: ("dataSource", MSG, "core.v1.TypedLocalObjectReference"),
        8: ("dataSourceRef", MSG, "core.v1.TypedObjectReference"),
        9: ("volumeAttributesClassName", STRING | PTR),
    },
    "core.v1.PersistentVolumeClaimTemplate": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "core.v1.PersistentVolumeClaimSpec"),
    },
    "core.v1.PersistentVolumeClaimVolumeSource": {
        1: ("claimName", STRING),
        2: ("readOnly", BOOL),
    },
    "core.v1.PhotonPersistentDiskVolumeSource": {
        1: ("pdID", STRING),
        2: ("fsType", STRING),
    },
    "core.v1.Pod": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("spec", MSG, "core.v1.PodSpec"),
        3: ("status", MSG, "core.v1.PodStatus"),
    },
    "core.v1.PodAffinity": {
        1: ("requiredDuringSchedulingIgnoredDuringExecution", MSG | REP, "core.v1.PodAffinityTerm"),
        2: ("preferredDuringSchedulingIgnoredDuringExecution", MSG | REP, "core.v1.WeightedPodAffinityTerm"),
    },
    "core.v1.PodAffinityTerm": {
        1: ("labelSelector", MSG, "meta.v1.LabelSelector"),
        2: ("namespaces", STRING | REP),
        3: ("topologyKey", STRING),
        4: ("namespaceSelector", MSG, "meta.v1.LabelSelector"),
        5: ("matchLabelKeys", STRING | REP),
        6: ("mismatchLabelKeys", STRING | REP),
    },
    "core.v1.PodAntiAffinity": {
        1: ("requiredDuringSchedulingIgnoredDuringExecution", MSG | REP, "core.v1.PodAffinityTerm"),
        2: ("preferredDuringSchedulingIgnoredDuringExecution", MSG | REP, "core.v1.WeightedPodAffinityTerm"),
    },
    "core.v1.PodCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        3: ("lastProbeTime", TIME),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
        7: ("observedGeneration", INT64),  # added in v1.33
    },
    "core.v1.PodDNSConfig": {
        1: ("nameservers", STRING | REP),
        2: ("searches", STRING | REP),
        3: ("options", MSG | REP, "core.v1.PodDNSConfigOption"),
    },
    "core.v1.PodDNSConfigOption": {
        1: ("name", STRING),
        2: ("value", STRING | PTR),
    },
    "core.v1.PodIP": {
        1: ("ip", STRING),
    },
    "core.v1.PodOS": {
        1: ("name", STRING),
    },
    "core.v1.PodReadinessGate": {
        1: ("conditionType", STRING),
    },
    "core.v1.PodResourceClaim": {
        1: ("name", STRING),
        3: ("resourceClaimName", STRING | PTR),
        4: ("resourceClaimTemplateName", STRING | PTR),
    },
    "core.v1.PodResourceClaimStatus": {
        1: ("name", STRING),
        2: ("resourceClaimName", STRING | PTR),
    },
    "core.v1.PodSchedulingGate": {
        1: ("name", STRING),
    },
    "core.v1.PodSecurityContext": {
        1: ("seLinuxOptions", MSG, "core.v1.SELinuxOptions"),
        2: ("runAsUser", INT64 | PTR),
        3: ("runAsNonRoot", BOOL | PTR),
        4: ("supplementalGroups", INT64 | REP),
        5: ("fsGroup", INT64 | PTR),
        6: ("runAsGroup", INT64 | PTR),
        7: ("sysctls", MSG | REP, "core.v1.Sysctl"),
        8: ("windowsOptions", MSG, "core.v1.WindowsSecurityContextOptions"),
        9: ("fsGroupChangePolicy", STRING | PTR),
        10: ("seccompProfile", MSG, "core.v1.SeccompProfile"),
        11: ("appArmorProfile", MSG, "core.v1.AppArmorProfile"),
        12: ("supplementalGroupsPolicy", STRING | PTR),
        13: ("seLinuxChangePolicy", STRING | PTR),
    },
    "core.v1.PodSpec": {
        1: ("volumes", MSG | REP, "core.v1.Volume"),
        2: ("containers", MSG | REP, "core.v1.Container"),
        3: ("restartPolicy", STRING),
        4: ("terminationGracePeriodSeconds", INT64 | PTR),
        5: ("activeDeadlineSeconds", INT64 | PTR),
        6: ("dnsPolicy", STRING),
        7: ("nodeSelector", MAP, STRING),
        8: ("serviceAccountName", STRING),
        9: ("serviceAccount", STRING),
        10: ("nodeName", STRING),
        11: ("hostNetwork", BOOL),
        12: ("hostPID", BOOL),
        13: ("hostIPC", BOOL),
        14: ("securityContext", MSG, "core.v1.PodSecurityContext"),
        15: ("imagePullSecrets", MSG | REP, "core.v1.LocalObjectReference"),
        16: ("hostname", STRING),
        17: ("subdomain", STRING),
        18: ("affinity", MSG, "core.v1.Affinity"),
        19: ("schedulerName", STRING),
        20: ("initContainers", MSG | REP, "core.v1.Container"),
        21: ("automountServiceAccountToken", BOOL | PTR),
        22: ("tolerations", MSG | REP, "core.v1.Toleration"),
        23: ("hostAliases", MSG | REP, "core.v1.HostAlias"),
        24: ("priorityClassName", STRING),
        25: ("priority", INT32 | PTR),
        26: ("dnsConfig", MSG, "core.v1.PodDNSConfig"),
        27: ("shareProcessNamespace", BOOL | PTR),
        28: ("readinessGates", MSG | REP, "core.v1.PodReadinessGate"),
        29: ("runtimeClassName", STRING | PTR),
        30: ("enableServiceLinks", BOOL | PTR),
        31: ("preemptionPolicy", STRING | PTR),
        32: ("overhead", MAP, QUANTITY),
        33: ("topologySpreadConstraints", MSG | REP, "core.v1.TopologySpreadConstraint"),
        34: ("ephemeralContainers", MSG | REP, "core.v1.EphemeralContainer"),
        35: ("setHostnameAsFQDN", BOOL | PTR),
        36: ("os", MSG, "core.v1.PodOS"),
        37: ("hostUsers", BOOL | PTR),
        38: ("schedulingGates", MSG | REP, "core.v1.PodSchedulingGate"),
        39: ("resourceClaims", MSG | REP, "core.v1.PodResourceClaim"),
        40: ("resources", MSG, "core.v1.ResourceRequirements"),
    },
    "core.v1.PodStatus": {
        1: ("phase", STRING),
        2: ("conditions", MSG | REP, "core.v1.PodCondition"),
        3: ("message", STRING),
        4: ("reason", STRING),
        5: ("hostIP", STRING),
        6: ("podIP", STRING),
        7: ("startTime", TIME),
        8: ("containerStatuses", MSG | REP, "core.v1.ContainerStatus"),
        9: ("qosClass", STRING),
        10: ("initContainerStatuses", MSG | REP, "core.v1.ContainerStatus"),
        11: ("nominatedNodeName", STRING),
        12: ("podIPs", MSG | REP, "core.v1.PodIP"),
        13: ("ephemeralContainerStatuses", MSG | REP, "core.v1.ContainerStatus"),
        14: ("resize", STRING),
        15: ("resourceClaimStatuses", MSG | REP, "core.v1.PodResourceClaimStatus"),
        16: ("hostIPs", MSG | REP, "core.v1.HostIP"),
        17: ("observedGeneration", INT64),  # added in v1.33
    },
    "core.v1.PortworxVolumeSource": {
        1: ("volumeID", STRING),
        2: ("fsType", STRING),
        3: ("readOnly", BOOL),
    },
    "core.v1.PreferredSchedulingTerm": {
        1: ("weight", INT32),
        2: ("preference", MSG, "core.v1.NodeSelectorTerm"),
    },
    "core.v1.Probe": {
        1: ("handler", INLINE, "core.v1.ProbeHandler"),
        2: ("initialDelaySeconds", INT32),
        3: ("timeoutSeconds", INT32),
        4: ("periodSeconds", INT32),
        5: ("successThreshold", INT32),
        6: ("failureThreshold", INT32),
        7: ("terminationGracePeriodSeconds", INT64 | PTR),
    },
    "core.v1.ProbeHandler": {
        1: ("exec", MSG, "core.v1.ExecAction"),
        2: ("httpGet", MSG, "core.v1.HTTPGetAction"),
        3: ("tcpSocket", MSG, "core.v1.TCPSocketAction"),
        4: ("grpc", MSG, "core.v1.GRPCAction"),
    },
    "core.v1.ProjectedVolumeSource": {
        1: ("sources", MSG | REP, "core.v1.VolumeProjection"),
        2: ("defaultMode", INT32 | PTR),
    },
    "core.v1.QuobyteVolumeSource": {
        1: ("registry", STRING),
        2: ("volume", STRING),
        3: ("readOnly", BOOL),
        4: ("user", STRING),
        5: ("group", STRING),
        6: ("tenant", STRING),
    },
    "core.v1.RBDVolumeSource": {
        1: ("monitors", STRING | REP),
        2: ("image", STRING),
        3: ("fsType", STRING),
        4: ("pool", STRING),
        5: ("user", STRING),
        6: ("keyring", STRING),
        7: ("secretRef", MSG, "core.v1.LocalObjectReference"),
        8: ("readOnly", BOOL),
    },
    "core.v1.ResourceClaim": {
        1: ("name", STRING),
        2: ("request", STRING),
    },
    "core.v1.ResourceFieldSelector": {
        1: ("containerName", STRING),
        2: ("resource", STRING),
        3: ("divisor", QUANTITY),
    },
    "core.v1.ResourceHealth": {
        1: ("resourceID", STRING),
        2: ("health", STRING),
    },
    "core.v1.ResourceRequirements": {
        1: ("limits", MAP, QUANTITY),
        2: ("requests", MAP, QUANTITY),
        3: ("claims", MSG | REP, "core.v1.ResourceClaim"),
    },
    "core.v1.ResourceStatus": {
        1: ("name", STRING),
        2: ("resources", MSG | REP, "core.v1.ResourceHealth"),
    },
    "core.v1.SELinuxOptions": {
        1: ("user", STRING),
        2: ("role", STRING),
        3: ("type", STRING),
        4: ("level", STRING),
    },
    "core.v1.ScaleIOVolumeSource": {
        1: ("gateway", STRING),
        2: ("system", STRING),
        3: ("secretRef", MSG, "core.v1.LocalObjectReference"),
        4: ("sslEnabled", BOOL),
        5: ("protectionDomain", STRING),
        6: ("storagePool", STRING),
        7: ("storageMode", STRING),
        8: ("volumeName", STRING),
        9: ("fsType", STRING),
        10: ("readOnly", BOOL),
    },
    "core.v1.SeccompProfile": {
        1: ("type", STRING),
        2: ("localhostProfile", STRING | PTR),
    },
    "core.v1.Secret": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("data", MAP, BYTES),
        3: ("type", STRING),
        4: ("stringData", MAP, STRING),
        5: ("immutable", BOOL | PTR),
    },
    "core.v1.SecretEnvSource": {
        1: ("localObjectReference", INLINE, "core.v1.LocalObjectReference"),
        2: ("optional", BOOL | PTR),
    },
    "core.v1.SecretKeySelector": {
        1: ("localObjectReference", INLINE, "core.v1.LocalObjectReference"),
        2: ("key", STRING),
        3: ("optional", BOOL | PTR),
    },
    "core.v1.SecretProjection": {
        1: ("localObjectReference", INLINE, "core.v1.LocalObjectReference"),
        2: ("items", MSG | REP, "core.v1.KeyToPath"),
        4: ("optional", BOOL | PTR),
    },
    "core.v1.SecretVolumeSource": {
        1: ("secretName", STRING),
        2: ("items", MSG | REP, "core.v1.KeyToPath"),
        3: ("defaultMode", INT32 | PTR),
        4: ("optional", BOOL | PTR),
    },
    "core.v1.SecurityContext": {
        1: ("capabilities", MSG, "core.v1.Capabilities"),
        2: ("privileged", BOOL | PTR),
        3: ("seLinuxOptions", MSG, "core.v1.SELinuxOptions"),
        4: ("runAsUser", INT64 | PTR),
        5: ("runAsNonRoot", BOOL | PTR),
        6: ("readOnlyRootFilesystem", BOOL | PTR),
        7: ("allowPrivilegeEscalation", BOOL | PTR),
        8: ("runAsGroup", INT64 | PTR),
        9: ("procMount", STRING | PTR),
        10: ("windowsOptions", MSG, "core.v1.WindowsSecurityContextOptions"),
        11: ("seccompProfile", MSG, "core.v1.SeccompProfile"),
        12: ("appArmorProfile", MSG, "core.v1.AppArmorProfile"),
    },
    "core.v1.ServiceAccount": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("secrets", MSG | REP, "core.v1.ObjectReference"),
        3: ("imagePullSecrets", MSG | REP, "core.v1.LocalObjectReference"),
        4: ("automountServiceAccountToken", BOOL | PTR),
    },
    "core.v1.ServiceAccountTokenProjection": {
        1: ("audience", STRING),
        2: ("expirationSeconds", INT64 | PTR),
        3: ("path", STRING),
    },
    "core.v1.SleepAction": {
        1: ("seconds", INT64),
    },
    "core.v1.StorageOSVolumeSource": {
        1: ("volumeName", STRING),
        2: ("volumeNamespace", STRING),
        3: ("fsType", STRING),
        4: ("readOnly", BOOL),
        5: ("secretRef", MSG, "core.v1.LocalObjectReference"),
    },
    "core.v1.Sysctl": {
        1: ("name", STRING),
        2: ("value", STRING),
    },
    "core.v1.TCPSocketAction": {
        1: ("port", INTORSTR),
        2: ("host", STRING),
    },
    "core.v1.Taint": {
        1: ("key", STRING),
        2: ("value", STRING),
        3: ("effect", STRING),
        4: ("timeAdded", TIME),
    },
    "core.v1.Toleration": {
        1: ("key", STRING),
        2: ("operator", STRING),
        3: ("value", STRING),
        4: ("effect", STRING),
        5: ("tolerationSeconds", INT64 | PTR),
    },
    "core.v1.TopologySpreadConstraint": {
        1: ("maxSkew", INT32),
        2: ("topologyKey", STRING),
        3: ("whenUnsatisfiable", STRING),
        4: ("labelSelector", MSG, "meta.v1.LabelSelector"),
        5: ("minDomains", INT32 | PTR),
        6: ("nodeAffinityPolicy", STRING | PTR),
        7: ("nodeTaintsPolicy", STRING | PTR),
        8: ("matchLabelKeys", STRING | REP),
    },
    "core.v1.TypedLocalObjectReference": {
        1: ("apiGroup", STRING | PTR),
        2: ("kind", STRING),
        3: ("name", STRING),
    },
    "core.v1.TypedObjectReference": {
        1: ("apiGroup", STRING | PTR),
        2: ("kind", STRING),
        3: ("name", STRING),
        4: ("namespace", STRING | PTR),
    },
    "core.v1.Volume": {
        1: ("name", STRING),
        2: ("volumeSource", INLINE, "core.v1.VolumeSource"),
    },
    "core.v1.VolumeDevice": {
        1: ("name", STRING),
        2: ("devicePath", STRING),
    },
    "core.v1.VolumeMount": {
        1: ("name", STRING),
        2: ("readOnly", BOOL),
        3: ("mountPath", STRING),
        4: ("subPath", STRING),
        5: ("mountPropagation", STRING | PTR),
        6: ("subPathExpr", STRING),
        7: ("recursiveReadOnly", STRING | PTR),
    },
    "core.v1.VolumeMountStatus": {
        1: ("name", STRING),
        2: ("mountPath", STRING),
        3: ("readOnly", BOOL),
        4: ("recursiveReadOnly", STRING | PTR),
    },
    "core.v1.VolumeProjection": {
        1: ("secret", MSG, "core.v1.SecretProjection"),
        2: ("downwardAPI", MSG, "core.v1.DownwardAPIProjection"),
        3: ("configMap", MSG, "core.v1.ConfigMapProjection"),
        4: ("serviceAccountToken", MSG, "core.v1.ServiceAccountTokenProjection"),
        5: ("clusterTrustBundle", MSG, "core.v1.ClusterTrustBundleProjection"),
    },
    "core.v1.VolumeResourceRequirements": {
        1: ("limits", MAP, QUANTITY),
        2: ("requests", MAP, QUANTITY),
    },
    "core.v1.VolumeSource": {
        1: ("hostPath", MSG, "core.v1.HostPathVolumeSource"),
        2: ("emptyDir", MSG, "core.v1.EmptyDirVolumeSource"),
        3: ("gcePersistentDisk", MSG, "core.v1.GCEPersistentDiskVolumeSource"),
        4: ("awsElasticBlockStore", MSG, "core.v1.AWSElasticBlockStoreVolumeSource"),
        5: ("gitRepo", MSG, "core.v1.GitRepoVolumeSource"),
        6: ("secret", MSG, "core.v1.SecretVolumeSource"),
        7: ("nfs", MSG, "core.v1.NFSVolumeSource"),
        8: ("iscsi", MSG, "core.v1.ISCSIVolumeSource"),
        9: ("glusterfs", MSG, "core.v1.GlusterfsVolumeSource"),
        10: ("persistentVolumeClaim", MSG, "core.v1.PersistentVolumeClaimVolumeSource"),
        11: ("rbd", MSG, "core.v1.RBDVolumeSource"),
        12: ("flexVolume", MSG, "core.v1.FlexVolumeSource"),
        13: ("cinder", MSG, "core.v1.CinderVolumeSource"),
        14: ("cephfs", MSG, "core.v1.CephFSVolumeSource"),
        15: ("flocker", MSG, "core.v1.FlockerVolumeSource"),
        16: ("downwardAPI", MSG, "core.v1.DownwardAPIVolumeSource"),
        17: ("fc", MSG, "core.v1.FCVolumeSource"),
        18: ("azureFile", MSG, "core.v1.AzureFileVolumeSource"),
        19: ("configMap", MSG, "core.v1.ConfigMapVolumeSource"),
        20: ("vsphereVolume", MSG, "core.v1.VsphereVirtualDiskVolumeSource"),
        21: ("quobyte", MSG, "core.v1.QuobyteVolumeSource"),
        22: ("azureDisk", MSG, "core.v1.AzureDiskVolumeSource"),
        23: ("photonPersistentDisk", MSG, "core.v1.PhotonPersistentDiskVolumeSource"),
        24: ("portworxVolume", MSG, "core.v1.PortworxVolumeSource"),
        25: ("scaleIO", MSG, "core.v1.ScaleIOVolumeSource"),
        26: ("projected", MSG, "core.v1.ProjectedVolumeSource"),
        27: ("storageos", MSG, "core.v1.StorageOSVolumeSource"),
        28: ("csi", MSG, "core.v1.CSIVolumeSource"),
        29: ("ephemeral", MSG, "core.v1.EphemeralVolumeSource"),
        30: ("image", MSG, "core.v1.ImageVolumeSource"),
    },
    "core.v1.VsphereVirtualDiskVolumeSource": {
        1: ("volumePath", STRING),
        2: ("fsType", STRING),
        3: ("storagePolicyName", STRING),
        4: ("storagePolicyID", STRING),
    },
    "core.v1.WeightedPodAffinityTerm": {
        1: ("weight", INT32),
        2: ("podAffinityTerm", MSG, "core.v1.PodAffinityTerm"),
    },
    "core.v1.WindowsSecurityContextOptions": {
        1: ("gmsaCredentialSpecName", STRING | PTR),
        2: ("gmsaCredentialSpec", STRING | PTR),
        3: ("runAsUserName", STRING | PTR),
        4: ("hostProcess", BOOL | PTR),
    },
    # meta.v1
    "meta.v1.DeleteOptions": {
        1: ("gracePeriodSeconds", INT64 | PTR),
        2: ("preconditions", MSG, "meta.v1.Preconditions"),
        3: ("orphanDependents", BOOL | PTR),
        4: ("propagationPolicy", STRING | PTR),
        5: ("dryRun", STRING | REP),
        6: ("ignoreStoreReadErrorWithClusterBreakingPotential", BOOL | PTR),
    },
    "meta.v1.FieldSelectorRequirement": {
        1: ("key", STRING),
        2: ("operator", STRING),
        3: ("values", STRING | REP),
    },
    "meta.v1.LabelSelector": {
        1: ("matchLabels", MAP, STRING),
        2: ("matchExpressions", MSG | REP, "meta.v1.LabelSelectorRequirement"),
    },
    "meta.v1.LabelSelectorRequirement": {
        1: ("key", STRING),
        2: ("operator", STRING),
        3: ("values", STRING | REP),
    },
    "meta.v1.ManagedFieldsEntry": {
        1: ("manager", STRING),
        2: ("operation", STRING),
        3: ("apiVersion", STRING),
        4: ("time", TIME),
        6: ("fieldsType", STRING),
        7: ("fieldsV1", FIELDSV1),
        8: ("subresource", STRING),
    },
    "meta.v1.ObjectMeta": {
        1: ("name", STRING),
        2: ("generateName", STRING),
        3: ("namespace", STRING),
        4: ("selfLink", STRING),
        5: ("uid", STRING),
        6: ("resourceVersion", STRING),
        7: ("generation", INT64),
        8: ("creationTimestamp", TIME),
        9: ("deletionTimestamp", TIME),
        10: ("deletionGracePeriodSeconds", INT64 | PTR),
        11: ("labels", MAP, STRING),
        12: ("annotations", MAP, STRING),
        13: ("ownerReferences", MSG | REP, "meta.v1.OwnerReference"),
        14: ("finalizers", STRING | REP),
        17: ("managedFields", MSG | REP, "meta.v1.ManagedFieldsEntry"),
    },
    "meta.v1.OwnerReference": {
        1: ("kind", STRING),
        3: ("name", STRING),
        4: ("uid", STRING),
        5: ("apiVersion", STRING),
        6: ("controller", BOOL | PTR),
        7: ("blockOwnerDeletion", BOOL | PTR),
    },
    "meta.v1.Preconditions": {
        1: ("uid", STRING | PTR),
        2: ("resourceVersion", STRING | PTR),
    },
    # rbac.v1
    "rbac.v1.AggregationRule": {
        1: ("clusterRoleSelectors", MSG | REP, "meta.v1.LabelSelector"),
    },
    "rbac.v1.ClusterRole": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("rules", MSG | REP, "rbac.v1.PolicyRule"),
        3: ("aggregationRule", MSG, "rbac.v1.AggregationRule"),
    },
    "rbac.v1.ClusterRoleBinding": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("subjects", MSG | REP, "rbac.v1.Subject"),
        3: ("roleRef", MSG, "rbac.v1.RoleRef"),
    },
    "rbac.v1.PolicyRule": {
        1: ("verbs", STRING | REP),
        2: ("apiGroups", STRING | REP),
        3: ("resources", STRING | REP),
        4: ("resourceNames", STRING | REP),
        5: ("nonResourceURLs", STRING | REP),
    },
    "rbac.v1.Role": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("rules", MSG | REP, "rbac.v1.PolicyRule"),
    },
    "rbac.v1.RoleBinding": {
        1: ("metadata", MSG, "meta.v1.ObjectMeta"),
        2: ("subjects", MSG | REP, "rbac.v1.Subject"),
        3: ("roleRef", MSG, "rbac.v1.RoleRef"),
    },
    "rbac.v1.RoleRef": {
        1: ("apiGroup", STRING),
        2: ("kind", STRING),
        3: ("name", STRING),
    },
    "rbac.v1.Subject": {
        1: ("kind", STRING),
        2: ("apiGroup", STRING),
        3: ("name", STRING),
        4: ("namespace", STRING),
    },
}

# certificates.v1
_MESSAGES["certificates.v1.CertificateSigningRequest"] = {
    1: ("metadata", MSG, "meta.v1.ObjectMeta"),
    2: ("spec", MSG, "certificates.v1.CertificateSigningRequestSpec"),
    3: ("status", MSG, "certificates.v1.CertificateSigningRequestStatus"),
}
_MESSAGES["certificates.v1.CertificateSigningRequestSpec"] = {
    1: ("request", BYTES),
    2: ("username", STRING),
    3: ("uid", STRING),
    4: ("groups", STRING | REP),
    5: ("usages", STRING | REP),
    6: ("extra", MAP, EXTRA),
    7: ("signerName", STRING),
    8: ("expirationSeconds", INT32 | PTR),
}
_MESSAGES["certificates.v1.CertificateSigningRequestStatus"] = {
    1: ("conditions", MSG | REP, "certificates.v1.CertificateSigningRequestCondition"),
    2: ("certificate", BYTES),
}
_MESSAGES["certificates.v1.CertificateSigningRequestCondition"] = {
    1: ("type", STRING),
    6: ("status", STRING),
    2: ("reason", STRING),
    3: ("message", STRING),
    4: ("lastUpdateTime", TIME),
    5: ("lastTransitionTime", TIME),
}

# core.v1 Service, Endpoints and discovery.v1 EndpointSlice (pointer fields as the Go types have them).
_MESSAGES["core.v1.Service"] = {
    1: ("metadata", MSG, "meta.v1.ObjectMeta"),
    2: ("spec", MSG, "core.v1.ServiceSpec"),
    3: ("status", MSG, "core.v1.ServiceStatus"),
}
_MESSAGES["core.v1.ServiceSpec"] = {
    1: ("ports", MSG | REP, "core.v1.ServicePort"),
    2: ("selector", MAP, STRING),
    3: ("clusterIP", STRING),
    18: ("clusterIPs", STRING | REP),
    4: ("type", STRING),
    5: ("externalIPs", STRING | REP),
    7: ("sessionAffinity", STRING),
    8: ("loadBalancerIP", STRING),
    9: ("loadBalancerSourceRanges", STRING | REP),
    10: ("externalName", STRING),
    11: ("externalTrafficPolicy", STRING),
    12: ("healthCheckNodePort", INT32),
    13: ("publishNotReadyAddresses", BOOL),
    14: ("sessionAffinityConfig", MSG, "core.v1.SessionAffinityConfig"),
    19: ("ipFamilies", STRING | REP),
    17: ("ipFamilyPolicy", STRING | PTR),
    20: ("allocateLoadBalancerNodePorts", BOOL | PTR),
    21: ("loadBalancerClass", STRING | PTR),
    22: ("internalTrafficPolicy", STRING | PTR),
    23: ("trafficDistribution", STRING | PTR),
}
_MESSAGES["core.v1.ServicePort"] = {
    1: ("name", STRING),
    2: ("protocol", STRING),
    6: ("appProtocol", STRING | PTR),
    3: ("port", INT32),
    4: ("targetPort", INTORSTR),
    5: ("nodePort", INT32),
}
_MESSAGES["core.v1.SessionAffinityConfig"] = {1: ("clientIP", MSG, "core.v1.ClientIPConfig")}
_MESSAGES["core.v1.ClientIPConfig"] = {1: ("timeoutSeconds", INT32 | PTR)}
_MESSAGES["core.v1.ServiceStatus"] = {
    1: ("loadBalancer", MSG, "core.v1.LoadBalancerStatus"),
    2: ("conditions", MSG | REP, "meta.v1.Condition"),
}
_MESSAGES["meta.v1.Condition"] = {
    1: ("type", STRING),
    2: ("status", STRING),
    3: ("observedGeneration", INT64),
    4: ("lastTransitionTime", TIME),
    5: ("reason", STRING),
    6: ("message", STRING),
}
_MESSAGES["core.v1.LoadBalancerStatus"] = {1: ("ingress", MSG | REP, "core.v1.LoadBalancerIngress")}
_MESSAGES["core.v1.LoadBalancerIngress"] = {
    1: ("ip", STRING),
    2: ("hostname", STRING),
    3: ("ipMode", STRING | PTR),
    4: ("ports", MSG | REP, "core.v1.PortStatus"),
}
_MESSAGES["core.v1.PortStatus"] = {1: ("port", INT32), 2: ("protocol", STRING), 3: ("error", STRING | PTR)}
_MESSAGES["core.v1.Endpoints"] = {
    1: ("metadata", MSG, "meta.v1.ObjectMeta"),
    2: ("subsets", MSG | REP, "core.v1.EndpointSubset"),
}
_MESSAGES["core.v1.EndpointSubset"] = {
    1: ("addresses", MSG | REP, "core.v1.EndpointAddress"),
    2: ("notReadyAddresses", MSG | REP, "core.v1.EndpointAddress"),
    3: ("ports", MSG | REP, "core.v1.EndpointPort"),
}
_MESSAGES["core.v1.EndpointAddress"] = {
    1: ("ip", STRING),
    3: ("hostname", STRING),
    4: ("nodeName", STRING | PTR),
    2: ("targetRef", MSG, "core.v1.ObjectReference"),
}
_MESSAGES["core.v1.EndpointPort"] = {
    1: ("name", STRING),
    2: ("port", INT32),
    3: ("protocol", STRING),
    4: ("appProtocol", STRING | PTR),
}
_MESSAGES["discovery.v1.EndpointSlice"] = {
    1: ("metadata", MSG, "meta.v1.ObjectMeta"),
    4: ("addressType", STRING),
    2: ("endpoints", MSG | REP, "discovery.v1.Endpoint"),
    3: ("ports", MSG | REP, "discovery.v1.EndpointPort"),
}
_MESSAGES["discovery.v1.Endpoint"] = {
    1: ("addresses", STRING | REP),
    2: ("conditions", MSG, "discovery.v1.EndpointConditions"),
    3: ("hostname", STRING | PTR),
    4: ("targetRef", MSG, "core.v1.ObjectReference"),
    5: ("deprecatedTopology", MAP, STRING),
    6: ("nodeName", STRING | PTR),
    7: ("zone", STRING | PTR),
    8: ("hints", MSG, "discovery.v1.EndpointHints"),
}
_MESSAGES["discovery.v1.EndpointConditions"] = {
    1: ("ready", BOOL | PTR),
    2: ("serving", BOOL | PTR),
    3: ("terminating", BOOL | PTR),
}
_MESSAGES["discovery.v1.EndpointHints"] = {1: ("forZones", MSG | REP, "discovery.v1.ForZone")}
_MESSAGES["discovery.v1.ForZone"] = {1: ("name", STRING)}
_MESSAGES["discovery.v1.EndpointPort"] = {
    1: ("name", STRING | PTR),
    2: ("protocol", STRING | PTR),
    3: ("port", INT32 | PTR),
    4: ("appProtocol", STRING | PTR),
}

SPAN = 15  # internal: the (start, stop) byte offsets of a length-delimited payload

# The small messages behind the special kinds, decoded like any other and then converted.
# Kubernetes keeps the two field lists identical on purpose (an ephemeral container is a container).
_MESSAGES["core.v1.EphemeralContainerCommon"] = _MESSAGES["core.v1.Container"]

_HELPERS: dict[str, dict[int, _Spec]] = {
    "meta.v1.Time": {1: ("seconds", INT64 | PTR), 2: ("nanos", INT32 | PTR)},
    "intstr.IntOrString": {1: ("type", INT64 | PTR), 2: ("intVal", INT32 | PTR), 3: ("strVal", STRING | PTR)},
    "resource.Quantity": {1: ("string", STRING | PTR)},
    "meta.v1.FieldsV1": {1: ("raw", SPAN)},
    "ExtraValue": {1: ("items", STRING | REP)},
    # runtime.Unknown, the envelope after the magic, and its runtime.TypeMeta.
    "runtime.TypeMeta": {1: ("apiVersion", STRING | PTR), 2: ("kind", STRING | PTR)},
    "runtime.Unknown": {
        1: ("typeMeta", MSG, "runtime.TypeMeta"),
        2: ("raw", SPAN),
        3: ("contentEncoding", STRING | PTR),
        4: ("contentType", STRING | PTR),
    },
}
_HELPER_OF = {
    TIME: "meta.v1.Time",
    MICROTIME: "meta.v1.Time",
    INTORSTR: "intstr.IntOrString",
    QUANTITY: "resource.Quantity",
    FIELDSV1: "meta.v1.FieldsV1",
    EXTRA: "ExtraValue",
}

_META = "meta.v1.DeleteOptions"
_KINDS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "core.v1.ConfigMap",
    ("v1", "Event"): "core.v1.Event",
    ("v1", "Namespace"): "core.v1.Namespace",
    ("v1", "Node"): "core.v1.Node",
    ("v1", "Pod"): "core.v1.Pod",
    ("v1", "Secret"): "core.v1.Secret",
    ("v1", "ServiceAccount"): "core.v1.ServiceAccount",
    ("v1", "Service"): "core.v1.Service",
    ("v1", "Endpoints"): "core.v1.Endpoints",
    ("discovery.k8s.io/v1", "EndpointSlice"): "discovery.v1.EndpointSlice",
    ("rbac.authorization.k8s.io/v1", "Role"): "rbac.v1.Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac.v1.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rbac.v1.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac.v1.ClusterRoleBinding",
    ("authentication.k8s.io/v1", "TokenRequest"): "authentication.v1.TokenRequest",
    ("authentication.k8s.io/v1", "TokenReview"): "authentication.v1.TokenReview",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "authentication.v1.SelfSubjectReview",
    ("authentication.k8s.io/v1beta1", "SelfSubjectReview"): "authentication.v1beta1.SelfSubjectReview",
    ("authentication.k8s.io/v1alpha1", "SelfSubjectReview"): "authentication.v1alpha1.SelfSubjectReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "authorization.v1.SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "authorization.v1.SelfSubjectRulesReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "authorization.v1.SubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "authorization.v1.LocalSubjectAccessReview",
    ("coordination.k8s.io/v1", "Lease"): "coordination.v1.Lease",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): "certificates.v1.CertificateSigningRequest",
}
# DeleteOptions is meta.k8s.io/v1's, and also registered in every group version.
for _api in {"meta.k8s.io/v1", *(api for api, _ in _KINDS)}:
    _KINDS[(_api, "DeleteOptions")] = _META

# Compiled tables: (message name, {number: (JSON name, kind, repeated, pointer, wire type, sub-table)}).
# The sub-table's type depends on the kind (a _Table for messages and special kinds, (entry _Table, value
# kind) for maps, None for scalars), which a tuple type cannot say; the decoder reads it by kind.
_Field = tuple[str, int, bool, bool, int, Any]
_Table = tuple[str, dict[int, _Field]]
_MAP_DEFAULTS: dict[int, Callable[[], Any]] = {
    STRING: str,
    BYTES: str,
    QUANTITY: lambda: "0",
    EXTRA: list,
    MSG: dict,
}


def _compile() -> dict[str, _Table]:
    specs = {**_MESSAGES, **_HELPERS}
    tables: dict[str, _Table] = {name: (name, {}) for name in specs}

    def field(owner: str, name: str, code: int, ref: str | int | None) -> _Field:
        kind = code & 0xFF
        sub: Any = None
        if kind in (MSG, INLINE):
            sub = tables[str(ref)]
        elif kind in _HELPER_OF:
            sub = tables[_HELPER_OF[kind]]
        elif kind == MAP:
            vkind, vref = (MSG, ref) if isinstance(ref, str) else (int(ref or 0), None)
            if vkind not in _MAP_DEFAULTS:
                raise AssertionError(f"{owner}.{name}: unsupported map value kind {vkind}")
            entry: _Table = (f"{owner}.{name} entry", {})
            entry[1][1] = field(entry[0], "key", STRING | PTR, None)
            entry[1][2] = field(entry[0], "value", vkind | PTR, vref)
            sub = (entry, vkind)
        elif kind not in (STRING, BYTES, BOOL, INT32, INT64, SPAN):
            raise AssertionError(f"{owner}.{name}: unknown kind {kind}")
        wire = 0 if kind in (BOOL, INT32, INT64) else 2
        return (name, kind, bool(code & REP), bool(code & PTR), wire, sub)

    for owner, fields in specs.items():
        compiled = tables[owner][1]
        for number, spec in fields.items():
            compiled[number] = field(owner, spec[0], spec[1], spec[2] if len(spec) == 3 else None)
    return tables


_TABLES = _compile()
_ENVELOPE = _TABLES["runtime.Unknown"]
_U64 = (1 << 64) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OMIT: Any = object()


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """Read a base-128 varint at buf[i:end]; answer (value, next index)."""
    result = 0
    shift = 0
    while i < end:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"varint longer than 10 bytes at byte {i - 10}")
    raise ProtobufError(f"protobuf body is truncated at byte {end}: a varint runs past the end of its message")


def _scalar(kind: int, value: int) -> int | bool:
    if kind == BOOL:
        return value != 0
    if kind == INT64:
        value &= _U64
        return value - (1 << 64) if value >> 63 else value
    value &= 0xFFFFFFFF  # INT32: Go keeps the low 32 bits
    return value - (1 << 32) if value >> 31 else value


def _text(buf: bytes, start: int, stop: int) -> str:
    try:
        return buf[start:stop].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtobufError(f"invalid UTF-8 in a string field at byte {start + e.start}") from None


def _timestamp(fields: dict[str, Any], micro: bool) -> str:
    total = fields.get("seconds", 0) * 1_000_000_000 + fields.get("nanos", 0)
    seconds, nanos = divmod(total, 1_000_000_000)
    try:
        t = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise ProtobufError(f"timestamp {seconds} seconds after 1970 is out of range") from None
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{text}.{nanos // 1000:06d}Z" if micro else f"{text}Z"


def _special(kind: int, fields: dict[str, Any], buf: bytes, empty: bool) -> Any:
    """Turn a decoded helper message into its JSON value (or _OMIT)."""
    if kind in (TIME, MICROTIME):
        # Kubernetes writes the zero time as an empty message.
        return _OMIT if empty else _timestamp(fields, kind == MICROTIME)
    if kind == QUANTITY:
        return fields.get("string") or "0"
    if kind == INTORSTR:
        which = fields.get("type", 0)
        if which == 0:
            return fields.get("intVal", 0)
        if which == 1:
            return fields.get("strVal", "")
        raise ProtobufError(f"IntOrString type {which} is neither 0 (int) nor 1 (string)")
    if kind == EXTRA:
        return fields.get("items", [])
    # FIELDSV1: the raw bytes are a JSON document.
    start, stop = fields.get("raw", (0, 0))
    if start == stop:
        return _OMIT
    try:
        return json.loads(buf[start:stop].decode("utf-8"))
    except (ValueError, RecursionError):
        raise ProtobufError(f"FieldsV1 at byte {start} does not hold a JSON document") from None


def _message(buf: bytes, i: int, end: int, table: _Table, depth: int, out: dict[str, Any]) -> dict[str, Any]:
    """Decode the message in buf[i:end] into out (a dict in Kubernetes' JSON form) and return it."""
    if depth > MAX_DEPTH:
        raise ProtobufError(f"protobuf messages nest deeper than {MAX_DEPTH} at byte {i}")
    msg_name, fields = table
    while i < end:
        at = i
        key = buf[i]
        if key < 0x80:
            i += 1
        else:
            key, i = _varint(buf, i, end)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise ProtobufError(f"invalid field number 0 at byte {at}")
        # The usual short fields inline; _payload reads every other shape and names what is wrong.
        if wire == 2 and i < end and buf[i] < 0x80 and i + 1 + buf[i] <= end:
            value = i + 1
            i = value + buf[i]
        elif wire == 0 and i < end and buf[i] < 0x80:
            value = buf[i]
            i += 1
        else:
            value, i = _payload(buf, i, end, number, wire, at)

        spec = fields.get(number)
        if spec is None:
            continue  # unknown field: skipped
        name, kind, rep, ptr, want, _ = spec
        if wire != want:
            _packed(buf, value, i, spec, wire, f"field {number} ({name}) of {msg_name} at byte {at}", out)
            continue

        if want == 0:
            v: Any = _scalar(kind, value)
        elif kind == STRING:
            v = _text(buf, value, i)
        else:
            v = _field_value(buf, value, i, spec, depth, out)
            if v is _OMIT:
                continue
        if rep:
            items = out.get(name)
            if not isinstance(items, list):
                items = out[name] = []
            items.append(v)
        elif not ptr and kind <= INT64 and not v:
            out.pop(name, None)  # Go's omitempty on a non-pointer zero value
        else:
            out[name] = v
    return out


def _payload(buf: bytes, i: int, end: int, number: int, wire: int, at: int) -> tuple[int, int]:
    """Read the value of field `number` (key at byte `at`) that starts at buf[i].

    Answers (value, next index): the value itself for a varint, else the offset its bytes start at.
    """
    if wire == 0:
        if i >= end:
            raise ProtobufError(f"protobuf body is truncated at byte {end}: field {number} has no value")
        value = buf[i]
        if value < 0x80:
            return value, i + 1
        return _varint(buf, i, end)
    if wire == 2:
        if i < end and buf[i] < 0x80:
            size = buf[i]
            i += 1
        else:
            size, i = _varint(buf, i, end)
        if i + size > end:
            raise ProtobufError(
                f"protobuf body is truncated at byte {end}: field {number} at byte {at} "
                f"needs {size} bytes, only {end - i} remain"
            )
        return i, i + size
    if wire == 1 or wire == 5:
        stop = i + (8 if wire == 1 else 4)
        if stop > end:
            raise ProtobufError(f"protobuf body is truncated at byte {end}: fixed-size field {number} at byte {at}")
        return i, stop
    raise ProtobufError(f"unsupported wire type {wire} for field {number} at byte {at}")


def _packed(buf: bytes, start: int, stop: int, spec: _Field, wire: int, where: str, out: dict[str, Any]) -> None:
    """A field whose wire type is not its table's: a packed repeated scalar in buf[start:stop], or an error.

    The scalars are appended to the list out[name].
    """
    name, kind, rep, _, want, _ = spec
    if not (rep and want == 0 and wire == 2):
        raise ProtobufError(f"{where} has wire type {wire}, expected {want}")
    items = out.setdefault(name, [])
    p = start
    while p < stop:
        raw, p = _varint(buf, p, stop)
        items.append(_scalar(kind, raw))


def _field_value(buf: bytes, start: int, stop: int, spec: _Field, depth: int, out: dict[str, Any]) -> Any:
    """The JSON value of a length-delimited field other than a string, whose bytes are buf[start:stop].

    Answers _OMIT when there is nothing to store: an inlined struct or a map entry already went into out,
    and an omitted special value (a zero time, an empty FieldsV1) removed a previous singular value.
    """
    name, kind, rep, _, _, sub = spec
    if kind == MSG:
        previous = None if rep else out.get(name)
        return _message(buf, start, stop, sub, depth + 1, previous if isinstance(previous, dict) else {})
    if kind == INLINE:
        _message(buf, start, stop, sub, depth + 1, out)
        return _OMIT
    if kind == MAP:
        _map_entry(buf, start, stop, sub, depth, name, out)
        return _OMIT
    if kind == BYTES:
        return base64.b64encode(buf[start:stop]).decode("ascii")
    if kind == SPAN:
        return (start, stop)
    v = _special(kind, _message(buf, start, stop, sub, depth + 1, {}), buf, start == stop)
    if v is _OMIT and not rep:
        out.pop(name, None)
    return v


def _map_entry(buf: bytes, start: int, stop: int, sub: tuple[_Table, int], depth: int, name: str,
               out: dict[str, Any]) -> None:
    """Decode one map entry message in buf[start:stop] into the map out[name] (created when missing)."""
    entry, vkind = sub
    pair = _message(buf, start, stop, entry, depth + 1, {})
    mapping = out.get(name)
    if not isinstance(mapping, dict):
        mapping = out[name] = {}
    mapping[pair.get("key", "")] = pair["value"] if "value" in pair else _MAP_DEFAULTS[vkind]()


def decode(body: bytes) -> dict[str, Any]:
    """Decode a `application/vnd.kubernetes.protobuf` body into the object's JSON form (a dict)."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ProtobufError(f"protobuf body must be bytes, not {type(body).__name__}")
    buf = bytes(body)
    if len(buf) > MAX_BODY:
        raise ProtobufError(f"protobuf body of {len(buf)} bytes exceeds the limit of {MAX_BODY} bytes")
    if buf[:4] != MAGIC:
        raise ProtobufError("protobuf body does not start with the Kubernetes magic bytes 6b 38 73 00 (k8s\\0)")
    envelope = _message(buf, 4, len(buf), _ENVELOPE, 0, {})
    type_meta = envelope.get("typeMeta", {})
    api_version = type_meta.get("apiVersion", "")
    kind = type_meta.get("kind", "")
    encoding = envelope.get("contentEncoding", "")
    if encoding:
        raise ProtobufError(f'unsupported contentEncoding "{encoding}" in the protobuf envelope')
    content_type = envelope.get("contentType", "")
    if content_type not in ("", "application/vnd.kubernetes.protobuf"):
        raise ProtobufError(f'unsupported contentType "{content_type}" in the protobuf envelope')
    message = _KINDS.get((api_version, kind))
    if message is None:
        raise ProtobufError(f'no protobuf decoding is known for apiVersion "{api_version}", kind "{kind}"')
    start, stop = envelope.get("raw", (4, 4))
    return _message(buf, start, stop, _TABLES[message], 1, {"apiVersion": api_version, "kind": kind})
