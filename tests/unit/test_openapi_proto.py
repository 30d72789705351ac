"""The gnostic protobuf form of /openapi/v2: decoded with field numbers transcribed from OpenAPIv2.proto and compared
with the JSON document, plus the Accept negotiation and ETag rules of kube-openapi's handler."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from typing import Any

import pytest
import yaml

from kubesat.api import openapi
from kubesat.apimachinery.openapi_proto import encode_document
from kubesat.apimachinery.protobuf import _varint

# The messages of github.com/google/gnostic-models openapiv2/OpenAPIv2.proto this test decodes, one a line:
# "label type name = number" separated by ";". Written out here independently of the encoder's tables, so that a
# wrong number on either side shows up as a mismatch.
_PROTO = """
Document: string swagger=1; Info info=2; string host=3; string base_path=4; repeated string schemes=5;
  repeated string consumes=6; repeated string produces=7; Paths paths=8; Definitions definitions=9;
  ParameterDefinitions parameters=10; ResponseDefinitions responses=11; repeated SecurityRequirement security=12;
  SecurityDefinitions security_definitions=13; repeated Tag tags=14; ExternalDocs external_docs=15;
  repeated NamedAny vendor_extension=16
Info: string title=1; string version=2; string description=3; string terms_of_service=4; Contact contact=5;
  License license=6; repeated NamedAny vendor_extension=7
Contact: string name=1; string url=2; string email=3; repeated NamedAny vendor_extension=4
License: string name=1; string url=2; repeated NamedAny vendor_extension=3
ExternalDocs: string description=1; string url=2; repeated NamedAny vendor_extension=3
Tag: string name=1; string description=2; ExternalDocs external_docs=3; repeated NamedAny vendor_extension=4
Any: bytes value=1; string yaml=2
NamedAny: string name=1; Any value=2
Paths: repeated NamedAny vendor_extension=1; repeated NamedPathItem path=2
NamedPathItem: string name=1; PathItem value=2
PathItem: string _ref=1; Operation get=2; Operation put=3; Operation post=4; Operation delete=5;
  Operation options=6; Operation head=7; Operation patch=8; repeated ParametersItem parameters=9;
  repeated NamedAny vendor_extension=10
Operation: repeated string tags=1; string summary=2; string description=3; ExternalDocs external_docs=4;
  string operation_id=5; repeated string produces=6; repeated string consumes=7;
  repeated ParametersItem parameters=8; Responses responses=9; repeated string schemes=10; bool deprecated=11;
  repeated SecurityRequirement security=12; repeated NamedAny vendor_extension=13
ParametersItem: Parameter parameter=1; JsonReference json_reference=2
JsonReference: string _ref=1; string description=2
Parameter: BodyParameter body_parameter=1; NonBodyParameter non_body_parameter=2
ParameterDefinitions: repeated NamedParameter additional_properties=1
NamedParameter: string name=1; Parameter value=2
BodyParameter: string description=1; string name=2; string in=3; bool required=4; Schema schema=5;
  repeated NamedAny vendor_extension=6
NonBodyParameter: HeaderParameterSubSchema header_parameter_sub_schema=1;
  FormDataParameterSubSchema form_data_parameter_sub_schema=2; QueryParameterSubSchema query_parameter_sub_schema=3;
  PathParameterSubSchema path_parameter_sub_schema=4
QueryParameterSubSchema: bool required=1; string in=2; string description=3; string name=4;
  bool allow_empty_value=5; string type=6; string format=7; PrimitivesItems items=8; string collection_format=9;
  Any default=10; double maximum=11; bool exclusive_maximum=12; double minimum=13; bool exclusive_minimum=14;
  int64 max_length=15; int64 min_length=16; string pattern=17; int64 max_items=18; int64 min_items=19;
  bool unique_items=20; repeated Any enum=21; double multiple_of=22; repeated NamedAny vendor_extension=23
