"""CRD `x-kubernetes-validations`: checking the rules when a CRD is written (compilation, reason, fieldPath,
transition rules, estimated cost) and evaluating them against custom resources, in Kubernetes' words."""

from __future__ import annotations

import contextlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kubesat import errors, limits
from kubesat.apimachinery.cel import cost, engine
from kubesat.apimachinery.cel.decltype import DeclType, decl_type, max_cardinality
from kubesat.apimachinery.cel.library import CelError
from kubesat.apimachinery.cel.values import to_cel
from kubesat.errors import FieldError

REASONS = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"]
_NEWLINES = re.compile(r"[\n\r]+")
# With optionalOldSelf a rule sees oldSelf as an optional: the rule runs inside a binding of it to these two.
OLD_VALUE, HAS_OLD = "__kubesat_old_self__", "__kubesat_has_old_self__"
_LINE = re.compile(r"<input>:(\d+):")


class RuleEnvs:
    """The checker environments of one schema node: self and oldSelf, and the optional oldSelf variant."""

    def __init__(self, t: DeclType) -> None:
        self.type = t
        self._plain: engine.Env | None = None
        self._optional: engine.Env | None = None

    def compile(self, expr: str, optional_old_self: bool = False) -> engine.Compiled:
        if not optional_old_self:
            if self._plain is None:
                self._plain = engine.Env({"self": self.type, "oldSelf": self.type})
            return self._plain.compile(expr)
        if self._optional is None:
            self._optional = engine.Env({"self": self.type, OLD_VALUE: self.type, HAS_OLD: DeclType("bool")})
        wrapped = f"cel.bind(oldSelf, {HAS_OLD} ? optional.of({OLD_VALUE}) : optional.none(),\n{expr}\n)"
        try:
            compiled = self._optional.compile(wrapped)
            compiled.body = compiled.checked.root.result
            return compiled
        except engine.CompileError as e:
            raise engine.CompileError(_LINE.sub(lambda m: f"<input>:{max(int(m.group(1)) - 1, 1)}:", str(e))) from None


class GoStruct:
    """A value that prints as Go's `%#v` of a ValidationRule (what Kubernetes puts in a compile error)."""

    def __init__(self, rule: dict[str, Any]) -> None:
        self.rule = rule

    def __str__(self) -> str:
        r = self.rule
        reason = "(*apiextensions.FieldValueErrorReason)(nil)" if r.get("reason") is None else \
            "(*apiextensions.FieldValueErrorReason)(0xc000000000)"
        old = "(*bool)(nil)" if r.get("optionalOldSelf") is None else "(*bool)(0xc000000001)"
        return (f"apiextensions.ValidationRule{{Rule:{_q(r.get('rule'))}, Message:{_q(r.get('message'))}, "
                f"MessageExpression:{_q(r.get('messageExpression'))}, Reason:{reason}, "
                f"FieldPath:{_q(r.get('fieldPath'))}, OptionalOldSelf:{old}}}")


def _q(v: Any) -> str:
    s = v if isinstance(v, str) else ""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def cost_error_message(name: str, value: int, limit: int) -> str:
    """Kubernetes' words for an estimate over its limit (`%f` below 1.5x, `%.1f` to 100x, then `more than 100x`)."""
    factor = value / limit
    if factor > 100.0:
        text = "more than 100x"
    elif factor < 1.5:
        text = f"{factor:f}x"
    else:
        text = f"{factor:.1f}x"
    return (f"{name} exceeds budget by factor of {text} (try simplifying the rule, or adding maxItems, "
            "maxProperties, and maxLength where arrays, maps, and strings are declared)")


# --- when a CRD is written -----------------------------------------------------------------------------------------


@dataclass
class _Total:
    total: int = 0
    most_expensive: list[tuple[int, str]] = field(default_factory=list)

    def observe(self, path: str, value: int) -> None:
        self.total = min(self.total + value, cost.U64)
        if value < limits.CEL_CRD_COST_LIMIT // 100:
            return
        self.most_expensive.append((value, path))
        self.most_expensive.sort(key=lambda x: -x[0])
        del self.most_expensive[4:]


@dataclass
class _Walk:
    total: _Total
    per_rule_limit: bool = True
    schema_errors: list[FieldError] = field(default_factory=list)
    cel_errors: list[FieldError] = field(default_factory=list)


