"""CRD conversion webhooks: a ConversionReview POSTed through the admission webhooks' client, its answer checked
with apiextensions-apiserver's words (webhook_converter.go)."""

from __future__ import annotations

from typing import Any

import orjson

from kubesat import errors, ids
from kubesat.auth.webhookcall import CallError, go_json_error
from kubesat.auth.webhooks import WebhookAdmission
from kubesat.registry.meta import validate_annotations, validate_labels

GROUP = "apiextensions.k8s.io"
TIMEOUT_SECONDS = 30  # kube-apiserver's client timeout for conversion webhooks (the `?timeout=30s` it sends)


class ConversionFailed(Exception):
    """The webhook could not convert: the text follows `conversion webhook for <g/v, Kind=K> `."""


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _split_gv(api_version: Any) -> tuple[str, str]:
    """(group, version) as schema.ParseGroupVersion reads an apiVersion; ("", "") when it cannot."""
    text = api_version if isinstance(api_version, str) else ""
    if text.count("/") > 1:
        return "", ""
    group, _, version = text.rpartition("/")
    return group, version


def gv_text(api_version: Any) -> str:
    """A GroupVersion as Go prints it (`v1` for the core group, `g/v` otherwise)."""
    group, version = _split_gv(api_version)
    return f"{group}/{version}" if group else version


def gvk_text(api_version: Any, kind: Any) -> str:
    """A GroupVersionKind as Go prints it: `group/version, Kind=K` (the slash kept for the core group)."""
    group, version = _split_gv(api_version)
    return f"{group}/{version}, Kind={kind if isinstance(kind, str) else ''}"


def go_type(v: Any) -> str:
    """How Go's %T names a value decoded from JSON into an unstructured object."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "[]interface {}"
    return "map[string]interface {}"


def review_version(conversion: dict[str, Any]) -> str:
    """The first of conversionReviewVersions kube-apiserver speaks."""
    for v in _d(conversion.get("webhook")).get("conversionReviewVersions") or []:
        if v in ("v1", "v1beta1"):
            return str(v)
    raise ConversionFailed("no supported conversion review versions")


def converted_objects(body: bytes, version: str, uid: str) -> list[Any]:
    """The convertedObjects of a ConversionReview answer; ConversionFailed (`failed: ...`) when it is not usable.
    A v1beta1 answer is not checked for its kind or uid, as kube-apiserver keeps v1beta1's laxer reading."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ConversionFailed(f"failed: couldn't get version/kind; json parse error: {go_json_error(body)}") from None
    if not isinstance(review, dict):
        raise ConversionFailed("failed: couldn't get version/kind; json parse error: json: cannot unmarshal "
                               f"{errors.go_json_kind(review)} into Go value of type struct "
                               '{ APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string '
                               '"json:\\"kind,omitempty\\"" }')
    if version == "v1" and (review.get("apiVersion") != f"{GROUP}/v1" or review.get("kind") != "ConversionReview"):
        raise ConversionFailed(f"failed: expected webhook response of {GROUP}/v1, Kind=ConversionReview, got "
                               f"{gvk_text(review.get('apiVersion'), review.get('kind'))}")
    response = review.get("response")
    if not isinstance(response, dict):
        raise ConversionFailed("failed: no response provided")
    got_uid = response.get("uid") if isinstance(response.get("uid"), str) else ""
    if version == "v1" and got_uid != uid:
        raise ConversionFailed(f'failed: expected response.uid="{uid}", got "{got_uid}"')
    result = _d(response.get("result"))
    if result.get("status") != "Success":
        message = result.get("message")
        if isinstance(message, str) and message:
            raise ConversionFailed(f"failed: {message}")
        status = result.get("status") if isinstance(result.get("status"), str) else ""
        raise ConversionFailed(f"failed: response.result.status was '{status}', not 'Success'")
    objects = response.get("convertedObjects")
    return objects if isinstance(objects, list) else []


def _check_object(original: dict[str, Any], converted: Any, desired: str, index: int | None) -> dict[str, Any]:
    """One converted object checked against its original, the original's metadata back but its labels and
    annotations. `index`: None for a single object, else its place in a list, named as kube-apiserver names it."""
    obj_at = "object" if index is None else f"converted object at index {index + 1}"
    at0 = "object at index 0" if index is None else obj_at  # a single object's type checks name index 0
    if not isinstance(converted, dict):
        where = "object at index 0" if index is None else f"converted object at index {index}"
        raise ConversionFailed(f"returned invalid {where}: json: cannot unmarshal "
                               f"{errors.go_json_kind(converted)} into Go value of type map[string]interface {{}}")
    if gv_text(converted.get("apiVersion")) != gv_text(desired):
        raise ConversionFailed(f"returned invalid {at0}: invalid groupVersion (expected {gv_text(desired)}, "
                               f"received {gv_text(converted.get('apiVersion'))})")
    kind = converted.get("kind") if isinstance(converted.get("kind"), str) else ""
    if kind != original.get("kind"):
        raise ConversionFailed(f"returned invalid {at0}: invalid kind (expected {original.get('kind')}, "
                               f"received {kind})")
    meta, old_meta = _d(converted.get("metadata")), _d(original.get("metadata"))
    for key, shown in (("name", "name"), ("namespace", "namespace"), ("uid", "UID")):
        new = meta.get(key) if isinstance(meta.get(key), str) else ""
        old = old_meta.get(key, "")
        if new != old:
            raise ConversionFailed(f"returned invalid {obj_at}: must have the same {shown}: {old} != {new}")
    meta_at = "metadata" if index is None else f"metadata in object at index {index + 1}"
    out = dict(converted)
    out["metadata"] = _restored_meta(old_meta, converted.get("metadata", _MISSING), meta_at)
    return out