FormDataParameterSubSchema: bool required=1; string in=2; string description=3; string name=4;
  bool allow_empty_value=5; string type=6; string format=7; PrimitivesItems items=8; string collection_format=9;
  Any default=10; double maximum=11; bool exclusive_maximum=12; double minimum=13; bool exclusive_minimum=14;
  int64 max_length=15; int64 min_length=16; string pattern=17; int64 max_items=18; int64 min_items=19;
  bool unique_items=20; repeated Any enum=21; double multiple_of=22; repeated NamedAny vendor_extension=23
PathParameterSubSchema: bool required=1; string in=2; string description=3; string name=4; string type=5;
  string format=6; PrimitivesItems items=7; string collection_format=8; Any default=9; double maximum=10;
  bool exclusive_maximum=11; double minimum=12; bool exclusive_minimum=13; int64 max_length=14;
  int64 min_length=15; string pattern=16; int64 max_items=17; int64 min_items=18; bool unique_items=19;
  repeated Any enum=20; double multiple_of=21; repeated NamedAny vendor_extension=22
HeaderParameterSubSchema: bool required=1; string in=2; string description=3; string name=4; string type=5;
  string format=6; PrimitivesItems items=7; string collection_format=8; Any default=9; double maximum=10;
  bool exclusive_maximum=11; double minimum=12; bool exclusive_minimum=13; int64 max_length=14;
  int64 min_length=15; string pattern=16; int64 max_items=17; int64 min_items=18; bool unique_items=19;
  repeated Any enum=20; double multiple_of=21; repeated NamedAny vendor_extension=22
PrimitivesItems: string type=1; string format=2; PrimitivesItems items=3; string collection_format=4;
  Any default=5; double maximum=6; bool exclusive_maximum=7; double minimum=8; bool exclusive_minimum=9;
  int64 max_length=10; int64 min_length=11; string pattern=12; int64 max_items=13; int64 min_items=14;
  bool unique_items=15; repeated Any enum=16; double multiple_of=17; repeated NamedAny vendor_extension=18
Responses: repeated NamedResponseValue response_code=1; repeated NamedAny vendor_extension=2
NamedResponseValue: string name=1; ResponseValue value=2
ResponseValue: Response response=1; JsonReference json_reference=2
ResponseDefinitions: repeated NamedResponse additional_properties=1
NamedResponse: string name=1; Response value=2
Response: string description=1; SchemaItem schema=2; Headers headers=3; Examples examples=4;
  repeated NamedAny vendor_extension=5
Headers: repeated NamedHeader additional_properties=1
NamedHeader: string name=1; Header value=2
Header: string type=1; string format=2; PrimitivesItems items=3; string collection_format=4; Any default=5;
  double maximum=6; bool exclusive_maximum=7; double minimum=8; bool exclusive_minimum=9; int64 max_length=10;
  int64 min_length=11; string pattern=12; int64 max_items=13; int64 min_items=14; bool unique_items=15;
  repeated Any enum=16; double multiple_of=17; string description=18; repeated NamedAny vendor_extension=19
Examples: repeated NamedAny additional_properties=1
SchemaItem: Schema schema=1; FileSchema file_schema=2
FileSchema: string format=1; string title=2; string description=3; Any default=4; repeated string required=5;
  string type=6; bool read_only=7; ExternalDocs external_docs=8; Any example=9; repeated NamedAny vendor_extension=10
Definitions: repeated NamedSchema additional_properties=1
Properties: repeated NamedSchema additional_properties=1
NamedSchema: string name=1; Schema value=2
Schema: string _ref=1; string format=2; string title=3; string description=4; Any default=5; double multiple_of=6;
  double maximum=7; bool exclusive_maximum=8; double minimum=9; bool exclusive_minimum=10; int64 max_length=11;
  int64 min_length=12; string pattern=13; int64 max_items=14; int64 min_items=15; bool unique_items=16;
  int64 max_properties=17; int64 min_properties=18; repeated string required=19; repeated Any enum=20;
  AdditionalPropertiesItem additional_properties=21; TypeItem type=22; ItemsItem items=23;
  repeated Schema all_of=24; Properties properties=25; string discriminator=26; bool read_only=27; Xml xml=28;
  ExternalDocs external_docs=29; Any example=30; repeated NamedAny vendor_extension=31