def rule_errors(schema: dict[str, Any], path: str, old_schema: dict[str, Any] | None = None) -> list[FieldError]:
    """The errors Kubernetes reports for the x-kubernetes-validations of one version's openAPIV3Schema at `path`
    (`spec.versions[0].schema.openAPIV3Schema`). On update, pass the version's old schema: an unchanged schema is
    not held to the per-rule cost limit (the schema's total still is)."""
    walk = _Walk(_Total(), per_rule_limit=old_schema is None or old_schema != schema)
    if isinstance(schema, dict):
        _node(schema, path, walk, is_root=True, cardinality=1, forbid_old_self=None, depth=0)
    out = walk.schema_errors + walk.cel_errors
    if walk.total.total > limits.CEL_CRD_COST_LIMIT:
        for _, p in walk.total.most_expensive:
            out.append(errors.forbidden_field(
                p, "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema"))
        out.append(errors.forbidden_field(path, cost_error_message(
            "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema", walk.total.total,
            limits.CEL_CRD_COST_LIMIT)))
    return out


def _node(s: dict[str, Any], path: str, walk: _Walk, *, is_root: bool, cardinality: int | None,
          forbid_old_self: str | None, depth: int) -> None:
    if depth > limits.MAX_DEPTH:
        return
    before = len(walk.schema_errors)
    _children(s, path, walk, cardinality, forbid_old_self, depth)
    rules = s.get("x-kubernetes-validations")
    if not isinstance(rules, list) or not rules:
        return
    for i, rule in enumerate(rules):
        if isinstance(rule, dict):
            walk.schema_errors.extend(_rule_shape_errors(s, rule, f"{path}.x-kubernetes-validations[{i}]"))
    if len(walk.schema_errors) == before:
        _compile_rules(s, rules, path, walk, is_root, cardinality, forbid_old_self)


def _children(s: dict[str, Any], path: str, walk: _Walk, cardinality: int | None, forbid_old_self: str | None,
              depth: int) -> None:
    props = s.get("properties")
    if isinstance(props, dict):
        for name, sub in props.items():
            if isinstance(sub, dict):
                _node(sub, f"{path}.properties[{name}]", walk, is_root=bool(sub.get("x-kubernetes-embedded-resource")),
                      cardinality=cardinality, forbid_old_self=forbid_old_self, depth=depth + 1)
    items = s.get("items")
    if isinstance(items, dict):
        forbid = forbid_old_self
        if forbid is None and s.get("x-kubernetes-list-type") != "map":
            forbid = path
        _node(items, f"{path}.items", walk, is_root=bool(items.get("x-kubernetes-embedded-resource")),
              cardinality=_times(cardinality, s.get("maxItems")), forbid_old_self=forbid, depth=depth + 1)
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        _node(extra, f"{path}.additionalProperties", walk,
              is_root=bool(extra.get("x-kubernetes-embedded-resource")),
              cardinality=_times(cardinality, s.get("maxProperties")), forbid_old_self=forbid_old_self,
              depth=depth + 1)


def _times(cardinality: int | None, bound: Any) -> int | None:
    if cardinality is None or not isinstance(bound, int) or isinstance(bound, bool):
        return None
    return min(cardinality * max(bound, 0), cost.U64)


def _rule_shape_errors(s: dict[str, Any], rule: dict[str, Any], path: str) -> list[FieldError]:
    out: list[FieldError] = []
    text = _text(rule.get("rule"))
    message = _text(rule.get("message"))
    if not text.strip():
        out.append(errors.required(f"{path}.rule", "rule is not specified"))
    elif message and not message.strip():
        out.append(errors.invalid_value(f"{path}.message", message, "message must be non-empty if specified"))
    elif _NEWLINES.search(message.strip()):
        out.append(errors.invalid_value(f"{path}.message", message, "message must not contain line breaks"))
    elif _NEWLINES.search(text.strip()) and not message.strip():
        out.append(errors.required(f"{path}.message", "message must be specified if rule contains line breaks"))
    expr = rule.get("messageExpression")
    if isinstance(expr, str) and expr and not expr.strip():
        out.append(errors.required(f"{path}.messageExpression", "messageExpression must be non-empty if specified"))
    reason = rule.get("reason")
    if reason is not None and reason not in REASONS:
        out.append(errors.not_supported(f"{path}.reason", reason, REASONS))
    out.extend(_field_path_errors(s, rule.get("fieldPath"), f"{path}.fieldPath"))
    return out


