"""A ValidatingAdmissionPolicy's expressions, compiled once per generation of the policy, and their evaluation for
one request: matchConditions, variables on first use, validations and their messages, audit annotations, all
charged to Kubernetes' runtime cost budgets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubesat import limits
from kubesat.apimachinery.cel import CelError, CompileError, Compiled, cost, evaluate
from kubesat.registry.admissionpolicy import (
    cel_type_name, compile_policy_expression, variable_names, variable_references,
)

MAX_AUDIT_VALUE_BYTES = 10 * 1024
MAX_MESSAGE_BYTES = 5 * 1024  # a messageExpression's result (celconfig.MaxEvaluatedMessageExpressionSizeBytes)


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


@dataclass
class Program:
    """One expression of a policy: compiled, or why it is not, and the policy variables it uses."""

    source: str
    compiled: Compiled | None
    error: str = ""
    uses: tuple[str, ...] = ()


def _program(expression: str, names: tuple[str, ...]) -> Program:
    try:
        compiled = compile_policy_expression(expression, names)
    except CompileError as e:
        return Program(expression, None, f"compilation failed: {e}")
    return Program(expression, compiled,
                   uses=tuple(sorted({name for name, _ in variable_references(compiled.checked.root)})))


@dataclass
class CompiledPolicy:
    """A policy's expressions, compiled for one generation of it."""

    policy: dict[str, Any]
    generation: Any
    conditions: list[Program]
    variables: list[tuple[str, Program]]
    validations: list[tuple[dict[str, Any], Program, Program | None]]  # (validation, expression, messageExpression)
    annotations: list[tuple[str, Program]]

    @property
    def name(self) -> str:
        return str(self.policy["metadata"].get("name", ""))

    def variable(self, name: str) -> Program | None:
        return next((p for n, p in self.variables if n == name), None)

    @property
    def spec(self) -> dict[str, Any]:
        return _d(self.policy.get("spec"))


def compile_policy(policy: dict[str, Any]) -> CompiledPolicy:
    spec = _d(policy.get("spec"))
    params = isinstance(spec.get("paramKind"), dict)
    names = variable_names(params)
    validations = []
    for v in map(_d, _l(spec.get("validations"))):
        message = _s(v.get("messageExpression"))
        validations.append((v, _program(_s(v.get("expression")).strip(), names),
                            _program(message, variable_names(params, has_authorizer=False)) if message.strip()
                            else None))
    conditions = variable_names(params, has_variables=False)
    return CompiledPolicy(
        policy, policy["metadata"].get("generation"),
        [_program(_s(_d(c).get("expression")).strip(), conditions) for c in _l(spec.get("matchConditions"))],
        [(_s(_d(v).get("name")), _program(_s(_d(v).get("expression")), names)) for v in _l(spec.get("variables"))],
        validations,
        [(_s(_d(a).get("key")), _program(_s(_d(a).get("valueExpression")).strip(), names))
         for a in _l(spec.get("auditAnnotations"))])


@dataclass
class Decision:
    """A failed validation (or an error treated as one): the message, its reason and which expression."""

    message: str
    reason: str = "Invalid"
    index: int = 0


class _OutOfBudget(Exception):
    pass


OUT_OF_BUDGET = "validation failed due to running out of cost budget, no further validation rules will be run"


