"""Errors as values: a reason, a message and causes, turned into a Kubernetes Status at the API edge."""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    """An API error carrying what a Kubernetes `Status` object needs."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.details:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if kind:
        d["kind"] = kind
    return d


def qualified(resource: str, group: str) -> str:
    """`secrets` or `roles.rbac.authorization.k8s.io`, as Kubernetes prints a group resource."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        details=_details(name, group, resource),
    )


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        details=_details(name, group, resource),
    )


def conflict(resource: str, name: str, why: str, group: str = "") -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        details=_details(name, group, resource),
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden(resource: str, name: str, why: str, group: str = "") -> StatusError:
    subject = f'{qualified(resource, group)} "{name}"' if name else qualified(resource, group)
    return StatusError(
        403,
        "Forbidden",
        f"{subject} is forbidden: {why}",
        details=_details(name, group, resource),
    )


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        f'the body of the request was in an unknown format - accepted media types include: '
        f'application/json, application/yaml, application/vnd.kubernetes.protobuf; got "{content_type}"',
    )


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def too_large(message: str = "Request entity too large: limit is 3145728") -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def wrapped_internal(e: StatusError) -> StatusError:
    """An error without a reason (what stands for a Go error that is no APIStatus) as apierrors.NewInternalError
    wraps it where Kubernetes does (a watch's ERROR event); others as they are."""
    if e.reason:
        return e
    return StatusError(500, "InternalError", f"Internal error occurred: {e.message}",
                       details={"causes": [{"message": e.message}]})


class FieldError:
    """One cause of an Invalid (422) answer: `field: Type value: detail`."""

    __slots__ = ("type", "field", "detail", "value", "has_value")

    # cause reason -> the words Kubernetes prints
    _WORDS = {
        "FieldValueRequired": "Required value",
        "FieldValueInvalid": "Invalid value",
        "FieldValueNotSupported": "Unsupported value",
        "FieldValueDuplicate": "Duplicate value",
        "FieldValueForbidden": "Forbidden",
        "FieldValueTooLong": "Too long",
        "FieldValueTooMany": "Too many",
        "FieldValueNotFound": "Not found",
        "FieldValueTypeInvalid": "Invalid value",
    }

    def __init__(self, type_: str, field: str, detail: str = "", value: Any = None, has_value: bool = False):
        self.type = type_
        self.field = field
        self.detail = detail
        self.value = value
        self.has_value = has_value

    def text(self) -> str:
        words = self._WORDS.get(self.type, "Invalid value")
        out = f"{self.field}: {words}"
        if self.has_value:
            out += f": {_go_value(self.value)}"
        if self.detail:
            out += f": {self.detail}"
        return out

    def cause(self) -> dict[str, Any]:
        msg = self._WORDS.get(self.type, "Invalid value")
        if self.has_value:
            msg += f": {_go_value(self.value)}"
        if self.detail:
            msg += f": {self.detail}"
        return {"reason": self.type, "message": msg, "field": self.field}


class GoValue:
    """A bad value whose printed form is fixed text, as Go's `%#v` prints it (e.g. `[]string{"a", "b"}`):
    a FieldError shows it unquoted."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _go_value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, detail)


def invalid_value(field: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("FieldValueInvalid", field, detail, value, True)


def not_supported(field: str, value: Any, valid: list[str]) -> FieldError:
    quoted = ", ".join(f'"{v}"' for v in valid)
    return FieldError("FieldValueNotSupported", field, f"supported values: {quoted}", value, True)


def forbidden_field(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, "", value, True)


def too_long(field: str, max_len: int) -> FieldError:
    return FieldError("FieldValueTooLong", field, f"may not be more than {max_len} bytes", None, False)


def too_many(field: str, actual: int | None, max_items: int) -> FieldError:
    """`Too many: 3: must have at most 2 items` (the count left out when unknown)."""
    detail = f"must have at most {max_items} items" if max_items >= 0 else "has too many items"
    if actual is None or actual < 0:
        return FieldError("FieldValueTooMany", field, detail)
    return FieldError("FieldValueTooMany", field, detail, actual, True)


def type_invalid(field: str, value: Any, detail: str) -> FieldError:
    """A value of the wrong JSON type: printed as `Invalid value`, with the cause reason FieldValueTypeInvalid."""
    return FieldError("FieldValueTypeInvalid", field, detail, value, True)


def invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> StatusError:
    """422 Invalid, worded like Kubernetes: `Kind.group "name" is invalid: [a, b]`."""
    qual_kind = f"{kind}.{group}" if group else kind
    texts = [e.text() for e in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return StatusError(
        422,
        "Invalid",
        f'{qual_kind} "{name}" is invalid: {joined}',
        details={**_details(name, group, kind), "causes": [e.cause() for e in errors]},
    )


def go_json_kind(value: Any) -> str:
    """How Go's JSON decoder names a value's kind in `cannot unmarshal X into ...`."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"