def _text(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _field_path_errors(s: dict[str, Any], fp: Any, path: str) -> list[FieldError]:
    if not isinstance(fp, str) or not fp:
        return []
    if not fp.strip():
        return [errors.invalid_value(path, fp, "fieldPath must be non-empty if specified")]
    out = []
    if _NEWLINES.search(fp):
        out.append(errors.invalid_value(path, fp, "fieldPath must not contain line breaks"))
    if field_path(s, fp) is None:
        out.append(errors.invalid_value(path, fp, "fieldPath must be a valid path"))
    return out


_FP_TOKEN = re.compile(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]")
_FP_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "'": "'", "\\": "\\"}


def field_path(s: dict[str, Any], fp: str) -> str | None:
    """The field path a rule's fieldPath names (`.spec.x`, `['a.b']`), or None when it names no field of `s`."""
    pos, parts = 0, list[str]()
    node: Any = s
    while pos < len(fp):
        m = _FP_TOKEN.match(fp, pos)
        if m is None or not isinstance(node, dict):
            return None
        pos = m.end()
        name = m.group(1) if m.group(1) is not None else _unescape(m.group(2))
        if name is None:
            return None
        props = node.get("properties")
        if isinstance(props, dict):
            if name not in props:
                return None
            parts.append(f".{name}" if parts else name)
            node = props[name]
        elif isinstance(node.get("additionalProperties"), dict):
            parts.append(f"[{name}]")
            node = node["additionalProperties"]
        else:
            return None
    return "".join(parts) if parts else None


def _unescape(text: str) -> str | None:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            rep = _FP_ESCAPES.get(text[i + 1:i + 2])
            if rep is None:
                return None
            out.append(rep)
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _compile_rules(s: dict[str, Any], rules: list[Any], path: str, walk: _Walk, is_root: bool,
                   cardinality: int | None, forbid_old_self: str | None) -> None:
    t = decl_type(s, is_root)
    if t is None:
        return
    env = RuleEnvs(t)
    sizer = cost.schema_sizer({"self": t, "oldSelf": t, OLD_VALUE: t})
    times = cardinality if cardinality is not None else max_cardinality(t)
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str) or not rule["rule"].strip():
            continue
        rpath = f"{path}.x-kubernetes-validations[{i}]"
        _compile_one(env, sizer, rule, rpath, times, forbid_old_self, walk)


def _compile_one(env: RuleEnvs, sizer: cost.Sizer, rule: dict[str, Any], rpath: str, times: int,
                 forbid_old_self: str | None, walk: _Walk) -> None:
    compiled, problem = None, ""
    try:
        compiled = env.compile(rule["rule"], rule.get("optionalOldSelf") is True)
        if compiled.result_type != "BOOL":
            problem = "cel expression must evaluate to a bool"
    except engine.CompileError as e:
        problem = f"compilation failed: {e}"
    if compiled is not None and not problem:
        value = min(cost.estimate(compiled.checked, sizer).hi * times, cost.U64) if times else 0
        if value > limits.CEL_STATIC_COST_LIMIT and walk.per_rule_limit:
            walk.cel_errors.append(errors.forbidden_field(
                f"{rpath}.rule", cost_error_message("estimated rule cost", value, limits.CEL_STATIC_COST_LIMIT)))
        walk.total.observe(f"{rpath}.rule", value)
    if problem:
        walk.cel_errors.append(errors.invalid_value(f"{rpath}.rule", GoStruct(rule), problem))
    _compile_message_expression(env, sizer, rule, rpath, walk)
    if compiled is None or problem:
        return
    if compiled.references("oldSelf"):
        if forbid_old_self is not None:
            walk.cel_errors.append(errors.invalid_value(
                f"{rpath}.rule", rule["rule"],
                f"oldSelf cannot be used on the uncorrelatable portion of the schema within {forbid_old_self}"))
    elif rule.get("optionalOldSelf") is not None:
        walk.cel_errors.append(errors.invalid_value(f"{rpath}.optionalOldSelf", rule["optionalOldSelf"],
                                                    "may not be set if oldSelf is not used in rule"))


