"""Compiling and evaluating CEL expressions with Google's CEL (cel-expr-python, the C++ implementation): a checker
environment typed from the variables' schemas, one shared runtime environment, and Kubernetes' error wording."""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_optional
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, struct_pb2, timestamp_pb2

from kubesat import limits
from kubesat.apimachinery.cel import authz, library, literals
from kubesat.apimachinery.cel.checked import Checked, Node, parse
from kubesat.apimachinery.cel.decltype import DeclType
from kubesat.apimachinery.cel.library import CelError

T = cel.Type
DYN = DeclType("dyn", limits.MAX_REQUEST_BYTES, 1)


class CompileError(Exception):
    """The checker's issues, worded as cel-go prints them (`ERROR: <input>:1:5: ...` and a snippet)."""


@dataclass
class Compiled:
    """One checked expression and the runtime program for it."""

    source: str
    program: Any
    checked: Checked
    result_type: str  # BOOL, STRING, INT, DYN, ... as the checker named it
    body: Node | None = None  # the part the user wrote, when the engine wrapped it (optionalOldSelf)
    static_cost: int | None = None  # the estimate from declared bounds, once someone computed it
    names: tuple[str, ...] = ()  # the variables of the runtime environment the program was made in
    _named: dict[str, bool] = field(default_factory=dict)

    def references(self, name: str) -> bool:
        """Whether the expression names a variable (oldSelf makes a transition rule)."""
        hit = self._named.get(name)
        if hit is None:
            hit = self._named[name] = _names_variable(self.body or self.checked.root, name)
        return hit


def _names_variable(node: Node | None, name: str) -> bool:
    if node is None:
        return False
    if node.kind == "ident":
        return node.name == name
    children = [node.operand, node.iter_range, node.accu_init, node.loop_condition, node.loop_step, node.result,
                *node.args]
    return any(_names_variable(c, name) for c in children)


_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_STATUS_SUFFIX = re.compile(r" \[[A-Z_]+\]$")
_STRUCT_NAME = re.compile(r" not found in struct '[^']*'")


def _issues(err: Exception) -> str:
    text = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", str(err)))
    return _STRUCT_NAME.sub("", text)


_RUNTIME_WORDS = [
    (re.compile(r'^Key not found in map : "?(.*?)"?$'), r"no such key: \1"),
    (re.compile(r"^No matching overloads found.*"), "no such overload"),
    (re.compile(r"^No overload found.*"), "no such overload"),
    (re.compile(r"^divide by zero$"), "division by zero"),
    (re.compile(r"^modulus by zero$"), "modulus by zero"),
    (re.compile(r"^Index error: index=(-?\d+) size=(\d+)$"), r"index '\1' out of range in list size '\2'"),
]


def runtime_words(message: str) -> str:
    """The C++ runtime's error text in cel-go's words, which Kubernetes' messages carry."""
    text = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", message.strip()))
    for pattern, words in _RUNTIME_WORDS:
        if pattern.match(text):
            return pattern.sub(words, text)
    return text


# --- the checker's types -----------------------------------------------------------------------------------------

_SCALAR_FIELDS = {
    "int": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}
_MESSAGE_FIELDS = {
    "timestamp": ".google.protobuf.Timestamp",
    "duration": ".google.protobuf.Duration",
    "dyn": ".google.protobuf.Value",
    "list": ".google.protobuf.ListValue",
    "map": ".google.protobuf.Struct",
}
_SCALAR_TYPES = {"int": T.INT, "double": T.DOUBLE, "string": T.STRING, "bool": T.BOOL, "bytes": T.BYTES,
                 "timestamp": T.TIMESTAMP, "duration": T.DURATION, "dyn": T.DYN}
_FD = descriptor_pb2.FieldDescriptorProto
_serial = itertools.count()


