"""Compile and evaluate time of five typical x-kubernetes-validations rules in each Python CEL library.

Each library runs in its own process (two of them install a module named `cel`). A library that is not
importable is reported as skipped. `--site NAME=DIR` puts DIR first on that library's path, for a
library installed with `pip install --target DIR` (so the candidates need not share one environment).

    python bench/cel_libraries.py [--rounds 2000] [--site cel-python=/tmp/x ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

RULES = [
    ("min <= max", "self.minReplicas <= self.maxReplicas"),
    ("matches", "self.name.matches('^[a-z]+$')"),
    ("all()", "self.items.all(i, i.size() < 10)"),
    ("transition", "self == oldSelf"),
    ("has ?:", "has(self.x) ? self.x > 0 : true"),
]
SELF = {"minReplicas": 1, "maxReplicas": 3, "name": "web", "items": ["a", "bb", "ccc", "dddd", "eeeee"], "x": 4}
OLD = dict(SELF)
# What Kubernetes' rules lean on: each expression must evaluate to true (an error or false counts as a miss).
CONFORMANCE = [
    "has(self.x) && !has(self.nope)",
    "self.items.all(i, i.size() > 0)",
    "self.items.exists(i, i == 'bb')",
    "self.items.exists_one(i, i == 'bb')",
    "self.items.map(i, i.size()) == [1, 2, 3, 4, 5]",
    "self.items.filter(i, i.size() > 3) == ['dddd', 'eeeee']",
    "self.name.startsWith('w') && self.name.endsWith('b') && self.name.contains('e')",
    "self.name.matches('^[a-z]+$')",
    "size(self.items) == 5 && self.items[0] == 'a'",
    "'x' in {'x': 1} && 'a' in self.items",
    "{'a': 1}['a'] == 1",
    "timestamp('2020-01-01T00:00:00Z') < timestamp('2021-01-01T00:00:00Z')",
    "duration('1h') > duration('30m')",
    "timestamp('2020-01-01T00:00:00Z') + duration('24h') == timestamp('2020-01-02T00:00:00Z')",
    "int('42') == 42 && string(42) == '42' && double(1) == 1.0",
    "dyn(1) == 1.0",
    "1 < 1.5",
    "dyn(self.x) == 4",
    "self.name.lowerAscii() == 'web'",
    "'a,b'.split(',') == ['a', 'b']",
    "{'a': 1}.?b.orValue(2) == 2",
    "optional.of(1).hasValue()",
    "type(self.x) == int",
    "[1, 2, 3].isSorted()",
    "quantity('1Gi').isGreaterThan(quantity('1000Mi'))",
    "url('https://example.com/x').getHost() == 'example.com'",
]
LIBRARIES = ["kubesat", "cel-expr-python", "cel-python", "common-expression-language", "python-cel"]


def _celpy() -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    import celpy  # noqa: PLC0415 (the library under test is loaded in its own process)

    env = celpy.Environment()

    def run(p: Any) -> Any:
        return p.evaluate({"self": celpy.json_to_cel(SELF), "oldSelf": celpy.json_to_cel(OLD)})

    return (lambda e: env.program(env.compile(e))), run


def _cel_expr_python() -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    from cel_expr_python import cel  # noqa: PLC0415
    from cel_expr_python.ext import ext_optional, ext_strings  # noqa: PLC0415

    t = cel.Type
    env = cel.NewEnv(variables={"self": t.Map(t.STRING, t.DYN), "oldSelf": t.Map(t.STRING, t.DYN)},
                     extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional()])
    return env.compile, (lambda p: p.eval(data={"self": SELF, "oldSelf": OLD}).value())


def _rust_cel() -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    import cel  # noqa: PLC0415

    return cel.compile, (lambda p: p.execute(cel.Context({"self": SELF, "oldSelf": OLD})))


def _python_cel() -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    import cel  # noqa: PLC0415

    return cel.Program, (lambda p: p.execute(cel.Context({"self": SELF, "oldSelf": OLD})))


def _kubesat() -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    from kubesat.apimachinery import cel  # noqa: PLC0415

    variables = {"self": cel.DYN, "oldSelf": cel.DYN}
    return (lambda e: cel.compile_expression(e, variables)), (lambda p: cel.evaluate(p, {"self": SELF, "oldSelf": OLD}))


LOADERS = {
    "kubesat": _kubesat,
    "cel-expr-python": _cel_expr_python,
    "cel-python": _celpy,
    "common-expression-language": _rust_cel,
    "python-cel": _python_cel,
}


def _time(fn: Callable[[], Any], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds * 1e6


def measure(name: str, rounds: int) -> dict[str, Any]:
    try:
        compile_, evaluate = LOADERS[name]()
    except ImportError as e:
        return {"library": name, "skipped": str(e)}
    rows = []
    for label, rule in RULES:
        try:
            program = compile_(rule)
            result = evaluate(program)
            c_us = _time(lambda rule=rule: compile_(rule), max(rounds // 10, 10))
            e_us = _time(lambda program=program: evaluate(program), rounds)
            rows.append({"rule": label, "compile_us": round(c_us, 1), "eval_us": round(e_us, 2), "result": str(result)})
        except Exception as e:  # a library that cannot run a rule is a finding, not a crash
            rows.append({"rule": label, "error": f"{type(e).__name__}: {e}"[:160]})
    return {"library": name, "rules": rows}


def conformance(name: str) -> dict[str, Any]:
    try:
        compile_, evaluate = LOADERS[name]()
    except ImportError as e:
        return {"library": name, "skipped": str(e)}
    misses = []
    for expr in CONFORMANCE:
        try:
            result = evaluate(compile_(expr))
            ok = result is True or (type(result).__name__ == "BoolType" and bool(result))
        except Exception as e:  # an unsupported expression is a finding
            ok = False
            expr = f"{expr}  ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
        if not ok:
            misses.append(expr)
    return {"library": name, "passed": len(CONFORMANCE) - len(misses), "misses": misses}


def end_to_end(rounds: int) -> str:
    """kubesat's whole path for one custom resource: the five rules on a schema, values typed, costs charged."""
    from kubesat.apimachinery import cel  # noqa: PLC0415

    props = {"minReplicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}, "name": {"type": "string"},
             "items": {"type": "array", "items": {"type": "string"}}, "x": {"type": "integer"}}
    spec = {"type": "object", "properties": props, "x-kubernetes-validations": [{"rule": r} for _, r in RULES]}
    schema = {"type": "object", "properties": {"spec": spec}}
    new = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": SELF}
    old = {**new, "spec": OLD}
    assert cel.rule_errors(schema, "spec.validation.openAPIV3Schema") == []
    assert cel.validate_rules(schema, new, old) == []
    us = _time(lambda: cel.validate_rules(schema, new, old), rounds)
    return f"kubesat validate_rules, the 5 rules on one object (update): {us:,.1f} us per object"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--site", action="append", default=[], help="NAME=DIR: put DIR first on NAME's path")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--conformance", action="store_true", help="run the conformance expressions instead of timing")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(conformance(args.one) if args.conformance else measure(args.one, args.rounds)))
        return
    sites = dict(s.split("=", 1) for s in args.site)
    if not args.conformance:
        print(end_to_end(max(args.rounds // 10, 10)))
    if not args.conformance:
        print(f"{'library':28} {'rule':12} {'compile us':>11} {'eval us':>9}  result")
    for name in LIBRARIES:
        env = dict(os.environ)
        if name in sites:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (sites[name], env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, __file__, "--one", name, "--rounds", str(args.rounds)]
        out = subprocess.run(cmd + (["--conformance"] if args.conformance else []),
                             env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"{name:28} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        report = json.loads(out.stdout)
        if "skipped" in report:
            print(f"{name:28} skipped ({report['skipped']})")
            continue
        if args.conformance:
            print(f"{name:28} {report['passed']}/{len(CONFORMANCE)} expressions")
            for miss in report["misses"]:
                print(f"{'':30}miss: {miss}")
            continue
        for row in report["rules"]:
            if "error" in row:
                print(f"{name:28} {row['rule']:12} {'':>11} {'':>9}  error: {row['error']}")
            else:
                c_us, e_us = row["compile_us"], row["eval_us"]
                print(f"{name:28} {row['rule']:12} {c_us:>11,.1f} {e_us:>9,.2f}  {row['result']}")


if __name__ == "__main__":
    main()