def _compile_message_expression(env: RuleEnvs, sizer: cost.Sizer, rule: dict[str, Any], rpath: str,
                                walk: _Walk) -> None:
    expr = rule.get("messageExpression")
    if not isinstance(expr, str) or not expr.strip():
        return
    try:
        compiled = env.compile(expr)
    except engine.CompileError as e:
        walk.cel_errors.append(errors.invalid_value(f"{rpath}.messageExpression", GoStruct(rule),
                                                    f"messageExpression compilation failed: {e}"))
        return
    if compiled.result_type != "STRING":
        walk.cel_errors.append(errors.invalid_value(f"{rpath}.messageExpression", GoStruct(rule),
                                                    "messageExpression must evaluate to a string"))
        return
    value = cost.estimate(compiled.checked, sizer).hi
    if value > limits.CEL_STATIC_COST_LIMIT and walk.per_rule_limit:
        walk.cel_errors.append(errors.forbidden_field(f"{rpath}.messageExpression", cost_error_message(
            "estimated messageExpression cost", value, limits.CEL_STATIC_COST_LIMIT)))
    walk.total.observe(f"{rpath}.messageExpression", value)


# --- when a custom resource is written ---------------------------------------------------------------------------


@dataclass
class _NodeRules:
    """A schema node's rules, compiled once (kept by the node's identity)."""

    node: dict[str, Any]
    decl: DeclType | None
    rules: list[tuple[dict[str, Any], engine.Compiled | None, str, engine.Compiled | None]]


_cache_lock = threading.Lock()
_node_cache: OrderedDict[int, _NodeRules] = OrderedDict()


def _rules_for(s: dict[str, Any], is_root: bool) -> _NodeRules:
    key = id(s)
    with _cache_lock:
        hit = _node_cache.get(key)
        if hit is not None and hit.node is s:
            _node_cache.move_to_end(key)
            return hit
    t = decl_type(s, is_root)
    compiled: list[tuple[dict[str, Any], engine.Compiled | None, str, engine.Compiled | None]] = []
    env = RuleEnvs(t) if t is not None else None
    sizer = cost.schema_sizer({"self": t, "oldSelf": t, OLD_VALUE: t})
    for rule in s.get("x-kubernetes-validations") or []:
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str) or not rule["rule"].strip():
            continue
        program, problem, message = None, "", None
        if env is None:
            problem = "rule declared on schema that does not support validation rules"
        else:
            try:
                program = env.compile(rule["rule"], rule.get("optionalOldSelf") is True)
            except engine.CompileError as e:
                problem = f"compilation failed: {e}"
            expr = rule.get("messageExpression")
            if isinstance(expr, str) and expr.strip():
                try:
                    message = env.compile(expr)
                except engine.CompileError:
                    message = None
        for c in (program, message):
            if c is not None:
                c.static_cost = cost.estimate(c.checked, sizer).hi
        compiled.append((rule, program, problem, message))
    entry = _NodeRules(s, t, compiled)
    with _cache_lock:
        _node_cache[key] = entry
        while len(_node_cache) > limits.CEL_PROGRAM_CACHE:
            _node_cache.popitem(last=False)
    return entry


class _Below:
    """Whether a schema node or one below it (items, additionalProperties, properties) has rules, and which of
    its properties lead to some: a custom resource's values under a node without any are not walked."""

    __slots__ = ("node", "found", "props")

    def __init__(self, node: dict[str, Any], found: bool, props: dict[str, dict[str, Any]]) -> None:
        self.node = node
        self.found = found
        self.props = props


# Kept by the node's identity, like the compiled rules.
_below_cache: OrderedDict[int, _Below] = OrderedDict()


def _below(s: dict[str, Any], depth: int = 0) -> _Below:
    hit = _below_cache.get(id(s))
    if hit is not None and hit.node is s:
        return hit
    props = s.get("properties")
    if depth > limits.MAX_DEPTH:  # the walk stops at that depth anyway; not worth remembering
        return _Below(s, True, {k: v for k, v in props.items() if isinstance(v, dict)} if isinstance(props, dict)
                      else {})
    ruled = {k: v for k, v in props.items() if isinstance(v, dict) and _below(v, depth + 1).found} \
        if isinstance(props, dict) else {}
    others = [b for b in (s.get("items"), s.get("additionalProperties")) if isinstance(b, dict)]
    found = bool(s.get("x-kubernetes-validations")) or bool(ruled) or any(_below(b, depth + 1).found for b in others)
    entry = _Below(s, found, ruled)
    with _cache_lock:
        _below_cache[id(s)] = entry
        while len(_below_cache) > limits.CEL_RULED_NODE_CACHE:
            _below_cache.popitem(last=False)
    return entry


class _OutOfBudget(Exception):
    pass


