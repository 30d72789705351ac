"""CRD conversion webhooks: a ConversionReview POSTed as apiextensions-apiserver posts one, and its answer checked as
it checks it (same count, the version asked for, kind, name, namespace and uid kept; metadata but labels and
annotations restored from the original)."""

from __future__ import annotations

from typing import Any

import orjson

from kubesat import errors, ids
from kubesat.auth.webhookcall import CallError
from kubesat.auth.webhooks import WebhookAdmission

GROUP = "apiextensions.k8s.io"
REVIEW_VERSIONS = ("v1", "v1beta1")
TIMEOUT_SECONDS = 30  # kube-apiserver's for conversion webhooks


class _Failed(Exception):
    """The webhook's answer (or the call) is not usable; the text is Kubernetes'."""


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _review_version(conversion: dict[str, Any]) -> str:
    for v in _d(conversion.get("webhook")).get("conversionReviewVersions") or []:
        if v in REVIEW_VERSIONS:
            return str(v)
    raise _Failed("no supported conversion review versions")


def _checked(original: dict[str, Any], converted: Any, desired: str) -> dict[str, Any]:
    if not isinstance(converted, dict):
        raise _Failed("invalid converted object: not an object")
    if converted.get("apiVersion") != desired:
        raise _Failed(f"invalid converted object: must be converted to the desired version {desired}, "
                      f"got {converted.get('apiVersion')}")
    if converted.get("kind") != original.get("kind"):
        raise _Failed(f"invalid converted object: must have the same kind: {converted.get('kind')} != "
                      f"{original.get('kind')}")
    meta, old_meta = _d(converted.get("metadata")), _d(original.get("metadata"))
    for key in ("name", "namespace", "uid"):
        if meta.get(key, "") != old_meta.get(key, ""):
            raise _Failed(f"invalid converted object: must have the same {key}: {meta.get(key, '')} != "
                          f"{old_meta.get(key, '')}")
    out = dict(converted)
    restored = {k: v for k, v in old_meta.items() if k not in ("labels", "annotations")}
    for key in ("labels", "annotations"):
        if key in meta:
            restored[key] = meta[key]
    out["metadata"] = restored
    return out


def _answer(body: bytes, version: str, uid: str, count: int) -> list[Any]:
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _Failed(f"unable to decode the response: {e}") from None
    if not isinstance(review, dict) or review.get("kind") != "ConversionReview" \
            or review.get("apiVersion") != f"{GROUP}/{version}":
        raise _Failed(f"expected webhook response of {GROUP}/{version}, Kind=ConversionReview, got "
                      f"{_d(review).get('apiVersion')}, Kind={_d(review).get('kind')}")
    response = _d(review.get("response"))
    if not response:
        raise _Failed("no response provided")
    if response.get("uid") != uid:
        raise _Failed(f"expected response uid {uid!r}, got {response.get('uid')!r}".replace("'", '"'))
    result = _d(response.get("result"))
    if result.get("status") != "Success":
        raise _Failed(str(result.get("message") or f"response.result.status was '{result.get('status')}', not "
                                                   "'Success'"))
    objects = response.get("convertedObjects")
    if not isinstance(objects, list) or len(objects) != count:
        raise _Failed(f"returned {len(objects) if isinstance(objects, list) else 0} objects, expected {count}")
    return objects


class ConversionWebhooks:
    """Calls CRDs' conversion webhooks through the admission webhooks' client (trust roots, Service endpoints)."""

    def __init__(self, plugin: WebhookAdmission) -> None:
        self.plugin = plugin

    async def convert(self, conversion: dict[str, Any], objects: list[dict[str, Any]],
                      desired: str) -> list[dict[str, Any]]:
        """`objects` in apiVersion `desired`: the ones in another version through one ConversionReview."""
        todo = [i for i, o in enumerate(objects) if o.get("apiVersion") != desired]
        if not todo:
            return objects
        kind = str(objects[todo[0]].get("kind", ""))
        try:
            converted = await self._call(conversion, [objects[i] for i in todo], desired)
        except _Failed as e:
            raise errors.internal(f"conversion webhook for {desired}, Kind={kind} failed: {e}") from None
        out = list(objects)
        for i, obj in zip(todo, converted, strict=True):
            out[i] = obj
        return out

    async def _call(self, conversion: dict[str, Any], objects: list[dict[str, Any]],
                    desired: str) -> list[dict[str, Any]]:
        version = _review_version(conversion)
        uid = ids.uuid4()
        review = {"kind": "ConversionReview", "apiVersion": f"{GROUP}/{version}",
                  "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects}}
        client_config = _d(_d(conversion.get("webhook")).get("clientConfig"))
        try:
            target = await self.plugin.target({"clientConfig": client_config}, TIMEOUT_SECONDS)
            status, body = await self.plugin.client.post(target, review, TIMEOUT_SECONDS)
        except CallError as e:
            raise _Failed(str(e)) from None
        if status != 200:
            raise _Failed(f"the server responded with the status code {status} but did not return more "
                          "information")
        answers = _answer(body, version, uid, len(objects))
        return [_checked(o, a, desired) for o, a in zip(objects, answers, strict=True)]