AdditionalPropertiesItem: Schema schema=1; bool boolean=2
TypeItem: repeated string value=1
ItemsItem: repeated Schema schema=1
Xml: string name=1; string namespace=2; string prefix=3; bool attribute=4; bool wrapped=5;
  repeated NamedAny vendor_extension=6
SecurityRequirement: repeated NamedStringArray additional_properties=1
NamedStringArray: string name=1; StringArray value=2
StringArray: repeated string value=1
SecurityDefinitions: repeated NamedSecurityDefinitionsItem additional_properties=1
NamedSecurityDefinitionsItem: string name=1; SecurityDefinitionsItem value=2
SecurityDefinitionsItem: BasicAuthenticationSecurity basic_authentication_security=1;
  ApiKeySecurity api_key_security=2; Oauth2ImplicitSecurity oauth2_implicit_security=3;
  Oauth2PasswordSecurity oauth2_password_security=4; Oauth2ApplicationSecurity oauth2_application_security=5;
  Oauth2AccessCodeSecurity oauth2_access_code_security=6
BasicAuthenticationSecurity: string type=1; string description=2; repeated NamedAny vendor_extension=3
ApiKeySecurity: string type=1; string name=2; string in=3; string description=4; repeated NamedAny vendor_extension=5
Oauth2ImplicitSecurity: string type=1; string flow=2; Oauth2Scopes scopes=3; string authorization_url=4;
  string description=5; repeated NamedAny vendor_extension=6
Oauth2PasswordSecurity: string type=1; string flow=2; Oauth2Scopes scopes=3; string token_url=4;
  string description=5; repeated NamedAny vendor_extension=6
Oauth2ApplicationSecurity: string type=1; string flow=2; Oauth2Scopes scopes=3; string token_url=4;
  string description=5; repeated NamedAny vendor_extension=6
Oauth2AccessCodeSecurity: string type=1; string flow=2; Oauth2Scopes scopes=3; string authorization_url=4;
  string token_url=5; string description=6; repeated NamedAny vendor_extension=7
