"""cel-go's cost model over a checked expression: the worst-case estimate Kubernetes checks CRD rules against (sizes
from the schema's maxItems, maxProperties and maxLength), and the same walk with the sizes of actual values."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesat.apimachinery.cel.checked import Checked, Node
from kubesat.apimachinery.cel.decltype import DeclType

U64 = 2**64 - 1
STRING_TRAVERSAL = 0.1
REGEX_LENGTH = 0.25
LIST_CREATE, MAP_CREATE, STRUCT_CREATE = 10, 30, 40


class Range:
    """A [lo, hi] interval of cost or size that saturates at 2^64-1, as cel-go's estimates do."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi

    def __eq__(self, o: object) -> bool:
        return isinstance(o, Range) and (self.lo, self.hi) == (o.lo, o.hi)

    def __hash__(self) -> int:
        return hash((self.lo, self.hi))

    def __repr__(self) -> str:
        return f"Range(lo={self.lo}, hi={self.hi})"

    def __add__(self, o: Range) -> Range:
        return Range(min(self.lo + o.lo, U64), min(self.hi + o.hi, U64))

    def __mul__(self, o: Range) -> Range:
        return Range(min(self.lo * o.lo, U64), min(self.hi * o.hi, U64))

    def factor(self, f: float) -> Range:
        return Range(_ceil(self.lo * f), _ceil(self.hi * f))

    def union(self, o: Range) -> Range:
        return Range(min(self.lo, o.lo), max(self.hi, o.hi))


def _ceil(x: float) -> int:
    return U64 if x >= U64 else math.ceil(x)


ZERO, ONE, UNKNOWN = Range(0, 0), Range(1, 1), Range(0, U64)
Sizer = Callable[[list[str]], Range | None]


def schema_sizer(roots: Mapping[str, DeclType | None]) -> Sizer:
    """Sizes from declared bounds: the path's type's maximum element count (Kubernetes' size estimator). Like
    Kubernetes', it reads every path as starting at `self` (so `type(self.x) == int` sizes `int` as `self`)."""
    def size(path: list[str]) -> Range | None:
        t = roots.get(path[0], roots.get("self")) if path else None
        for name in path[1:]:
            if t is None:
                return None
            if name in ("@items", "@values"):
                t = t.elem
            elif name == "@keys":
                return Range(0, 0)  # a map's key type carries no bound in Kubernetes' declarations
            else:
                t = t.fields.get(name)
        return Range(0, t.max_elements) if t is not None else None
    return size


def value_sizer(roots: Mapping[str, Any]) -> Sizer:
    """Sizes from the values themselves: the largest value the path can reach (for the runtime limits)."""
    def size(path: list[str]) -> Range | None:
        if not path or path[0] not in roots:
            return None
        values = [roots[path[0]]]
        for name in path[1:]:
            values = _step(values, name)
            if not values:
                return None
        return Range(0, max(_size_of(v) for v in values))
    return size


