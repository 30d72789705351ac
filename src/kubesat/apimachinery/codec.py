"""Request bodies in (JSON, YAML, Kubernetes protobuf) and answers out, with Kubernetes' error wording."""

from __future__ import annotations

import re
from typing import Any

import orjson
import yaml

from kubesat import errors, limits
from kubesat.apimachinery import protobuf

MAX_BODY = limits.MAX_REQUEST_BYTES
# A YAML merge key (`<<: [*a, *b]`) copies entries; nested merges would double them at every level.
MAX_MERGED_ENTRIES = 100_000

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"
# Bodies read as YAML (an apply body is YAML, and so may be JSON).
YAML_TYPES = (YAML, "application/x-yaml", "text/yaml", APPLY_PATCH_YAML)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class _StrictLoader(yaml.SafeLoader):
    """YAML 1.1 safe loading, but duplicate keys are an error (as sigs.k8s.io/yaml makes them)."""

    # Nesting is refused while scanning: PyYAML's scanner slows down with every open level (a few KiB of
    # `[` took seconds) and its composer recurses once per level.
    def fetch_flow_collection_start(self, token_class: Any) -> None:
        super().fetch_flow_collection_start(token_class)
        self._check_depth()

    def add_indent(self, column: int) -> bool:
        added: bool = super().add_indent(column)
        self._check_depth()
        return added

    def _check_depth(self) -> None:
        if self.flow_level + len(self.indents) > limits.MAX_DEPTH:
            raise limits.too_deep()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        super().flatten_mapping(node)
        if len(node.value) > MAX_MERGED_ENTRIES:
            raise yaml.constructor.ConstructorError(
                None, None, f"merge keys expand a mapping past {MAX_MERGED_ENTRIES} entries", node.start_mark)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key (a list, a map) repeats no key seen
            continue
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f'mapping key "{key}" already defined', key_node.start_mark
            )
    out = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    if all(isinstance(k, str) for k in out):
        return out
    # JSON keys are strings: scalar keys become their text, as sigs.k8s.io/yaml turns YAML into JSON.
    return {_key_text(k): v for k, v in out.items()}


def _key_text(key: Any) -> Any:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, (int, float)):
        return repr(key)
    return key  # anything else is refused where the document is checked


def _construct_timestamp(loader: _StrictLoader, node: yaml.ScalarNode) -> str:
    """A date stays the text it was written as: decoding into a JSON value leaves it a string."""
    return loader.construct_scalar(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def load_yaml(raw: bytes) -> Any:
    """One YAML document, whose expanded size (aliases repeated where used) counts against the body limit."""
    try:
        doc = yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise errors.bad_request(f"error converting YAML to JSON: yaml: {_yaml_problem(e)}") from None
    except RecursionError:
        raise limits.too_deep() from None
    except (ValueError, TypeError) as e:  # e.g. an int too long to convert, a list as a mapping key
        raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
    limits.check_document(doc, shared=True)
    return doc


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    if mark is not None:
        return f"line {mark.line + 1}: {problem}"
    return str(problem)


# A JSON string escape of a UTF-16 surrogate: a pair stands for one character, a lone one for nothing.
_SURROGATE_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_ANY_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def replace_lone_surrogates(raw: bytes) -> bytes:
    """JSON whose lone surrogate escapes (`"\ud800"`) read as U+FFFD, as Go's decoder reads them."""
    # A backslash is found with one memchr; most bodies have none, and need no further look.
    if b"\\" not in raw or b"\\u" not in raw or not _ANY_SURROGATE.search(raw):
        return raw
    return _SURROGATE_ESCAPES.sub(_keep_or_replace, raw)


def _keep_or_replace(m: re.Match[bytes]) -> bytes:
    text = m.group(0)
    return text if len(text) != 6 else b"\\ufffd"


def load_json(raw: bytes) -> Any:
    raw = replace_lone_surrogates(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if "depth" in str(e) or "recursion" in str(e).lower():
            raise limits.too_deep() from None
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None
    # orjson makes only JSON values and its text is within the body limit, so nesting is all that is
    # left to check, and a text with few brackets cannot nest deeply: the hot paths' small bodies.
    if raw.count(b"{") + raw.count(b"[") > limits.MAX_DEPTH:
        limits.check_document(doc)
    return doc


def decode_object(content_type: str | None, raw: bytes) -> dict[str, Any]:
    """A create/update body as an object dict; 400/415 with a clear message otherwise."""
    mt = media_type(content_type)
    if mt in ("", JSON, "*/*"):
        obj = load_json(raw)
    elif mt in YAML_TYPES:
        obj = load_yaml(raw)
    elif mt == PROTOBUF:
        try:
            obj = protobuf.decode(raw)
        except protobuf.ProtobufError as e:
            raise errors.bad_request(f"unable to decode protobuf body: {e}") from None
        limits.check_document(obj)
    else:
        raise errors.unsupported_media_type(content_type or "")
    if not isinstance(obj, dict):
        raise errors.bad_request(
            f"couldn't get version/kind; json parse error: expected a JSON object, got {_json_type(obj)}"
        )
    return obj


def _json_type(v: Any) -> str:
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return "a number"


def check_kind(obj: dict[str, Any], api_version: str, kind: str) -> None:
    """Fill a missing apiVersion/kind from the URL; a different one is a 400, as Kubernetes answers."""
    have_v = obj.get("apiVersion")
    have_k = obj.get("kind")
    if have_v is not None and not isinstance(have_v, str):
        raise errors.bad_request("apiVersion must be a string")
    if have_k is not None and not isinstance(have_k, str):
        raise errors.bad_request("kind must be a string")
    if have_v and have_v != api_version:
        raise errors.bad_request(
            f"the API version in the data ({have_v}) does not match the expected API version ({api_version})"
        )
    if have_k and have_k != kind:
        raise errors.bad_request(f"the kind in the data ({have_k}) does not match the expected kind ({kind})")
    obj["apiVersion"] = api_version
    obj["kind"] = kind


def wants_yaml(accept: str | None) -> bool:
    if not accept:
        return False
    first = accept.split(",", 1)[0]
    return media_type(first) in (YAML, "application/x-yaml")


def dump_json(obj: Any) -> bytes:
    return orjson.dumps(obj)


def dump_yaml(obj: Any) -> bytes:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).encode()