@dataclass
class _Run:
    budget: int
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate_rules(schema: dict[str, Any], new: Any, old: Any | None, path: str = "",
                   warnings: list[str] | None = None) -> list[FieldError]:
    """Evaluate every x-kubernetes-validations rule of `schema` against the object `new` (and `old` on update);
    errors of rules whose value did not change since `old` are ratcheted into `warnings`, as Kubernetes does."""
    run = _Run(limits.CEL_RUNTIME_BUDGET)
    with contextlib.suppress(_OutOfBudget):
        _validate(schema, new, old, path, run, is_root=True, correlated=old is not None, parent_equal=False,
                  depth=0)
    if warnings is not None:
        warnings.extend(run.warnings)
    return run.errors


def _validate(s: dict[str, Any], new: Any, old: Any, path: str, run: _Run, *, is_root: bool, correlated: bool,
              parent_equal: bool, depth: int) -> None:
    if new is None or not isinstance(s, dict) or depth > limits.MAX_DEPTH or not _below(s).found:
        return
    equal = old is not None and new == old if correlated else parent_equal
    if s.get("x-kubernetes-validations"):
        _expressions(s, new, old if correlated else None, path, run, is_root, equal)
    if isinstance(new, list):
        items = s.get("items")
        if isinstance(items, dict):
            olds = _map_list_index(s, old if correlated else None)
            for i, v in enumerate(new):
                o = olds(v)
                _validate(items, v, o, f"{path}[{i}]", run, is_root=bool(items.get("x-kubernetes-embedded-resource")),
                          correlated=correlated and s.get("x-kubernetes-list-type") == "map",
                          parent_equal=equal, depth=depth + 1)
    elif isinstance(new, dict):
        _validate_map(s, new, old if correlated and isinstance(old, dict) else None, path, run, correlated, equal,
                      depth)


def _validate_map(s: dict[str, Any], new: dict[str, Any], old: dict[str, Any] | None, path: str, run: _Run,
                  correlated: bool, equal: bool, depth: int) -> None:
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        for k, v in new.items():
            _validate(extra, v, (old or {}).get(k), f"{path}[{k}]", run,
                      is_root=bool(extra.get("x-kubernetes-embedded-resource")), correlated=correlated,
                      parent_equal=equal, depth=depth + 1)
    props = _below(s).props
    if props:
        for k, v in new.items():
            sub = props.get(k)
            if sub is not None:
                _validate(sub, v, (old or {}).get(k), f"{path}.{k}" if path else k, run,
                          is_root=bool(sub.get("x-kubernetes-embedded-resource")), correlated=correlated,
                          parent_equal=equal, depth=depth + 1)


def _map_list_index(s: dict[str, Any], old: Any) -> Any:
    keys = s.get("x-kubernetes-list-map-keys")
    if s.get("x-kubernetes-list-type") != "map" or not isinstance(old, list) or not isinstance(keys, list):
        return lambda v: None
    index: dict[tuple[Any, ...], Any] = {}
    for item in old:
        if isinstance(item, dict):
            index.setdefault(tuple(repr(item.get(k)) for k in keys), item)

    def get(v: Any) -> Any:
        if not isinstance(v, dict):
            return None
        return index.get(tuple(repr(v.get(k)) for k in keys))
    return get


def _expressions(s: dict[str, Any], new: Any, old: Any, path: str, run: _Run, is_root: bool, ratchet: bool) -> None:
    node = _rules_for(s, is_root)
    if not node.rules:
        return
    type_name = _text(s.get("type"))
    field_path_ = path or "<nil>"
    if run.budget <= 0:
        run.errors.append(errors.invalid_value(field_path_, type_name, "validation failed due to running out of "
                                               "cost budget, no further validation rules will be run"))
        raise _OutOfBudget
    self_value = to_cel(new, node.decl)
    old_value = to_cel(old, node.decl) if old is not None else None
    activation = {"self": self_value, "oldSelf": old_value, OLD_VALUE: old_value, HAS_OLD: old is not None}
    sizer = cost.value_sizer(activation)
    bindings = engine.Bindings(activation)
    for rule, program, problem, message in node.rules:
        if problem or program is None:
            run.errors.append(errors.invalid_value(field_path_, type_name, f"rule compile error: {problem}"))
            continue
        transition = program.references("oldSelf")
        if transition and old is None and rule.get("optionalOldSelf") is not True:
            continue
        _one_rule(rule, program, message, bindings, sizer, s, path, type_name, run, ratchet and not transition)


# A rule whose estimate from the schema's bounds is at most this is charged that estimate; a costlier one is
# estimated again with the sizes of the values at hand (cel-go meters the actual cost instead).
_CHEAP = 100


