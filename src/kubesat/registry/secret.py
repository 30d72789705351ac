"""Secret: typed key/value data; `stringData` folds into `data`; type-specific required keys."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from kubesat.errors import FieldError, forbidden_field, invalid_value, required, too_long
from kubesat.registry.meta import (
    IMMUTABLE,
    age_column,
    as_dict,
    column,
    config_map_key,
    field_doc,
    name_column,
    validate_kube_finalizers,
)
from kubesat.registry.strategy import Strategy
from kubesat.apimachinery.duration import age

MAX_SECRET_SIZE = 1 * 1024 * 1024

TYPE_OPAQUE = "Opaque"
TYPE_SA_TOKEN = "kubernetes.io/service-account-token"
TYPE_DOCKERCFG = "kubernetes.io/dockercfg"
TYPE_DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
TYPE_BASIC_AUTH = "kubernetes.io/basic-auth"
TYPE_SSH_AUTH = "kubernetes.io/ssh-auth"
TYPE_TLS = "kubernetes.io/tls"

SA_NAME_KEY = "kubernetes.io/service-account.name"
SA_UID_KEY = "kubernetes.io/service-account.uid"
DOCKERCFG_KEY = ".dockercfg"
DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
BASIC_USERNAME_KEY = "username"
BASIC_PASSWORD_KEY = "password"
SSH_PRIVATE_KEY = "ssh-privatekey"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"

REDACTED = "<secret contents redacted>"
IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"


def decode_value(value: Any) -> bytes | None:
    """A `data` value as bytes (JSON carries them base64-encoded); None if it is not valid base64."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if value is None:
        return b""
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return None


def _value_size(value: Any) -> int:
    raw = decode_value(value)
    if raw is None:
        return len(str(value)) * 3 // 4
    return len(raw)


def merge_string_data(obj: dict[str, Any]) -> None:
    """Fold `stringData` into `data` (its keys win) and drop it, as the v1 -> internal conversion does."""
    string_data = obj.pop("stringData", None)
    if not isinstance(string_data, dict) or not string_data:
        return
    data = obj.get("data")
    if not isinstance(data, dict):
        data = obj["data"] = {}
    for k, v in string_data.items():
        text = v if isinstance(v, str) else ("" if v is None else str(v))
        data[k] = base64.b64encode(text.encode()).decode()


def _go_json_error(raw: bytes) -> str | None:
    """None if `raw` decodes as a JSON object; else an error worded like Go's encoding/json."""
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return "unexpected end of JSON input"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text):
            return "unexpected end of JSON input"
        ch = text[e.pos]
        if e.msg.startswith("Expecting value"):
            return f"invalid character '{ch}' looking for beginning of value"
        if e.msg.startswith("Expecting property name"):
            return f"invalid character '{ch}' looking for beginning of object key string"
        if e.msg.startswith("Expecting ',' delimiter") or e.msg.startswith("Expecting ':' delimiter"):
            return f"invalid character '{ch}' after object key:value pair"
        if e.msg.startswith("Extra data"):
            return f"invalid character '{ch}' after top-level value"
        return f"invalid character '{ch}' looking for beginning of value"
    if not isinstance(parsed, dict):
        kind = {list: "array", str: "string", bool: "bool", int: "number", float: "number"}.get(type(parsed))
        if parsed is None:
            return None  # JSON null leaves the map empty without an error
        return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
    return None


def _validate_type_data(stype: str, meta: dict[str, Any], data: dict[str, Any]) -> list[FieldError]:
    """What a Secret of a well-known type must hold."""
    errs: list[FieldError] = []
    if stype == TYPE_SA_TOKEN:
        annotations = as_dict(meta.get("annotations"))
        if not annotations.get(SA_NAME_KEY):
            errs.append(required(f"metadata.annotations[{SA_NAME_KEY}]"))
    elif stype in (TYPE_DOCKERCFG, TYPE_DOCKERCONFIGJSON):
        key = DOCKERCFG_KEY if stype == TYPE_DOCKERCFG else DOCKERCONFIGJSON_KEY
        if key not in data:
            errs.append(required(f"data[{key}]"))
        else:
            problem = _go_json_error(decode_value(data[key]) or b"")
            if problem:
                errs.append(invalid_value(f"data[{key}]", REDACTED, problem))
    elif stype == TYPE_BASIC_AUTH:
        if BASIC_USERNAME_KEY not in data and BASIC_PASSWORD_KEY not in data:
            errs.append(required(f"data[{BASIC_USERNAME_KEY}]"))
            errs.append(required(f"data[{BASIC_PASSWORD_KEY}]"))
    elif stype == TYPE_SSH_AUTH:
        if not decode_value(data.get(SSH_PRIVATE_KEY)):
            errs.append(required(f"data[{SSH_PRIVATE_KEY}]"))
    elif stype == TYPE_TLS:
        if TLS_CERT_KEY not in data:
            errs.append(required(f"data[{TLS_CERT_KEY}]"))
        if TLS_KEY_KEY not in data:
            errs.append(required(f"data[{TLS_KEY_KEY}]"))
    return errs


class SecretStrategy(Strategy):
    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        merge_string_data(obj)
        if not obj.get("type"):
            obj["type"] = TYPE_OPAQUE

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        merge_string_data(new)
        if not new.get("type"):
            # Decoding defaults an absent type to Opaque before the update is looked at.
            new["type"] = TYPE_OPAQUE

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        meta = obj.get("metadata") or {}
        errs = validate_kube_finalizers(meta)
        data = obj.get("data")
        data = data if isinstance(data, dict) else {}
        total = 0
        for key, value in data.items():
            for msg in config_map_key(key):
                errs.append(invalid_value(f"data[{key}]", key, msg))
            total += _value_size(value)
        if total > MAX_SECRET_SIZE:
            errs.append(too_long("data", MAX_SECRET_SIZE))

        errs += _validate_type_data(obj.get("type") or "", meta, data)
        return errs

    def validate_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        errs: list[FieldError] = []
        if (new.get("type") or "") != (old.get("type") or ""):
            errs.append(invalid_value("type", new.get("type") or "", IMMUTABLE))
        if old.get("immutable") is True:
            if new.get("immutable") is not True:
                errs.append(forbidden_field("immutable", IMMUTABLE_WHEN_SET))
            if (new.get("data") or {}) != (old.get("data") or {}):
                errs.append(forbidden_field("data", IMMUTABLE_WHEN_SET))
        return errs + self.validate(new)

    # --- reads --------------------------------------------------------------------------
    def table_columns(self) -> list[dict[str, Any]]:
        return [
            name_column(),
            column("Type", field_doc("io.k8s.api.core.v1.Secret", "type")),
            column("Data", field_doc("io.k8s.api.core.v1.Secret", "data")),
            age_column(),
        ]

    def table_cells(self, obj: dict[str, Any], now: datetime) -> list[Any]:
        data = obj.get("data")
        return [
            (obj.get("metadata") or {}).get("name", ""),
            obj.get("type") or "",
            len(data) if isinstance(data, dict) else 0,
            age(obj, now),
        ]

    def field_value(self, obj: dict[str, Any], field: str) -> str | None:
        if field == "type":
            return str(obj.get("type") or "")
        return super().field_value(obj, field)