class Evaluation:
    """One policy under one binding with one param object: matchConditions, variables, validations, annotations.
    Errors become decisions when failurePolicy is Fail and are dropped under Ignore. Each expression's cost (as
    Kubernetes' estimator prices it for the values at hand) is charged to the evaluation's budget first."""

    def __init__(self, cp: CompiledPolicy, activation: dict[str, Any]) -> None:
        self.cp = cp
        self.activation = activation
        self.fail = cp.spec.get("failurePolicy", "Fail") != "Ignore"
        self.budget = limits.CEL_MATCH_CONDITIONS_BUDGET  # then CEL_RUNTIME_BUDGET for the rest, as Kubernetes
        self.values: dict[str, Any] = {}  # the variables evaluated so far
        self.failed: dict[str, str] = {}  # the variables whose evaluation failed, and why
        self.activation["variables"] = self.values

    def run(self) -> tuple[list[Decision], list[tuple[str, str]]]:
        """(decisions, audit annotations to publish)."""
        try:
            matched = self._conditions()
            if matched is not True:
                return matched or [], []
            self.budget = limits.CEL_RUNTIME_BUDGET
            decisions = [d for i, item in enumerate(self.cp.validations) if (d := self._validation(i, *item))]
            annotations, errs = self._annotations()
        except _OutOfBudget:
            return self._error(OUT_OF_BUDGET), []
        return decisions + errs, annotations

    def _evaluate(self, p: Program) -> Any:
        """The expression's value, after charging its cost: over the per-call limit it fails as cel-go's cancelled
        evaluation; over what is left of the budget nothing more runs."""
        if p.compiled is None:
            raise CelError(f"compilation error: {p.error}")
        self._variables(p.uses)
        spent = cost.Estimator(p.compiled.checked, cost.value_sizer(self.activation),
                               unknown=cost.Range(0, limits.MAX_REQUEST_BYTES)).cost(p.compiled.checked.root).hi
        charged = min(spent, limits.CEL_PER_CALL_LIMIT + 1)  # a cancelled call spent up to the limit
        if charged > self.budget:
            raise _OutOfBudget
        self.budget -= charged
        if spent > limits.CEL_PER_CALL_LIMIT:
            raise CelError("operation cancelled: actual cost limit exceeded")
        return evaluate(p.compiled, self.activation)

    def _error(self, message: str) -> list[Decision]:
        return [Decision(message)] if self.fail else []

    def _conditions(self) -> bool | list[Decision]:
        problems = []
        for p in self.cp.conditions:
            try:
                if self._evaluate(p) is False:
                    return []
            except CelError as e:
                problems.append(f"expression '{p.source}' resulted in error: {e}")
        if problems:
            return self._error(problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
        return True

    def _variables(self, names: tuple[str, ...]) -> None:
        """The variables an expression uses, evaluated on first use (as Kubernetes' composition does, so a variable
        nothing uses never fails a request); a use of one that failed fails with its error."""
        for name in names:
            if name not in self.values and name not in self.failed:
                program = self.cp.variable(name)
                if program is None:
                    continue  # undefined: the lookup fails with cel's `no such key`
                self.failed[name] = "variable evaluation in progress"  # a cycle fails rather than recursing
                try:
                    self.values[name] = self._evaluate(program)
                    del self.failed[name]
                except CelError as e:
                    self.failed[name] = str(e)
            if name in self.failed:
                raise CelError(self.failed[name])

    def _validation(self, i: int, v: dict[str, Any], p: Program, message: Program | None) -> Decision | None:
        try:
            result = self._evaluate(p)
        except CelError as e:
            return Decision(f"expression '{p.source}' resulted in error: {e}", index=i) if self.fail else None
        if result is True:
            return None
        reason = _s(v.get("reason")) or "Invalid"
        return Decision(self._message(v, p, message), reason, i)

    def _message(self, v: dict[str, Any], p: Program, message: Program | None) -> str:
        """messageExpression, else message, else `failed expression: <expression>`."""
        if message is not None and message.compiled is not None:
            try:
                text = self._evaluate(message)
            except CelError:
                text = None
            if isinstance(text, str):
                text = text.strip()
                if text and len(text.encode()) <= MAX_MESSAGE_BYTES and "\n" not in text:
                    return text
        static = _s(v.get("message")).strip()
        return static or f"failed expression: {p.source}"

    def _annotations(self) -> tuple[list[tuple[str, str]], list[Decision]]:
        out: list[tuple[str, str]] = []
        errs: list[Decision] = []
        for key, p in self.cp.annotations:
            try:
                value = self._evaluate(p)
            except CelError as e:
                errs += self._error(f"expression '{p.source}' resulted in error: {e}")
                continue
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if not isinstance(value, str):
                errs.append(Decision(f"valueExpression '{p.source}' resulted in unsupported return type: "
                                     f"{cel_type_name(type(value).__name__.upper())}. Return type must be either "
                                     "string or null."))
                continue
            out.append((key, value.strip().encode()[:MAX_AUDIT_VALUE_BYTES].decode(errors="ignore")))
        return out, errs