def _charge(run: _Run, compiled: engine.Compiled, sizer: cost.Sizer) -> int:
    if compiled.static_cost is not None and compiled.static_cost <= _CHEAP:
        return compiled.static_cost
    return cost.Estimator(compiled.checked, sizer, unknown=cost.Range(0, limits.MAX_REQUEST_BYTES)).cost(
        compiled.checked.root).hi


def runtime_cost(compiled: engine.Compiled, activation: dict[str, Any]) -> int:
    """The cost units `evaluate(compiled, activation)` is charged against a budget (matchConditions' 2,500,000,
    a policy's per-call 1,000,000): cel-go's estimate with the sizes of the values at hand."""
    return cost.runtime_cost(compiled.checked, activation, limits.MAX_REQUEST_BYTES)


def _one_rule(rule: dict[str, Any], program: engine.Compiled, message: engine.Compiled | None,
              activation: engine.Bindings, sizer: cost.Sizer, s: dict[str, Any], path: str, type_name: str,
              run: _Run, ratchet: bool) -> None:
    field_path_ = path or "<nil>"
    what = rule_error_string(rule)
    spent = _charge(run, program, sizer)
    if spent > limits.CEL_PER_CALL_LIMIT:
        run.errors.append(errors.invalid_value(field_path_, type_name, "'operation cancelled: actual cost limit "
                                               "exceeded': no further validation rules will be run due to call cost "
                                               f"exceeds limit for rule: {what}"))
        raise _OutOfBudget
    if spent > run.budget:
        run.errors.append(errors.invalid_value(field_path_, type_name, "validation failed due to running out of "
                                               "cost budget, no further validation rules will be run"))
        raise _OutOfBudget
    run.budget -= spent
    try:
        result = engine.evaluate(program, activation)
    except CelError as e:
        text = str(e)
        if text.startswith("no such overload"):
            detail = (f"'{text}': call arguments did not match a supported operator, function or macro signature "
                      f"for rule: {what}")
        else:
            detail = f"{text} evaluating rule: {what}"
        run.errors.append(errors.invalid_value(field_path_, type_name, detail))
        return
    if result is True:
        return
    target = path or ""
    fp = rule.get("fieldPath")
    if isinstance(fp, str) and fp.strip():
        rel = field_path(s, fp.strip())
        if rel:
            target = f"{target}.{rel}" if target else rel
    detail = _message(rule, message, activation, sizer, run, target or "<nil>", type_name)
    err = error_for_reason(target or "<nil>", type_name, detail, rule.get("reason"))
    if ratchet:
        run.warnings.append(err.text())
    else:
        run.errors.append(err)


def _message(rule: dict[str, Any], message: engine.Compiled | None, activation: engine.Bindings, sizer: cost.Sizer,
             run: _Run, target: str, type_name: str) -> str:
    if message is not None:
        spent = _charge(run, message, sizer)
        if spent > run.budget or spent > limits.CEL_PER_CALL_LIMIT:
            expr = rule.get("messageExpression", "")
            detail = ("messageExpression evaluation failed due to running out of cost budget, no further validation "
                      "rules will be run") if spent > run.budget else (
                f"no further validation rules will be run due to call cost exceeds limit for messageExpression: "
                f"{_q(expr)}")
            run.errors.append(errors.invalid_value(target, type_name, detail))
            raise _OutOfBudget
        run.budget -= spent
        try:
            value = engine.evaluate(message, activation)
        except CelError:
            value = None
        if isinstance(value, str):
            text = value.strip()
            if text and len(text.encode()) <= limits.CEL_MAX_MESSAGE_EXPRESSION_BYTES and "\n" not in text:
                return text
    return rule_message_or_default(rule)


def rule_error_string(rule: dict[str, Any]) -> str:
    message = rule.get("message")
    if isinstance(message, str) and message:
        return message.strip()
    return str(rule.get("rule", "")).strip()


def rule_message_or_default(rule: dict[str, Any]) -> str:
    message = rule.get("message")
    if isinstance(message, str) and message:
        return message.strip()
    return f"failed rule: {rule_error_string(rule)}"


def error_for_reason(path: str, value: Any, detail: str, reason: Any) -> FieldError:
    if reason == "FieldValueForbidden":
        return errors.forbidden_field(path, detail)
    if reason == "FieldValueRequired":
        return errors.required(path, detail)
    if reason == "FieldValueDuplicate":
        return errors.duplicate(path, value)
    return errors.invalid_value(path, value, detail)
