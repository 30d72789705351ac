"""Encoder of a Swagger 2.0 document (JSON form) into gnostic's `openapi.v2.Document` protobuf, which kubectl reads.

Field numbers are those of github.com/google/gnostic-models openapiv2/OpenAPIv2.proto. The JSON keys each message
takes, and how a value picks a branch of a `oneof` (a parameter's `in`, a security scheme's `type`, a `$ref`), follow
gnostic's compiler, which Kubernetes runs on its own JSON document to serve this form. Values that stay free-form in
gnostic (`default`, `enum`, `example`, and every `x-` vendor extension) travel as `Any{yaml}`: the JSON text of the
value, which is YAML that kubectl's yaml parsers read back to the same value. proto3 rules apply: a zero scalar is left
out, a present message is written even when empty (kubectl tells `properties: {}` from no properties), and a scalar
inside a `oneof` is written even when zero (`additionalProperties: false`).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["encode_document"]

# A field encoder turns (field number, JSON value, where) into the field's bytes (key included) or b"".
Encoder = Callable[[int, Any, str], bytes]
# A message spec: JSON key -> (field number, encoder), and the number of its `repeated NamedAny vendor_extension`.
Spec = tuple[dict[str, tuple[int, Encoder]], int | None]

_VARINT, _FIXED64, _LEN = 0, 1, 2
_U64 = (1 << 64) - 1


# ------------------------------------------------------------------------------------------ wire

def varint(value: int) -> bytes:
    """Base-128 varint; a negative int64 is written as its 64-bit two's complement (10 bytes), as protobuf does."""
    value &= _U64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, _LEN) + varint(len(payload)) + payload


# --------------------------------------------------------------------------------------- scalars

def _fail(where: str, problem: str) -> ValueError:
    return ValueError(f"OpenAPI v2 document: {where}: {problem}")