Oauth2Scopes: repeated NamedString additional_properties=1
NamedString: string name=1; string value=2
"""

_SCALARS = {"string": 2, "bytes": 2, "bool": 0, "int64": 0, "double": 1}
# Messages that are a oneof and nothing else: their JSON value is that of the one branch set.
_ONEOFS = {"ParametersItem", "Parameter", "NonBodyParameter", "ResponseValue", "SchemaItem", "AdditionalPropertiesItem",
           "SecurityDefinitionsItem"}
# The branch a oneof must use for a JSON value (gnostic's choice), checked so that swapped branches fail.
_BRANCH_FITS = {
    "body_parameter": lambda v: v.get("in") == "body",
    "header_parameter_sub_schema": lambda v: v.get("in") == "header",
    "form_data_parameter_sub_schema": lambda v: v.get("in") == "formData",
    "query_parameter_sub_schema": lambda v: v.get("in") == "query",
    "path_parameter_sub_schema": lambda v: v.get("in") == "path",
    "schema": lambda v: not isinstance(v, dict) or v.get("type") != "file",
    "file_schema": lambda v: v.get("type") == "file",
    "basic_authentication_security": lambda v: v.get("type") == "basic",
    "api_key_security": lambda v: v.get("type") == "apiKey",
    "oauth2_implicit_security": lambda v: v.get("flow") == "implicit",
    "oauth2_password_security": lambda v: v.get("flow") == "password",
    "oauth2_application_security": lambda v: v.get("flow") == "application",
    "oauth2_access_code_security": lambda v: v.get("flow") == "accessCode",
    "parameter": lambda v: "$ref" not in v,
    "json_reference": lambda v: "$ref" in v,
    "response": lambda v: "$ref" not in v,
}


def _parse_proto(text: str) -> dict[str, dict[int, tuple[bool, str, str]]]:
    messages: dict[str, dict[int, tuple[bool, str, str]]] = {}
    for block in re.split(r"\n(?=\w+:)", text.strip()):
        name, body = block.split(":", 1)
        fields: dict[int, tuple[bool, str, str]] = {}
        for decl in body.split(";"):
            m = re.fullmatch(r"\s*(repeated )?(\w+) (\w+)=(\d+)\s*", decl)
            assert m, decl
            assert int(m[4]) not in fields, (name, decl)
            fields[int(m[4])] = (bool(m[1]), m[2], m[3])
        messages[name] = fields
    return messages


PROTO = _parse_proto(_PROTO)


def decode(message: str, buf: bytes, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Strict decoder: an undeclared field number, a wire type that does not fit the declared type, or a singular
    field written twice fails the test."""
    end = len(buf) if end is None else end
    out: dict[str, Any] = {}
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        assert number in PROTO[message], f"{message} has no field {number}"
        repeated, typ, name = PROTO[message][number]
        assert wire == _SCALARS.get(typ, 2), f"{message}.{name}: wire type {wire} for a {typ}"
        value: Any
        if wire == 0:
            raw, i = _varint(buf, i, end)
            value = bool(raw) if typ == "bool" else (raw - (1 << 64) if raw >> 63 else raw)
        elif wire == 1:
            value = struct.unpack("<d", buf[i:i + 8])[0]
            i += 8
        else:
            size, i = _varint(buf, i, end)
            assert i + size <= end, f"{message}.{name} runs past its message"
            if typ == "string":
                value = buf[i:i + size].decode("utf-8")
            elif typ == "bytes":
                value = buf[i:i + size]
            else:
                value = decode(typ, buf, i, i + size)
            i += size
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            assert name not in out, f"{message}.{name} written twice"
            out[name] = value
    assert i == end
    return out


def _json_key(name: str) -> str:
    if name == "_ref":
        return "$ref"
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def to_json(message: str, fields: dict[str, Any]) -> Any:
    """gnostic's message back in Swagger's JSON form."""
    spec = {name: (rep, typ) for rep, typ, name in PROTO[message].values()}

    def value(typ: str, v: Any) -> Any:
        return to_json(typ, v) if typ not in _SCALARS else v

    def named(entries: list[dict[str, Any]], typ: str) -> dict[str, Any]:
        value_type = {n: t for _, t, n in PROTO[typ].values()}["value"]
        return {e.get("name", ""): value(value_type, e.get("value", {} if value_type not in _SCALARS else ""))
                for e in entries}

    if message == "Any":
        return yaml.safe_load(fields["yaml"])
    if message in _ONEOFS:
        assert len(fields) == 1, (message, fields)
        (name, v), = fields.items()
        converted = value(spec[name][1], v)
        assert _BRANCH_FITS.get(name, lambda _: True)(converted), f"{message}.{name} chosen for {converted}"
        return converted
    if message in ("TypeItem", "ItemsItem"):
        items = [value(spec[n][1], x) for n in fields for x in fields[n]]
        return items[0] if len(items) == 1 else items
    if message == "StringArray":
        return fields.get("value", [])
    if set(spec) == {"additional_properties"}:
        return named(fields.get("additional_properties", []), spec["additional_properties"][1])
    out: dict[str, Any] = {}
    for name, v in fields.items():
        rep, typ = spec[name]
        if name in ("vendor_extension", "path", "response_code"):
            out.update(named(v, typ))
        elif rep:
            out[_json_key(name)] = [value(typ, x) for x in v]
        else:
            out[_json_key(name)] = value(typ, v)
    return out