_MISSING = object()


def _restored_meta(old_meta: dict[str, Any], meta: Any, at: str) -> dict[str, Any]:
    """The original metadata with the webhook's labels and annotations (validated when it changed them)."""
    if meta is _MISSING:
        raise ConversionFailed(f"returned invalid {at}: missing metadata in converted object")
    if not isinstance(meta, dict):
        raise ConversionFailed(f"returned invalid {at}: invalid metadata of type {go_type(meta)} in converted "
                               "object")
    restored = {k: v for k, v in old_meta.items() if k not in ("labels", "annotations")}
    for key, path in (("labels", "metadata.labels"), ("annotations", "metadata.annotation")):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConversionFailed(f"returned invalid {at}: invalid metadata.{key} of type {go_type(value)} in "
                                   "converted object")
        for k, v in value.items():
            if not isinstance(v, str):
                raise ConversionFailed(f"returned invalid {at}: metadata.{key}[{k}] must be a string, but is "
                                       f"{go_type(v)} in converted object")
        if value != (old_meta.get(key) or {}):
            errs = validate_labels(value, path) if key == "labels" else validate_annotations(value, path)
            texts = list(dict.fromkeys(e.text() for e in errs))
            if texts:
                joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
                raise ConversionFailed(f"returned invalid {at}: {joined}")
        restored[key] = value
    return restored


def checked(originals: list[dict[str, Any]], answers: list[Any], desired: str) -> list[dict[str, Any]]:
    """The webhook's objects, each checked against the one it converts (one object: kube-apiserver's single-object
    words; several: its list words)."""
    if len(answers) != len(originals):
        raise ConversionFailed(f"returned {len(answers)} objects, expected {len(originals)}")
    if len(originals) == 1:
        return [_check_object(originals[0], answers[0], desired, None)]
    return [_check_object(o, a, desired, i) for i, (o, a) in enumerate(zip(originals, answers, strict=True))]


class ConversionWebhooks:
    """Calls CRDs' conversion webhooks through the admission webhooks' client (trust roots, Service endpoints):
    registry.conversion's CustomConverter."""

    def __init__(self, plugin: WebhookAdmission) -> None:
        self.plugin = plugin

    async def convert(self, conversion: dict[str, Any], objects: list[dict[str, Any]],
                      desired: str) -> list[dict[str, Any]]:
        """`objects` in apiVersion `desired`: the ones in another version through one ConversionReview. A failure
        is kube-apiserver's: a 500 whose message is the converter's error as it stands."""
        todo = [i for i, o in enumerate(objects) if o.get("apiVersion") != desired]
        if not todo:
            return objects
        first = objects[todo[0]]
        try:
            converted = await self._call(conversion, [objects[i] for i in todo], desired)
        except ConversionFailed as e:
            text = str(e)
            if not text.startswith("no supported"):
                text = f"conversion webhook for {gvk_text(first.get('apiVersion'), first.get('kind'))} {text}"
            raise errors.StatusError(500, "", text) from None
        out = list(objects)
        for i, obj in zip(todo, converted, strict=True):
            out[i] = obj
        return out

    async def _call(self, conversion: dict[str, Any], objects: list[dict[str, Any]],
                    desired: str) -> list[dict[str, Any]]:
        version = review_version(conversion)
        uid = ids.uuid4()
        review = {"kind": "ConversionReview", "apiVersion": f"{GROUP}/{version}",
                  "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects}}
        client_config = _d(_d(conversion.get("webhook")).get("clientConfig"))
        try:
            target = await self.plugin.target({"clientConfig": client_config}, TIMEOUT_SECONDS)
            status, body = await self.plugin.client.post(target, review, TIMEOUT_SECONDS)
        except CallError as e:
            raise ConversionFailed(f"failed: {e}") from None
        if status != 200:
            raise ConversionFailed(f"failed: the server responded with the status code {status} but did not "
                                   "return more information")
        return checked(objects, converted_objects(body, version, uid), desired)