class _Messages:
    """Protobuf message types standing for the schema's objects, so that the checker knows each field's type."""

    def __init__(self) -> None:
        n = next(_serial)
        self.package = f"kubesat.cel.s{n}"
        self.file = descriptor_pb2.FileDescriptorProto(
            name=f"kubesat/cel/s{n}.proto", package=self.package, syntax="proto3",
            dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto",
                        "google/protobuf/struct.proto"])
        self.named: dict[int, Any] = {}  # id(DeclType) -> its CEL type: self and oldSelf share one

    def cel_type(self, t: DeclType | None, name: str) -> Any:
        if t is None:
            return T.DYN
        if id(t) in self.named:
            return self.named[id(t)]
        if t.kind == "object":
            msg = self.file.message_type.add(name=name)
            self._fill(msg, t, f"{self.package}.{name}")
            self.named[id(t)] = T(f"{self.package}.{name}")
            return self.named[id(t)]
        if t.kind == "list":
            return T.List(self.cel_type(t.elem, f"{name}__items"))
        if t.kind == "map":
            return T.Map(T.STRING, self.cel_type(t.elem, f"{name}__values"))
        return _SCALAR_TYPES.get(t.kind, T.DYN)

    def _fill(self, msg: Any, t: DeclType, full: str) -> None:
        for number, (name, sub) in enumerate(t.fields.items(), start=1):
            f = msg.field.add(name=name, number=number, label=_FD.LABEL_OPTIONAL)
            if sub.kind == "list":
                f.label = _FD.LABEL_REPEATED
                self._set_type(f, msg, sub.elem, f"{name}__items", full)
            elif sub.kind == "map":
                entry = msg.nested_type.add(name=_entry_name(name))
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=_FD.LABEL_OPTIONAL, type=_FD.TYPE_STRING)
                value = entry.field.add(name="value", number=2, label=_FD.LABEL_OPTIONAL)
                self._set_type(value, msg, sub.elem, f"{name}__values", full)
                f.label = _FD.LABEL_REPEATED
                f.type = _FD.TYPE_MESSAGE
                f.type_name = f".{full}.{entry.name}"
            else:
                self._set_type(f, msg, sub, f"{name}__t", full)

    def _set_type(self, f: Any, parent: Any, t: DeclType | None, name: str, full: str) -> None:
        kind = t.kind if t is not None else "dyn"
        if kind in _SCALAR_FIELDS:
            f.type = _SCALAR_FIELDS[kind]
        elif kind == "object" and t is not None:
            nested = parent.nested_type.add(name=name)
            self._fill(nested, t, f"{full}.{name}")
            f.type = _FD.TYPE_MESSAGE
            f.type_name = f".{full}.{name}"
        else:
            f.type = _FD.TYPE_MESSAGE
            f.type_name = _MESSAGE_FIELDS.get(kind, ".google.protobuf.Value")


def _entry_name(field_name: str) -> str:
    """The name protobuf requires for a map field's entry message (`labels` -> `LabelsEntry`)."""
    out, upper = [], True
    for ch in field_name:
        if ch == "_":
            upper = True
            continue
        out.append(ch.upper() if upper else ch)
        upper = False
    return "".join(out) + "Entry"