def proto3(node: Any, key: str = "") -> Any:
    """A JSON document as proto3 keeps it: zero scalars (empty strings, false, 0) of message fields are dropped,
    except where free-form YAML (x- extensions, default, enum, example) or a oneof boolean carries them."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k.startswith("x-") or k in ("default", "enum", "example") or (k == "additionalProperties"
                                                                              and isinstance(v, bool)):
                out[k] = v
            elif not (v == "" or v is False or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0)):
                out[k] = proto3(v, k)
        return out
    if isinstance(node, list):
        return [proto3(v, key) for v in node]
    return node


def roundtrip(doc: dict[str, Any]) -> Any:
    return to_json("Document", decode("Document", encode_document(doc)))


# ------------------------------------------------------------------------------------------ tests

def test_proto_transcript_is_well_formed() -> None:
    for message, fields in PROTO.items():
        for _, typ, name in fields.values():
            assert typ in _SCALARS or typ in PROTO, f"{message}.{name}: unknown type {typ}"


def test_wire_bytes_of_a_small_document() -> None:
    # Worked out by hand from OpenAPIv2.proto: Document.swagger = 1, Document.definitions = 9,
    # Definitions.additional_properties = 1, NamedSchema {name = 1, value = 2}, Schema.type = 22 (key 0xb2 0x01),
    # TypeItem.value = 1.
    assert encode_document({"swagger": "2.0"}) == b"\x0a\x032.0"
    type_item = b"\x0a\x06string"
    schema = b"\xb2\x01" + bytes([len(type_item)]) + type_item
    named = b"\x0a\x01A\x12" + bytes([len(schema)]) + schema
    definitions = b"\x0a" + bytes([len(named)]) + named
    document = b"\x4a" + bytes([len(definitions)]) + definitions
    assert encode_document({"definitions": {"A": {"type": "string"}}}) == document


def test_served_document_decodes_to_the_json_document() -> None:
    doc = json.loads(openapi.openapi_v2())
    assert roundtrip(doc) == proto3(doc)


def test_definitions_kubectl_validates_with() -> None:
    got = to_json("Document", decode("Document", openapi.openapi_v2_protobuf()))["definitions"]
    doc = json.loads(openapi.openapi_v2())["definitions"]
    for name in ("io.k8s.api.authentication.v1.TokenReview", "io.k8s.api.authentication.v1.TokenReviewSpec",
                 "io.k8s.api.authorization.v1.SubjectAccessReviewSpec",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.api.core.v1.PodSpec"):
        assert got[name] == doc[name], name
    review = got["io.k8s.api.authentication.v1.TokenReview"]
    assert review["x-kubernetes-group-version-kind"] == [
        {"group": "authentication.k8s.io", "kind": "TokenReview", "version": "v1"}]
    assert review["required"] == ["spec"]
    assert list(got["io.k8s.api.authentication.v1.TokenReviewSpec"]["properties"]) == ["audiences", "token"]
    labels = got["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string"}
    containers = got["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-patch-merge-key"] == "name"


def test_patch_operations_carry_gvk_and_field_validation() -> None:
    # kubectl's fieldValidation check (cli-runtime supportsQueryParam) reads exactly these.
    raw = decode("Document", openapi.openapi_v2_protobuf())
    paths = {p["name"]: p["value"] for p in raw["paths"]["path"]}
    patch = paths["/api/v1/namespaces/{name}"]["patch"]
    gvk = [e for e in patch["vendor_extension"] if e["name"] == "x-kubernetes-group-version-kind"]
    assert yaml.safe_load(gvk[0]["value"]["yaml"]) == {"group": "", "kind": "Namespace", "version": "v1"}
    query = [p["parameter"]["non_body_parameter"]["query_parameter_sub_schema"]["name"]
             for p in patch["parameters"] if "non_body_parameter" in p["parameter"]]
    assert "fieldValidation" in query
    body = [p["parameter"]["body_parameter"] for p in patch["parameters"] if "body_parameter" in p["parameter"]]
    assert body[0]["schema"]["_ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    assert body[0]["required"] is True


def test_every_branch_round_trips() -> None:
    doc: dict[str, Any] = {
        "swagger": "2.0",
        "info": {"title": "T", "version": "v9", "description": "d", "termsOfService": "tos",
                 "contact": {"name": "n", "url": "u", "email": "e"}, "license": {"name": "L", "url": "lu"},
                 "x-info": {"a": [1, 2]}},
        "host": "h", "basePath": "/b", "schemes": ["https"], "consumes": ["a/b"], "produces": ["c/d"],
        "paths": {
            "x-paths": True,
            "/p/{id}": {
                "$ref": "#/x",
                "parameters": [{"$ref": "#/parameters/shared"},
                               {"name": "id", "in": "path", "required": True, "type": "integer", "format": "int64",
                                "maximum": 10.5, "minimum": -3, "exclusiveMinimum": True, "enum": [1, 2]}],
                "head": {"responses": {"default": {"$ref": "#/responses/r"}}},
                "options": {"deprecated": True, "summary": "s", "security": [{"k": ["read", "write"]}],
                            "externalDocs": {"url": "https://docs"}, "responses": {"x-r": 1}},
                "put": {
                    "parameters": [
                        {"name": "h", "in": "header", "type": "array", "collectionFormat": "csv",
                         "items": {"type": "string", "enum": ["a", "b"], "items": {"type": "number"}},
                         "maxItems": 5, "minItems": 1, "uniqueItems": True, "x-h": "v"},
                        {"name": "f", "in": "formData", "type": "file", "allowEmptyValue": True},
                        {"name": "q", "in": "query", "type": "string", "default": "dflt", "pattern": "^a",
                         "maxLength": 9, "minLength": -1, "multipleOf": 0.5},
                        {"name": "body", "in": "body", "description": "b", "schema": {"type": "object"},
                         "x-body": None},
                    ],
                    "responses": {
                        "200": {"description": "ok", "schema": {"type": "file", "title": "t", "readOnly": True,
                                                                 "required": ["z"], "example": "e"},
                                "headers": {"X-Rate": {"type": "integer", "description": "per s",
                                                       "default": 3, "x-hd": "v"}},
                                "examples": {"application/json": {"k": "v"}}},
                        "404": {"description": "missing"},
                    },
                },
            },
        },
        "definitions": {
            "Thing": {
                "type": "object", "title": "Thing", "discriminator": "kind", "readOnly": True,
                "required": ["kind"], "maxProperties": 8, "minProperties": 1,
                "xml": {"name": "x", "namespace": "ns", "prefix": "p", "attribute": True, "wrapped": True},
                "externalDocs": {"description": "more", "url": "u"}, "example": {"kind": "A"},
                "properties": {
                    "kind": {"type": "string", "enum": ["A", "B"], "default": "A"},
                    "closed": {"type": "object", "additionalProperties": False},
                    "open": {"type": "object", "additionalProperties": True},
                    "tuple": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
                    "many": {"type": ["string", "null"]},
                    "both": {"allOf": [{"$ref": "#/definitions/Other"}, {"description": "more"}]},
                    "empty": {"type": "object", "properties": {}},
                    "big": {"type": "integer", "maximum": 1e300, "exclusiveMaximum": True, "maxLength": 2 ** 62,
                            "uniqueItems": True},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Thing", "version": "v1"}],
                "x-unicode": "grüße ✓",
            },
            "Other": {},
        },
        "parameters": {"shared": {"name": "pretty", "in": "query", "type": "string"}},
        "responses": {"r": {"description": "shared"}},
        "security": [{"basic": []}],
        "securityDefinitions": {
            "basic": {"type": "basic", "description": "b"},
            "key": {"type": "apiKey", "name": "authorization", "in": "header"},
            "imp": {"type": "oauth2", "flow": "implicit", "authorizationUrl": "a", "scopes": {"r": "read"}},
            "pw": {"type": "oauth2", "flow": "password", "tokenUrl": "t", "scopes": {}},
            "app": {"type": "oauth2", "flow": "application", "tokenUrl": "t", "scopes": {"w": "write"}},
            "code": {"type": "oauth2", "flow": "accessCode", "authorizationUrl": "a", "tokenUrl": "t",
                     "scopes": {"r": "read"}, "x-s": 1},
        },
        "tags": [{"name": "t", "description": "d", "externalDocs": {"url": "u"}, "x-t": "v"}],
        "externalDocs": {"url": "https://k8s.io"},
        "x-top": {"nested": ["list"]},
    }
    assert roundtrip(doc) == proto3(doc)


def test_zero_values_follow_proto3() -> None:
    raw = decode("Document", encode_document({"definitions": {
        "A": {"type": "object", "additionalProperties": False, "properties": {}, "description": "", "minimum": 0},
    }}))
    schema = raw["definitions"]["additional_properties"][0]["value"]
    # A oneof boolean is written even when false, an empty message is written (kubectl tells it from none),
    # zero scalars are not.
    assert schema == {"additional_properties": {"boolean": False}, "type": {"value": ["object"]}, "properties": {}}


@pytest.mark.parametrize(("doc", "problem"), [
    ({"definitions": {"A": {"nullable": True}}}, "'nullable' is not a field"),
    ({"paths": {"/p": {"get": {"parameters": [{"name": "c", "in": "cookie"}]}}}}, "parameter location 'cookie'"),
    ({"paths": {"p": {}}}, "neither a path"),
    ({"paths": {"/p": {"get": {"responses": {"2xx": {}}}}}}, "neither a status code"),
    ({"securityDefinitions": {"s": {"type": "oauth2", "flow": "device"}}}, "security scheme of type 'oauth2'"),
    ({"definitions": {"A": {"type": 3}}}, "expected a list of strings"),
    ({"definitions": {"A": {"maxLength": "9"}}}, "expected an integer"),
    ({"definitions": {"A": {"readOnly": "yes"}}}, "expected a boolean"),
    ({"definitions": {"A": {"maximum": True}}}, "expected a number"),
    ({"definitions": []}, "expected an object"),
])
def test_what_does_not_fit_is_refused(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        encode_document(doc)


def test_protobuf_is_cached() -> None:
    assert openapi.openapi_v2_protobuf() is openapi.openapi_v2_protobuf()


# ------------------------------------------------------------------------------ negotiation

JSON = "application/json"
PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


@pytest.mark.parametrize(("accept", "answer"), [
    ("", JSON),
    ("*/*", JSON),
    ("*", JSON),
    ("application/*", JSON),
    ("application/json", JSON),
    ("application/json, */*", JSON),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PB),  # what kubectl 1.32 sends
    (PB, PB),
    ("*/*, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PB),  # concrete types before wildcards
    ("application/json;q=0.5, " + PB, PB),
    (PB + ";q=0.5, application/json", JSON),
    ("application/json;q=0, " + PB + ";q=0.1", PB),
    ("text/html", None),
    ("application/vnd.kubernetes.protobuf", None),
    ("application/json;q=0", None),
    ("garbage;;;,,q=x", None),
])
def test_accept_negotiation(accept: str, answer: str | None) -> None:
    assert openapi.openapi_v2_media_type(accept) == answer


def test_etag_is_sha512_of_the_json_form() -> None:
    etag = openapi.openapi_v2_etag()
    assert etag == '"' + hashlib.sha512(openapi.openapi_v2()).hexdigest().upper() + '"'
    assert openapi.etag_matches(etag, etag)
    assert openapi.etag_matches(f'"nope", W/{etag}', etag)
    assert openapi.etag_matches("*", etag)
    assert not openapi.etag_matches('"nope"', etag)
    assert not openapi.etag_matches("", etag)