def _step(values: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if name == "@items" and isinstance(v, list):
            out.extend(v)
        elif name == "@values" and isinstance(v, dict):
            out.extend(v.values())
        elif name == "@keys" and isinstance(v, dict):
            out.extend(v.keys())
        elif isinstance(v, dict) and name in v:
            out.append(v[name])
    return out


def _size_of(v: Any) -> int:
    if isinstance(v, str | bytes | list | dict):
        return len(v)
    return 1


@dataclass
class _Local:
    path: list[str] | None
    size: Range | None


@dataclass
class Estimator:
    tree: Checked
    sizer: Sizer
    unknown: Range = UNKNOWN  # the size of a value nothing bounds
    paths: dict[int, list[str]] = field(default_factory=dict)
    sizes: dict[int, Range] = field(default_factory=dict)
    entry_sizes: dict[int, Range] = field(default_factory=dict)
    locals: dict[str, list[_Local]] = field(default_factory=dict)

    def cost(self, e: Node | None) -> Range:
        if e is None:
            return ZERO
        kind = e.kind
        if kind == "const":
            return ZERO
        if kind == "ident":
            local = self._peek(e.name)
            self.paths[e.id] = (local.path or []) if local else [e.name]
            return ONE
        if kind == "select":
            return self._select(e)
        if kind == "call":
            return self._call(e)
        if kind == "list":
            total = ZERO
            item = Range(U64, 0) if e.args else ZERO
            for a in e.args:
                total = total + self.cost(a)
                item = item.union(self.size(a))
            self.entry_sizes[e.id] = item
            return total + Range(LIST_CREATE, LIST_CREATE)
        if kind in ("map", "struct"):
            total = ZERO
            for a in e.args:
                total = total + self.cost(a)
            base = MAP_CREATE if kind == "map" else STRUCT_CREATE
            return total + Range(base, base)
        if kind == "comprehension":
            return self._comprehension(e)
        return ZERO

    def _peek(self, name: str) -> _Local | None:
        stack = self.locals.get(name)
        return stack[-1] if stack else None

    def _push(self, name: str, path: list[str] | None, size: Range | None) -> None:
        self.locals.setdefault(name, []).append(_Local(path, size))

    def _pop(self, name: str) -> None:
        self.locals[name].pop()

    def path(self, e: Node) -> list[str]:
        if e.kind == "ident":
            local = self._peek(e.name)
            if local is not None:
                return list(local.path or [])
        return list(self.paths.get(e.id, []))

    def size(self, e: Node) -> Range:
        if e.id in self.sizes:
            return self.sizes[e.id]
        if e.kind == "const":
            if isinstance(e.value, str | bytes):
                return Range(len(e.value), len(e.value))
            return ONE
        if e.kind in ("list", "map"):
            n = len(e.args) if e.kind == "list" else len(e.args) // 2
            return Range(n, n)
        p = self.path(e)
        if p and not p[0].startswith("@"):
            s = self.sizer(p)
            if s is not None:
                return s
        t = self.tree.types.get(e.id)
        if t in ("bool", "int", "uint", "double", "null", "timestamp", "duration"):
            return ONE
        if e.kind == "ident":
            local = self._peek(e.name)
            if local is not None and local.size is not None:
                return local.size
        return self.unknown

    def _select(self, e: Node) -> Range:
        assert e.operand is not None
        if e.test_only:
            return ONE + self.cost(e.operand)
        total = self.cost(e.operand)
        t = self.tree.types.get(e.operand.id)
        if isinstance(t, tuple) and t[0] in ("map", "message", "param"):
            total = total + ONE
        self.paths[e.id] = [*self.path(e.operand), e.name]
        return total

    def _call(self, e: Node) -> Range:
        if e.name == "dyn" and e.args:
            c = self.cost(e.args[0])
            self.sizes[e.id] = self.size(e.args[0])
            return ONE + c
        arg_costs = [self.cost(a) for a in e.args]
        total = ZERO
        if e.operand is not None:
            total = self.cost(e.operand)
        ids = self.tree.overloads.get(e.id, [])
        if not ids:
            return ZERO
        fn: Range | None = None
        for oid in ids:
            c = self._function(e, oid, arg_costs)
            fn = c if fn is None else fn.union(c)
            if oid == "index_list" and e.args:
                self.paths[e.id] = [*self.path(e.args[0]), "@items"]
            elif oid == "index_map" and e.args:
                self.paths[e.id] = [*self.path(e.args[0]), "@values"]
        assert fn is not None
        return total + fn

    def _function(self, e: Node, oid: str, arg_costs: list[Range]) -> Range:
        args_sum = ZERO
        for c in arg_costs:
            args_sum = args_sum + c
        special = self._kubernetes_cost(e, oid)
        if special is not None:
            return special + args_sum
        target = e.operand
        a = e.args
        if oid in ("starts_with_string", "ends_with_string") and len(a) == 1:
            return self.size(a[0]).factor(STRING_TRAVERSAL) + args_sum
        if oid == "in_list" and len(a) == 2:
            return self.size(a[1]) + args_sum
        if oid == "matches_string" and target is not None and len(a) == 1:
            s = (self.size(target) + ONE).factor(STRING_TRAVERSAL)
            return s * self.size(a[0]).factor(REGEX_LENGTH) + args_sum
        if oid == "contains_string" and target is not None and len(a) == 1:
            return self.size(target).factor(STRING_TRAVERSAL) * self.size(a[0]).factor(STRING_TRAVERSAL) + args_sum
        if oid in ("logical_and", "logical_or"):
            return Range(arg_costs[0].lo, (arg_costs[0] + arg_costs[1]).hi)
        if oid == "conditional":
            self.sizes[e.id] = self.size(a[1]).union(self.size(a[2]))
            return arg_costs[0] + arg_costs[1].union(arg_costs[2])
        if oid in ("add_string", "add_bytes", "add_list") and len(a) == 2:
            result = self.size(a[0]) + self.size(a[1])
            self.sizes[e.id] = result
            if oid == "add_list":
                return ONE + args_sum
            return result.factor(STRING_TRAVERSAL) + args_sum
        if oid in ("string_to_bytes", "bytes_to_string") and len(a) == 1:
            return self.size(a[0]).factor(STRING_TRAVERSAL) + args_sum
        if oid.startswith(("less_string", "greater_string", "less_equals_string", "greater_equals_string",
                           "less_bytes", "greater_bytes", "less_equals_bytes", "greater_equals_bytes")) or \
                oid in ("equals", "not_equals"):
            smallest = min(self.size(a[0]).hi, self.size(a[1]).hi)
            return Range(1 if smallest > 0 else 0, smallest).factor(STRING_TRAVERSAL) + args_sum
        return ONE + args_sum

    def _kubernetes_cost(self, e: Node, oid: str) -> Range | None:
        """Kubernetes' estimates for its library functions (apiserver pkg/cel/library/cost.go, EstimateCallCost)."""
        target, name, a = e.operand, e.name, e.args
        if oid.startswith(("authorizer_", "groupcheck_", "resourcecheck_", "pathcheck_", "decision_")):
            # an authorization check is priced to allow two per expression; its builders and accessors are nominal
            return Range(350_000, 350_000) if name == "check" else ONE
        if name in ("isSorted", "sum", "max", "min", "indexOf", "lastIndexOf") and target is not None:
            return self._list_function(target, oid)
        if name == "url" and len(a) == 1:
            return self.size(a[0]).factor(STRING_TRAVERSAL)
        if name in ("lowerAscii", "upperAscii", "substring", "trim") and target is not None:
            self.sizes[e.id] = self.size(target)
            return self.size(target).factor(STRING_TRAVERSAL)
        if name in ("replace", "split") and target is not None:
            self.sizes[e.id] = Range(0, self.size(target).hi) if name == "split" else self.size(target)
            return self.size(target).factor(2 * STRING_TRAVERSAL)
        if name == "join" and target is not None:
            return self._join(e, target)
        if name in ("find", "findAll") and target is not None and a:
            self.sizes[e.id] = Range(0, self.size(target).hi)
            return (self.size(target) + ONE).factor(STRING_TRAVERSAL) * self.size(a[0]).factor(REGEX_LENGTH)
        if name in ("masked", "prefixLength", "family", "isUnspecified", "isLoopback", "isLinkLocalMulticast",
                    "isLinkLocalUnicast", "sign", "asInteger", "isInteger", "asApproximateFloat", "isGreaterThan",
                    "isLessThan", "compareTo", "add", "sub") or (name == "ip" and target is not None):
            return ONE
        if name in ("containsIP", "containsCIDR") and target is not None and a:
            c = Range(8, 32).factor(STRING_TRAVERSAL)
            if name == "containsCIDR":
                c = c + Range(4, 16).factor(STRING_TRAVERSAL) + ONE
            if oid.endswith("_string"):
                c = c + self.size(a[0]).factor(STRING_TRAVERSAL)
            return c
        if oid == "string_format" and target is not None:
            return self.size(target).factor(STRING_TRAVERSAL)
        return None

    def _list_function(self, target: Node, oid: str) -> Range:
        if not oid.startswith("list_"):
            return self.size(target).factor(STRING_TRAVERSAL)
        element = ONE
        t = self.tree.types.get(target.id)
        if isinstance(t, tuple) and t[0] == "list" and t[1] in ("string", "bytes"):
            path = self.path(target)
            size = self.sizer([*path, "@items"]) if path and not path[0].startswith("@") else None
            element = element + (size if size is not None else self.unknown).factor(STRING_TRAVERSAL)
        return self.size(target) * element

    def _join(self, e: Node, target: Node) -> Range:
        count = self.size(target)
        path = self.path(target)
        item = self.sizer([*path, "@items"]) if path and not path[0].startswith("@") else None
        total = count * (item if item is not None else self.unknown)
        if e.args:
            total = total + self.size(e.args[0]) * Range(max(count.lo - 1, 0), max(count.hi - 1, 0))
        self.sizes[e.id] = total
        return total.factor(STRING_TRAVERSAL)

    def _comprehension(self, e: Node) -> Range:
        assert e.iter_range is not None
        total = self.cost(e.iter_range) + self.cost(e.accu_init)
        self._push(e.accu_var, None, None)
        range_path = self.path(e.iter_range)
        t = self.tree.types.get(e.iter_range.id)
        is_list = isinstance(t, tuple) and t[0] == "list"
        entry = self.entry_sizes.get(e.iter_range.id)
        if e.iter_var2:
            self._push(e.iter_var, [*range_path, "@indices" if is_list else "@keys"] if range_path else None, None)
            self._push(e.iter_var2, [*range_path, "@items" if is_list else "@values"] if range_path else None, entry)
        else:
            sub = "@items" if is_list else "@keys"
            self._push(e.iter_var, [*range_path, sub] if range_path else None, entry if is_list else None)
        loop = self.cost(e.loop_condition) + self.cost(e.loop_step)
        self._pop(e.iter_var)
        if e.iter_var2:
            self._pop(e.iter_var2)
        total = total + self.cost(e.result)
        self._pop(e.accu_var)
        count = self.size(e.iter_range)
        if e.accu_init is not None and e.accu_init.kind in ("list", "map"):
            self.sizes[e.id] = count
        return total + count * loop


def estimate(tree: Checked, sizer: Sizer) -> Range:
    """The cost range of evaluating the expression once."""
    return Estimator(tree, sizer).cost(tree.root)


def runtime_cost(tree: Checked, activation: Mapping[str, Any], unbounded: int) -> int:
    """An upper bound of what evaluating the expression on these values costs in cel-go's units, with `unbounded`
    standing for the size of values nothing bounds (computed strings): what the runtime limits are checked against."""
    return Estimator(tree, value_sizer(activation), unknown=Range(0, unbounded)).cost(tree.root).hi
