"""TokenRequest, TokenReview and SelfSubjectReview through the official kubernetes Python client, unchanged."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Server

pytestmark = pytest.mark.integration

ISSUER = "https://kubernetes.default.svc.cluster.local"


def _claims(token: str) -> dict:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


@pytest.fixture(scope="module")
def objects(api):  # type: ignore[no-untyped-def]

    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="pyclient")))
    sa = core.create_namespaced_service_account("pyclient", client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="worker")))
    pod = core.create_namespaced_pod("pyclient", client.V1Pod(
        metadata=client.V1ObjectMeta(name="worker-0"),
        spec=client.V1PodSpec(service_account_name="worker", automount_service_account_token=False,
                              containers=[client.V1Container(name="c", image="busybox")])))
    return core, sa, pod


def test_token_request_with_audience_duration_and_pod_binding(api, objects) -> None:  # type: ignore[no-untyped-def]

    core, sa, pod = objects
    before = datetime.datetime.now(datetime.UTC)
    tr = core.create_namespaced_service_account_token("worker", "pyclient", client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=["https://vault.example.com"], expiration_seconds=1800,
            bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1", name="worker-0"))))
    # The client parsed expirationTimestamp into an aware datetime: the wire format is Kubernetes'.
    assert isinstance(tr.status.expiration_timestamp, datetime.datetime)
    left = (tr.status.expiration_timestamp - before).total_seconds()
    assert 1790 <= left <= 1810
    assert tr.spec.audiences == ["https://vault.example.com"] and tr.spec.expiration_seconds == 1800
    # The spec comes back as sent (Kubernetes fills in default audiences, never the bound uid).
    assert tr.spec.bound_object_ref.name == "worker-0" and tr.spec.bound_object_ref.uid is None
    c = _claims(tr.status.token)
    assert c["aud"] == ["https://vault.example.com"]
    assert c["sub"] == "system:serviceaccount:pyclient:worker"
    assert c["kubernetes.io"]["serviceaccount"] == {"name": "worker", "uid": sa.metadata.uid}
    assert c["kubernetes.io"]["pod"] == {"name": "worker-0", "uid": pod.metadata.uid}


def test_token_review_and_self_subject_review(server: Server, api, objects) -> None:  # type: ignore[no-untyped-def]

    core, sa, pod = objects
    token = core.create_namespaced_service_account_token("worker", "pyclient", client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[ISSUER],
            bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1", name="worker-0")))
    ).status.token
    auth = client.AuthenticationV1Api(api)
    review = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
    st = review.status
    assert st.authenticated is True and st.error is None
    assert st.user.username == "system:serviceaccount:pyclient:worker"
    assert st.user.uid == sa.metadata.uid
    assert st.user.groups == ["system:serviceaccounts", "system:serviceaccounts:pyclient", "system:authenticated"]
    assert st.user.extra["authentication.kubernetes.io/pod-name"] == ["worker-0"]
    assert st.user.extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]
    assert st.audiences == [ISSUER]

    # A wrong audience and a mangled token: authenticated false with Kubernetes' error, not an exception.
    other = auth.create_token_review(client.V1TokenReview(
        spec=client.V1TokenReviewSpec(token=token, audiences=["https://someone-else"])))
    assert other.status.authenticated is False
    assert "is invalid for the target audiences" in other.status.error
    bad = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token[:-4] + "AAAA")))
    assert bad.status.authenticated is False and bad.status.user.username is None  # "user": {} as in Kubernetes

    # The same token, as the client's own credential: who am I?
    cfg = client.Configuration()
    cfg.host = server.url
    cfg.ssl_ca_cert = str(server.ca_file)
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    me = client.AuthenticationV1Api(client.ApiClient(cfg)).create_self_subject_review(
        client.V1SelfSubjectReview())
    assert me.status.user_info.username == "system:serviceaccount:pyclient:worker"
    assert me.status.user_info.extra["authentication.kubernetes.io/pod-name"] == ["worker-0"]


def test_token_request_errors_reach_the_client_as_kubernetes_status(api, objects) -> None:  # type: ignore[no-untyped-def]

    core, _, _ = objects
    with pytest.raises(ApiException) as short:
        core.create_namespaced_service_account_token("worker", "pyclient", client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=60)))
    assert short.value.status == 422
    body = json.loads(short.value.body)
    assert body["reason"] == "Invalid"
    assert "may not specify a duration less than 10 minutes" in body["message"]
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_service_account_token("nobody", "pyclient", client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[])))
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["message"] == 'serviceaccounts "nobody" not found'
    with pytest.raises(ApiException) as gone_pod:
        core.create_namespaced_service_account_token("worker", "pyclient", client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name="no-such-pod"))))
    assert gone_pod.value.status == 404
    assert json.loads(gone_pod.value.body)["message"] == 'pods "no-such-pod" not found'


def test_a_recreated_bound_object_does_not_revive_its_tokens(api) -> None:  # type: ignore[no-untyped-def]

    core = client.CoreV1Api(api)
    auth = client.AuthenticationV1Api(api)
    ns = "pyclient-recreate"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

    def pod() -> client.V1Pod:
        return client.V1Pod(metadata=client.V1ObjectMeta(name="p"), spec=client.V1PodSpec(
            automount_service_account_token=False, containers=[client.V1Container(name="c", image="busybox")]))

    def secret() -> client.V1Secret:
        return client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v"})

    for kind, make, create, delete in (
        ("Pod", pod, core.create_namespaced_pod, core.delete_namespaced_pod),
        ("Secret", secret, core.create_namespaced_secret, core.delete_namespaced_secret),
    ):
        name = make().metadata.name
        old_uid = create(ns, make()).metadata.uid
        token = core.create_namespaced_service_account_token("default", ns, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], bound_object_ref=client.V1BoundObjectReference(
                kind=kind, api_version="v1", name=name)))).status.token
        assert auth.create_token_review(client.V1TokenReview(
            spec=client.V1TokenReviewSpec(token=token))).status.authenticated is True
        delete(name, ns)
        new_uid = create(ns, make()).metadata.uid
        st = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))).status
        assert st.authenticated is False
        word = kind.lower()
        assert f"{word} UID ({new_uid}) does not match service account {word} ref claim ({old_uid})" in st.error