def _base_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for module in (timestamp_pb2, duration_pb2, struct_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    return pool


def _extensions() -> list[Any]:
    # optional types (Kubernetes 1.28+); cel.bind carries optionalOldSelf's optional oldSelf into a rule.
    return [ext_optional.ExtOptional(), ext_bindings.ExtBindings()]


_ORDERINGS = {"_<_": "less", "_<=_": "less_equals", "_>_": "greater", "_>=_": "greater_equals"}


@functools.cache
def _checker_config() -> Any:
    """The standard library without its orderings, which _orderings() declares again with cel-go's cross-type
    numeric overloads (`1 < 1.5`, on by default in Kubernetes' environment), and without `string()`, declared again
    with Kubernetes' `string(ip)` and `string(cidr)`."""
    names = [*_ORDERINGS, "string"]
    yaml = "stdlib:\n  exclude_functions:\n" + "".join(f'    - name: "{op}"\n' for op in names)
    return cel.NewEnvConfigFromYaml(yaml)


_STRING_FROM = [("string_to_string", T.STRING), ("int64_to_string", T.INT), ("uint64_to_string", T.UINT),
                ("double_to_string", T.DOUBLE), ("bytes_to_string", T.BYTES), ("bool_to_string", T.BOOL),
                ("timestamp_to_string", T.TIMESTAMP), ("duration_to_string", T.DURATION)]


def _string_conversions(opaque: Callable[[str], Any], runtime: bool) -> list[Any]:
    """`string()`: the standard overloads (the engine's own implementations) and IP and CIDR values."""
    overloads = [cel.Overload(oid, T.STRING, [t]) for oid, t in _STRING_FROM]
    if runtime:  # IPs and CIDRs are maps at run time: one overload serves both
        overloads.append(library.guarded_overload("opaque_to_string", T.STRING, [opaque("IP")], library.opaque_text))
    else:
        overloads += [cel.Overload("ip_to_string", T.STRING, [opaque("IP")]),
                      cel.Overload("cidr_to_string", T.STRING, [opaque("CIDR")])]
    return [cel.FunctionDecl("string", overloads)]


def _orderings() -> list[Any]:
    same = [("bool", T.BOOL), ("int64", T.INT), ("uint64", T.UINT), ("double", T.DOUBLE), ("string", T.STRING),
            ("bytes", T.BYTES), ("timestamp", T.TIMESTAMP), ("duration", T.DURATION)]
    numbers = [("int64", T.INT), ("uint64", T.UINT), ("double", T.DOUBLE)]
    decls = []
    for op, name in _ORDERINGS.items():
        overloads = [cel.Overload(f"{name}_{n}", T.BOOL, [t, t]) for n, t in same]
        overloads += [cel.Overload(f"{name}_{a}_{b}", T.BOOL, [ta, tb])
                      for a, ta in numbers for b, tb in numbers if a != b]
        decls.append(cel.FunctionDecl(op, overloads))
    return decls


@functools.cache
def _checker_functions() -> list[Any]:
    def declared(kind: str) -> Any:
        return T.AbstractType(f"kubernetes.{kind}")
    return (library.declarations(declared) + authz.declarations(declared) + _orderings()
            + _string_conversions(declared, runtime=False))


class Env:
    """A checker environment for a set of typed variables (a schema node's self and oldSelf, or admission's)."""

    def __init__(self, variables: Mapping[str, DeclType | None]) -> None:
        messages = _Messages()
        types = {name: messages.cel_type(t, f"{name}Type") for name, t in variables.items()}
        pool = _base_pool()
        pool.Add(messages.file)
        self._pool = pool  # the environment refers to it
        self.names = tuple(sorted(variables))
        self._env = cel.NewEnv(pool, config=_checker_config(), variables=types, extensions=_extensions(),
                               functions=_checker_functions())

    def compile(self, expr: str) -> Compiled:
        if len(expr) > limits.CEL_MAX_EXPRESSION_CHARS:
            raise CompileError(f"expression code point size exceeds limit: size: {len(expr)}, "
                               f"limit {limits.CEL_MAX_EXPRESSION_CHARS}")
        try:
            with _compile_lock:
                ast = self._env.compile(expr)
        except Exception as e:  # the binding raises RuntimeError with the checker's issues
            raise CompileError(_issues(e)) from None
        tree = parse(ast.serialize())
        mixed = literals.mismatches(tree)
        if mixed:
            raise CompileError("\n".join(literals.issue_text(expr, offset, msg) for offset, msg in mixed))
        program = _runtime_program(expr, self.names)
        return Compiled(expr, program, tree, ast.return_type().name(), names=self.names)


def compile_expression(expr: str, variables: Mapping[str, DeclType | None]) -> Compiled:
    """Check `expr` against the variables' types (None or DYN: dynamic) and prepare it to run."""
    if all(t is None or t is DYN for t in variables.values()):
        return _dynamic_env(tuple(sorted(variables))).compile(expr)
    return Env(variables).compile(expr)


@functools.lru_cache(maxsize=64)
def _dynamic_env(names: tuple[str, ...]) -> Env:
    """The checker for admission's variables (object, request, params, ...), which are all dynamic."""
    return Env(dict.fromkeys(names))


# --- the runtime ---------------------------------------------------------------------------------------------------

_runtime_lock = threading.Lock()
# Compiling is rare (programs are cached) and the engine's environments are not documented as thread-safe.
_compile_lock = threading.Lock()
_programs: OrderedDict[tuple[str, tuple[str, ...]], Any] = OrderedDict()


@functools.cache
def _runtime_functions() -> list[Any]:
    def declared(kind: str) -> Any:
        return T.Map(T.STRING, T.DYN)
    return library.declarations(declared) + authz.declarations(declared) + _string_conversions(declared, runtime=True)


@functools.lru_cache(maxsize=64)
def _runtime_env(names: tuple[str, ...]) -> Any:
    return cel.NewEnv(config=_runtime_config(), variables={name: T.DYN for name in names}, extensions=_extensions(),
                      functions=_runtime_functions())


@functools.cache
def _runtime_config() -> Any:
    return cel.NewEnvConfigFromYaml('stdlib:\n  exclude_functions:\n    - name: "string"\n')


def _runtime_program(expr: str, names: tuple[str, ...]) -> Any:
    """The program for an expression, compiled once against dynamic variables (values are checked per call)."""
    key = (expr, names)
    with _runtime_lock:
        hit = _programs.get(key)
        if hit is not None:
            _programs.move_to_end(key)
            return hit
    try:
        with _compile_lock:
            # checked already by the caller's typed environment; unchecked, the runtime dispatches on the values
            # (and compares int with double, as Kubernetes' environment does)
            program = _runtime_env(names).compile(expr, disable_check=True)
    except Exception as e:
        raise CompileError(_issues(e)) from None
    with _runtime_lock:
        _programs[key] = program
        while len(_programs) > limits.CEL_PROGRAM_CACHE:
            _programs.popitem(last=False)
    return program


class Bindings:
    """One activation for several expressions: the values are handed to the runtime once per set of variables
    rather than once per evaluation (what makes five rules on one object cheap)."""

    def __init__(self, activation: Mapping[str, Any]) -> None:
        self.data = dict(activation)
        self._made: dict[tuple[str, ...], Any] = {}

    def runtime(self, compiled: Compiled) -> Any:
        made = self._made.get(compiled.names)
        if made is None:
            made = self._made[compiled.names] = _runtime_env(compiled.names).Activation(data=self.data)
        return made


def evaluate(compiled: Compiled, activation: Mapping[str, Any] | Bindings) -> Any:
    """The expression's value (plain Python: bool, int, float, str, bytes, list, dict, datetime, timedelta), or
    CelError with cel-go's words for the failure."""
    try:
        if isinstance(activation, Bindings) and compiled.names:
            result = compiled.program.eval(activation=activation.runtime(compiled))
        else:
            data = activation.data if isinstance(activation, Bindings) else dict(activation)
            result = compiled.program.eval(data=data)
    except CelError:
        raise
    except Exception as e:  # the binding raises for some runtime failures instead of returning an error value
        raise CelError(runtime_words(str(e))) from None
    if result.type() == T.ERROR:
        raise CelError(runtime_words(str(result.value())))
    return result.plain_value()