def _utf8(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {type(value).__name__}")
    return value.encode("utf-8")


def _string(number: int, value: Any, where: str) -> bytes:
    data = _utf8(value, where)
    return length_delimited(number, data) if data else b""


def _strings(number: int, value: Any, where: str) -> bytes:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list of strings, got {type(value).__name__}")
    return b"".join(length_delimited(number, _utf8(item, f"{where}[{i}]")) for i, item in enumerate(value))


def _bool(number: int, value: Any, where: str) -> bytes:
    if not isinstance(value, bool):
        raise _fail(where, f"expected a boolean, got {type(value).__name__}")
    return tag(number, _VARINT) + b"\x01" if value else b""


def _int64(number: int, value: Any, where: str) -> bytes:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {type(value).__name__}")
    return tag(number, _VARINT) + varint(value) if value else b""


def _double(number: int, value: Any, where: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a number, got {type(value).__name__}")
    return tag(number, _FIXED64) + struct.pack("<d", float(value)) if value else b""


def _yaml_text(value: Any) -> str:
    # JSON is YAML; spaced separators keep it within what every YAML 1.1 parser (kubectl's yaml.v2) accepts.
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")) + "\n"


def _any_message(value: Any) -> bytes:
    """openapi.v2.Any {google.protobuf.Any value = 1; string yaml = 2}: only yaml is used, as gnostic does."""
    return length_delimited(2, _yaml_text(value).encode("utf-8"))


def _any(number: int, value: Any, where: str) -> bytes:
    return length_delimited(number, _any_message(value))


def _anys(number: int, value: Any, where: str) -> bytes:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list, got {type(value).__name__}")
    return b"".join(length_delimited(number, _any_message(v)) for v in value)


# -------------------------------------------------------------------------------------- messages

def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected an object, got {type(value).__name__}")
    return value


def _named_entry(number: int, key: str, value: bytes) -> bytes:
    """One entry of gnostic's ordered maps: a NamedX {string name = 1; X value = 2} message as field `number`."""
    return length_delimited(number, _string(1, key, key) + length_delimited(2, value))


def _vendor_extension(number: int, key: str, value: Any) -> bytes:
    """One NamedAny entry of a message's `repeated NamedAny vendor_extension`."""
    return _named_entry(number, key, _any_message(value))


def _encode(spec: Spec, value: Any, where: str) -> bytes:
    """A message from a JSON object: its known keys in field-number order, then its `x-` keys in document order."""
    fields, ext_number = spec
    obj = _object(value, where)
    for key in obj:
        if key not in fields and not (ext_number is not None and key.startswith("x-")):
            raise _fail(where, f"{key!r} is not a field of this object in OpenAPI v2")
    out = [enc(number, obj[key], f"{where}.{key}") for key, (number, enc) in fields.items() if key in obj]
    if ext_number is not None:
        out.extend(_vendor_extension(ext_number, k, v) for k, v in obj.items() if k.startswith("x-"))
    return b"".join(out)


def _messages(payload: Callable[[Any, str], bytes]) -> Encoder:
    """A repeated message field from a JSON list."""
    def enc(number: int, value: Any, where: str) -> bytes:
        if not isinstance(value, list):
            raise _fail(where, f"expected a list, got {type(value).__name__}")
        return b"".join(length_delimited(number, payload(v, f"{where}[{i}]")) for i, v in enumerate(value))
    return enc


def _named(payload: Callable[[Any, str], bytes]) -> Callable[[Any, str], bytes]:
    """gnostic's map messages (Definitions, Properties, ...): `repeated NamedX additional_properties = 1`,
    NamedX being {string name = 1; X value = 2}, in the JSON object's order."""
    def enc(value: Any, where: str) -> bytes:
        return b"".join(_named_entry(1, key, payload(item, f"{where}.{key}"))
                        for key, item in _object(value, where).items())
    return enc


def _payload(spec: Callable[[], Spec]) -> Callable[[Any, str], bytes]:
    """A message's bytes from its spec, looked up late so that messages can nest one another (Schema)."""
    return lambda value, where: _encode(spec(), value, where)


def _field(payload: Callable[[Any, str], bytes]) -> Encoder:
    """A singular message field."""
    return lambda number, value, where: length_delimited(number, payload(value, where))


def _message(spec: Callable[[], Spec]) -> Encoder:
    return _field(_payload(spec))


def _consecutive(first: int, keys: tuple[str, ...], encoders: dict[str, Encoder]) -> dict[str, tuple[int, Encoder]]:
    return {key: (first + i, encoders[key]) for i, key in enumerate(keys)}


# The run of fields the primitive-typed messages share, in this order and with consecutive numbers
# (PrimitivesItems and Header from 1, the path and header parameters from 5, the query and form ones from 6).
_PRIMITIVE_KEYS = (
    "type", "format", "items", "collectionFormat", "default", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "enum",
    "multipleOf",
)
_PRIMITIVE_ENCODERS: dict[str, Encoder] = {
    "type": _string, "format": _string, "items": _message(lambda: _PRIMITIVES_ITEMS), "collectionFormat": _string,
    "default": _any, "maximum": _double, "exclusiveMaximum": _bool, "minimum": _double, "exclusiveMinimum": _bool,
    "maxLength": _int64, "minLength": _int64, "pattern": _string, "maxItems": _int64, "minItems": _int64,
    "uniqueItems": _bool, "enum": _anys, "multipleOf": _double,
}

_PRIMITIVES_ITEMS: Spec = (_consecutive(1, _PRIMITIVE_KEYS, _PRIMITIVE_ENCODERS), 18)
_HEADER: Spec = ({**_consecutive(1, _PRIMITIVE_KEYS, _PRIMITIVE_ENCODERS), "description": (18, _string)}, 19)

_PARAMETER_HEAD = {"required": (1, _bool), "in": (2, _string), "description": (3, _string), "name": (4, _string)}
_HEADER_OR_PATH_PARAMETER: Spec = ({**_PARAMETER_HEAD, **_consecutive(5, _PRIMITIVE_KEYS, _PRIMITIVE_ENCODERS)}, 22)
_QUERY_OR_FORM_PARAMETER: Spec = (
    {**_PARAMETER_HEAD, "allowEmptyValue": (5, _bool), **_consecutive(6, _PRIMITIVE_KEYS, _PRIMITIVE_ENCODERS)}, 23)
# NonBodyParameter's oneof: header_parameter_sub_schema = 1, form_data_... = 2, query_... = 3, path_... = 4.
_NON_BODY = {"header": (1, _HEADER_OR_PATH_PARAMETER), "formData": (2, _QUERY_OR_FORM_PARAMETER),
             "query": (3, _QUERY_OR_FORM_PARAMETER), "path": (4, _HEADER_OR_PATH_PARAMETER)}

_EXTERNAL_DOCS: Spec = ({"description": (1, _string), "url": (2, _string)}, 3)
_XML: Spec = ({"name": (1, _string), "namespace": (2, _string), "prefix": (3, _string), "attribute": (4, _bool),
               "wrapped": (5, _bool)}, 6)
_JSON_REFERENCE: Spec = ({"$ref": (1, _string), "description": (2, _string)}, None)


def _type_item(value: Any, where: str) -> bytes:
    """TypeItem {repeated string value = 1}: `type` is one name or a list of them."""
    return _strings(1, [value] if isinstance(value, str) else value, where)


def _items_item(value: Any, where: str) -> bytes:
    """ItemsItem {repeated Schema schema = 1}: `items` is one schema or a list of them."""
    schemas = value if isinstance(value, list) else [value]
    return b"".join(length_delimited(1, _encode(_SCHEMA, s, f"{where}[{i}]")) for i, s in enumerate(schemas))


def _additional_properties(value: Any, where: str) -> bytes:
    """AdditionalPropertiesItem oneof {Schema schema = 1; bool boolean = 2}."""
    if isinstance(value, bool):
        return tag(2, _VARINT) + (b"\x01" if value else b"\x00")
    return length_delimited(1, _encode(_SCHEMA, value, where))


_SCHEMA: Spec = ({
    "$ref": (1, _string), "format": (2, _string), "title": (3, _string), "description": (4, _string),
    "default": (5, _any), "multipleOf": (6, _double), "maximum": (7, _double), "exclusiveMaximum": (8, _bool),
    "minimum": (9, _double), "exclusiveMinimum": (10, _bool), "maxLength": (11, _int64), "minLength": (12, _int64),
    "pattern": (13, _string), "maxItems": (14, _int64), "minItems": (15, _int64), "uniqueItems": (16, _bool),
    "maxProperties": (17, _int64), "minProperties": (18, _int64), "required": (19, _strings), "enum": (20, _anys),
    "additionalProperties": (21, _field(_additional_properties)), "type": (22, _field(_type_item)),
    "items": (23, _field(_items_item)), "allOf": (24, _messages(_payload(lambda: _SCHEMA))),
    "properties": (25, _field(_named(_payload(lambda: _SCHEMA)))), "discriminator": (26, _string),
    "readOnly": (27, _bool), "xml": (28, _message(lambda: _XML)),
    "externalDocs": (29, _message(lambda: _EXTERNAL_DOCS)),
    "example": (30, _any),
}, 31)
_FILE_SCHEMA: Spec = ({
    "format": (1, _string), "title": (2, _string), "description": (3, _string), "default": (4, _any),
    "required": (5, _strings), "type": (6, _string), "readOnly": (7, _bool),
    "externalDocs": (8, _message(lambda: _EXTERNAL_DOCS)), "example": (9, _any),
}, 10)
_BODY_PARAMETER: Spec = ({"description": (1, _string), "name": (2, _string), "in": (3, _string),
                          "required": (4, _bool), "schema": (5, _message(lambda: _SCHEMA))}, 6)


def _parameter(value: Any, where: str) -> bytes:
    """Parameter oneof {BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2}, by `in`."""
    location = _object(value, where).get("in")
    if location == "body":
        return length_delimited(1, _encode(_BODY_PARAMETER, value, where))
    if location not in _NON_BODY:
        raise _fail(where, f"parameter location {location!r} is none of body, header, formData, query, path")
    number, spec = _NON_BODY[location]
    return length_delimited(2, length_delimited(number, _encode(spec, value, where)))


def _parameters_item(value: Any, where: str) -> bytes:
    """ParametersItem oneof {Parameter parameter = 1; JsonReference json_reference = 2}."""
    if "$ref" in _object(value, where):
        return length_delimited(2, _encode(_JSON_REFERENCE, value, where))
    return length_delimited(1, _parameter(value, where))


def _schema_item(value: Any, where: str) -> bytes:
    """SchemaItem oneof {Schema schema = 1; FileSchema file_schema = 2}: a response body of type file is the second."""
    if _object(value, where).get("type") == "file":
        return length_delimited(2, _encode(_FILE_SCHEMA, value, where))
    return length_delimited(1, _encode(_SCHEMA, value, where))


_RESPONSE: Spec = ({
    "description": (1, _string), "schema": (2, _field(_schema_item)),
    "headers": (3, _field(_named(_payload(lambda: _HEADER)))),
    "examples": (4, _field(_named(lambda v, w: _any_message(v)))),
}, 5)


def _response_value(value: Any, where: str) -> bytes:
    """ResponseValue oneof {Response response = 1; JsonReference json_reference = 2}."""
    if "$ref" in _object(value, where):
        return length_delimited(2, _encode(_JSON_REFERENCE, value, where))
    return length_delimited(1, _encode(_RESPONSE, value, where))


_RESPONSE_CODE = re.compile(r"^([0-9]{3}|default)$")


def _responses(value: Any, where: str) -> bytes:
    """Responses {repeated NamedResponseValue response_code = 1; repeated NamedAny vendor_extension = 2}."""
    codes, extensions = [], []
    for key, item in _object(value, where).items():
        if key.startswith("x-"):
            extensions.append(_vendor_extension(2, key, item))
        elif _RESPONSE_CODE.match(key):
            codes.append(_named_entry(1, key, _response_value(item, f"{where}.{key}")))
        else:
            raise _fail(where, f"{key!r} is neither a status code, 'default' nor an x- extension")
    return b"".join(codes + extensions)


_OPERATION: Spec = ({
    "tags": (1, _strings), "summary": (2, _string), "description": (3, _string),
    "externalDocs": (4, _message(lambda: _EXTERNAL_DOCS)), "operationId": (5, _string), "produces": (6, _strings),
    "consumes": (7, _strings), "parameters": (8, _messages(_parameters_item)), "responses": (9, _field(_responses)),
    "schemes": (10, _strings), "deprecated": (11, _bool),
    "security": (12, _messages(lambda v, w: _security_requirement(v, w))),
}, 13)
_PATH_ITEM: Spec = ({
    "$ref": (1, _string), "get": (2, _message(lambda: _OPERATION)), "put": (3, _message(lambda: _OPERATION)),
    "post": (4, _message(lambda: _OPERATION)), "delete": (5, _message(lambda: _OPERATION)),
    "options": (6, _message(lambda: _OPERATION)), "head": (7, _message(lambda: _OPERATION)),
    "patch": (8, _message(lambda: _OPERATION)), "parameters": (9, _messages(_parameters_item)),
}, 10)


def _paths(value: Any, where: str) -> bytes:
    """Paths {repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2}."""
    extensions, paths = [], []
    for key, item in _object(value, where).items():
        if key.startswith("x-"):
            extensions.append(_vendor_extension(1, key, item))
        elif key.startswith("/"):
            paths.append(_named_entry(2, key, _encode(_PATH_ITEM, item, f"{where}.{key}")))
        else:
            raise _fail(where, f"{key!r} is neither a path (starting with /) nor an x- extension")
    return b"".join(extensions + paths)


def _security_requirement(value: Any, where: str) -> bytes:
    """SecurityRequirement {repeated NamedStringArray additional_properties = 1};
    StringArray being {repeated string value = 1}."""
    return _named(lambda v, w: _strings(1, v, w))(value, where)


_OAUTH2_COMMON = {"type": (1, _string), "flow": (2, _string),
                  "scopes": (3, _field(_named(_utf8)))}  # Oauth2Scopes of NamedString
# SecurityDefinitionsItem's oneof, by `type` (and `flow` for oauth2).
_SECURITY_SCHEMES: dict[tuple[str, str | None], tuple[int, Spec]] = {
    ("basic", None): (1, ({"type": (1, _string), "description": (2, _string)}, 3)),
    ("apiKey", None): (2, ({"type": (1, _string), "name": (2, _string), "in": (3, _string),
                            "description": (4, _string)}, 5)),
    ("oauth2", "implicit"): (3, ({**_OAUTH2_COMMON, "authorizationUrl": (4, _string),
                                  "description": (5, _string)}, 6)),
    ("oauth2", "password"): (4, ({**_OAUTH2_COMMON, "tokenUrl": (4, _string), "description": (5, _string)}, 6)),
    ("oauth2", "application"): (5, ({**_OAUTH2_COMMON, "tokenUrl": (4, _string), "description": (5, _string)}, 6)),
    ("oauth2", "accessCode"): (6, ({**_OAUTH2_COMMON, "authorizationUrl": (4, _string), "tokenUrl": (5, _string),
                                    "description": (6, _string)}, 7)),
}


def _security_definitions_item(value: Any, where: str) -> bytes:
    obj = _object(value, where)
    kind = obj.get("type")
    flow = obj.get("flow") if kind == "oauth2" else None
    found = None
    if isinstance(kind, str) and (flow is None or isinstance(flow, str)):
        found = _SECURITY_SCHEMES.get((kind, flow))
    if found is None:
        raise _fail(where, f"security scheme of type {kind!r} (flow {obj.get('flow')!r}) is not one OpenAPI v2 has")
    number, spec = found
    return length_delimited(number, _encode(spec, obj, where))


_INFO: Spec = ({
    "title": (1, _string), "version": (2, _string), "description": (3, _string), "termsOfService": (4, _string),
    "contact": (5, _message(lambda: ({"name": (1, _string), "url": (2, _string), "email": (3, _string)}, 4))),
    "license": (6, _message(lambda: ({"name": (1, _string), "url": (2, _string)}, 3))),
}, 7)
_TAG: Spec = ({"name": (1, _string), "description": (2, _string),
               "externalDocs": (3, _message(lambda: _EXTERNAL_DOCS))}, 4)
_DOCUMENT: Spec = ({
    "swagger": (1, _string), "info": (2, _message(lambda: _INFO)), "host": (3, _string), "basePath": (4, _string),
    "schemes": (5, _strings), "consumes": (6, _strings), "produces": (7, _strings), "paths": (8, _field(_paths)),
    "definitions": (9, _field(_named(_payload(lambda: _SCHEMA)))),
    "parameters": (10, _field(_named(_parameter))),
    "responses": (11, _field(_named(_payload(lambda: _RESPONSE)))),
    "security": (12, _messages(_security_requirement)),
    "securityDefinitions": (13, _field(_named(_security_definitions_item))),
    "tags": (14, _messages(_payload(lambda: _TAG))), "externalDocs": (15, _message(lambda: _EXTERNAL_DOCS)),
}, 16)


def encode_document(doc: dict[str, Any]) -> bytes:
    """The `openapi.v2.Document` message of a Swagger 2.0 document; ValueError names what does not fit the schema."""
    return _encode(_DOCUMENT, doc, "$")
