"""The bounds on what one request may make the server hold: body size, decoded size, nesting, stored object size.

Every decoded request body (JSON, YAML, protobuf, every patch type) goes through `check_document`, and
every stored object through `check_stored`, so a small request can never become a large object.
"""

from __future__ import annotations

import math
from typing import Any

from kubesat import errors

# kube-apiserver refuses request bodies over 3 MiB; the decoded document counts against the same limit,
# whatever the encoding (a YAML alias expands where it is used, CVE-2019-11253).
MAX_REQUEST_BYTES = 3 * 1024 * 1024
# etcd's default request limit, and so the largest object Kubernetes can store.
MAX_OBJECT_BYTES = 1536 * 1024
# Deeper than any Kubernetes object (a pod nests about 10 levels, managedFields about 20); it keeps the
# recursive walks (validation, merging, encoding) far from Python's recursion limit.
MAX_DEPTH = 128
# Work on a body or stored object larger than this (decoding, checks, patching, validation) is done off
# the event loop, so that one large request never holds up the others.
OFFLOAD_BYTES = 64 * 1024
# The most of an admission webhook's answer read (an AdmissionReview carries at most a patch of one object).
MAX_WEBHOOK_RESPONSE_BYTES = 2 * MAX_REQUEST_BYTES
# Steps one walk of a custom resource schema may take (CRD checks, validating, pruning or defaulting one
# object): a step is one schema node applied to one value; nested allOf/anyOf/oneOf can otherwise multiply.
MAX_SCHEMA_STEPS = 2_000_000
QUICKCHECK_SCHEMAS = 1024  # custom resource schemas kept compiled for the quick validity check
APPLY_SCHEMA_NODE_CACHE = 65_536  # schema nodes whose members managedFields bookkeeping remembers


def too_large_body() -> errors.StatusError:
    return errors.too_large(f"Request entity too large: limit is {MAX_REQUEST_BYTES}")


def too_deep() -> errors.StatusError:
    return errors.bad_request(f"the request body nests more than {MAX_DEPTH} levels deep")


def check_document(doc: Any, limit: int = MAX_REQUEST_BYTES, shared: bool = False) -> int:
    """The JSON size `doc` would have, after raising 413 if it is over `limit` and 400 if it nests too deep
    or holds what JSON cannot.

    With `shared` (a document from YAML, whose aliases share containers) a container reached twice counts
    every time, as its JSON form repeats it, but is walked once, and a container inside itself (a
    recursive alias) is a 400; without it, the document must be a tree (as JSON decoders make them).
    """
    size = _Walk(limit).size(doc, 0) if shared else _tree_size(doc, 0)
    if size > limit:
        raise too_large_body() if limit >= MAX_REQUEST_BYTES else errors.too_large(
            f"Request entity too large: the result would be more than {limit} bytes")
    return size


def _text_size(text: str) -> int:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.bad_request(
                "the request body holds text that is not valid Unicode (a lone surrogate)") from None
    return len(text) + 3


def _tree_size(value: Any, depth: int) -> int:
    kind = type(value)
    if kind is str:
        return _text_size(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise too_deep()
        n = 2
        for k, v in value.items():
            if type(k) is not str:
                raise errors.bad_request(f"the request body has a mapping key that is not a string: {k!r:.64}")
            n += _text_size(k) + 1 + _tree_size(v, depth + 1)
        return n
    if kind is list:
        if depth >= MAX_DEPTH:
            raise too_deep()
        n = 2
        for v in value:
            n += _tree_size(v, depth + 1) + 1
        return n
    return _scalar_size(value)


def _scalar_size(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise errors.bad_request("the request body holds an integer that does not fit in 64 bits")
        return (value.bit_length() * 3 + 9) // 10 + 2
    if isinstance(value, float):
        if not math.isfinite(value):
            raise errors.bad_request("the request body holds a number too large for a float64")
        return 24
    if isinstance(value, str):
        return _text_size(value)
    raise errors.bad_request(f"the request body holds a value JSON cannot represent (a {type(value).__name__})")


class _Walk:
    __slots__ = ("limit", "seen", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[int, tuple[int, int]] = {}  # id(container) -> (JSON size, height of its subtree)
        self.open: set[int] = set()  # containers on the current path

    def size(self, value: Any, depth: int) -> int:
        """JSON size of value; the cost is one visit per distinct container, however often it is used."""
        if isinstance(value, (dict, list)):
            return self._container(value, depth)[0]
        return _scalar_size(value)

    def _container(self, value: dict[Any, Any] | list[Any], depth: int) -> tuple[int, int]:
        key = id(value)
        seen = self.seen.get(key)
        if seen is None:
            if key in self.open:
                raise errors.bad_request("the request body contains itself (a recursive YAML alias)")
            if depth >= MAX_DEPTH:
                raise too_deep()
            self.open.add(key)
            seen = self._measure(value, depth)
            self.open.discard(key)
            self.seen[key] = seen
        if depth + seen[1] > MAX_DEPTH:
            raise too_deep()
        return seen

    def _measure(self, value: dict[Any, Any] | list[Any], depth: int) -> tuple[int, int]:
        n, height = 2, 1
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if isinstance(v, (dict, list)):
                size, h = self._container(v, depth + 1)
                height = max(height, h + 1)
            else:
                size = self.size(v, depth + 1)
            if isinstance(value, dict):
                if not isinstance(k, str):
                    raise errors.bad_request(f"the request body has a mapping key that is not a string: {k!r:.64}")
                n += size + _text_size(k) + 1
            else:
                n += size + 1
        if n > self.limit:
            raise too_large_body()
        return n, height


def check_stored(encoded: bytes) -> None:
    """413 for an object larger than Kubernetes could store."""
    if len(encoded) > MAX_OBJECT_BYTES:
        raise errors.too_large(
            f"Request entity too large: the object would be {len(encoded)} bytes when stored, "
            f"more than the limit of {MAX_OBJECT_BYTES}")


# CEL (x-kubernetes-validations, webhook matchConditions, ValidatingAdmissionPolicy), as Kubernetes bounds it
# (apiserver pkg/apis/cel/config.go, apiextensions validation): cost units are cel-go's.
CEL_PER_CALL_LIMIT = 1_000_000  # one evaluation of one expression
CEL_RUNTIME_BUDGET = 10_000_000  # every rule of one custom resource together
CEL_MATCH_CONDITIONS_BUDGET = 2_500_000  # a webhook's matchConditions together
CEL_STATIC_COST_LIMIT = 10_000_000  # the estimate of one rule, times how often it can run
CEL_CRD_COST_LIMIT = 100_000_000  # the estimates of every rule of one version's schema
CEL_MAX_MESSAGE_EXPRESSION_BYTES = 5 * 1024  # a messageExpression's result
CEL_MAX_EXPRESSION_CHARS = 100_000  # cel-go's default parser limit on an expression's code points
CEL_PROGRAM_CACHE = 4096  # compiled runtime programs kept, by expression text
CEL_RULED_NODE_CACHE = 65_536  # schema nodes remembered as having (or not) validation rules below them
