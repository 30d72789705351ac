"""The LimitRanger and ResourceQuota admission plugins, as pure functions over the objects.

LimitRanger fills a new pod's missing container requests and limits from its namespace's LimitRanges
(`default`, `defaultRequest`), records what it set in the `kubernetes.io/limit-ranger` annotation, and
refuses a pod outside a range's min, max or maxLimitRequestRatio. ResourceQuota checks a new object against
each quota's recorded status (refusing what would take it past its `hard` amounts, or a pod that leaves out
a request or limit the quota tracks) and says what each quota's `status.used` becomes once it is charged.
Both answer 403 Forbidden in Kubernetes' words.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubesat import errors
from kubesat.apimachinery.quantity import format_quantity, parse_quantity
from kubesat.registry.quota import counted_resource, is_binary, object_usage, pod_amounts, quota_matches

LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
# Quota names that make every container spell out the matching request or limit (quota's "constraints").
_MUST_SPECIFY = {"cpu": ("requests", "cpu"), "memory": ("requests", "memory"),
                 "requests.cpu": ("requests", "cpu"), "requests.memory": ("requests", "memory"),
                 "limits.cpu": ("limits", "cpu"), "limits.memory": ("limits", "memory")}


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _forbidden(plural: str, group: str, name: str, why: str) -> errors.StatusError:
    return errors.forbidden(plural, name, why, group)


def _q(text: Any) -> str:
    amount = parse_quantity(text)
    return str(text) if amount is None else format_quantity(amount)


# ----------------------------------------------------------------------------------------- LimitRanger

def _set_defaults(container: dict[str, Any], item: dict[str, Any]) -> list[str]:
    """Fill what the container left out; returns what was set, as the annotation words it."""
    resources = container.setdefault("resources", {})
    said = []
    for part, key, word in (("requests", "defaultRequest", "request"), ("limits", "default", "limit")):
        missing = {n: q for n, q in _d(item.get(key)).items() if n not in _d(resources.get(part))}
        if missing:
            resources.setdefault(part, {}).update(missing)
            said.append(f"{', '.join(sorted(missing))} {word}")
    return said


def _check_container(container: dict[str, Any], item: dict[str, Any], kind: str) -> list[str]:
    res = _d(container.get("resources"))
    requests, limits = _d(res.get("requests")), _d(res.get("limits"))
    return _check_amounts(_amounts(requests), _amounts(limits), item, kind,
                          {**{f"r/{k}": str(v) for k, v in requests.items()},
                           **{f"l/{k}": str(v) for k, v in limits.items()}})


def _amounts(values: dict[str, Any]) -> dict[str, Decimal]:
    out = {}
    for name, q in values.items():
        amount = parse_quantity(q)
        if amount is not None:
            out[name] = amount
    return out


class _Observed:
    """A container's (or pod's) requests and limits, with the text the object wrote them in for messages."""

    def __init__(self, requests: dict[str, Decimal], limits: dict[str, Decimal], shown: dict[str, str]) -> None:
        self.requests, self.limits, self.shown = requests, limits, shown

    def req(self, name: str) -> str:
        return self.shown.get(f"r/{name}") or format_quantity(self.requests[name], is_binary(name))

    def lim(self, name: str) -> str:
        return self.shown.get(f"l/{name}") or format_quantity(self.limits[name], is_binary(name))


def _min_problems(o: _Observed, item: dict[str, Any], kind: str) -> list[str]:
    problems = []
    for name, q in _d(item.get("min")).items():
        low = parse_quantity(q)
        if low is None:
            continue
        if name not in o.requests:
            problems.append(f"minimum {name} usage per {kind} is {q}.  No request is specified")
        elif o.requests[name] < low:
            problems.append(f"minimum {name} usage per {kind} is {q}, but request is {o.req(name)}")
        elif name in o.limits and o.limits[name] < low:
            problems.append(f"minimum {name} usage per {kind} is {q}, but limit is {o.lim(name)}")
    return problems


def _max_problems(o: _Observed, item: dict[str, Any], kind: str) -> list[str]:
    problems = []
    for name, q in _d(item.get("max")).items():
        high = parse_quantity(q)
        if high is None:
            continue
        if name not in o.limits:
            problems.append(f"maximum {name} usage per {kind} is {q}.  No limit is specified")
        elif o.limits[name] > high:
            problems.append(f"maximum {name} usage per {kind} is {q}, but limit is {o.lim(name)}")
        elif name in o.requests and o.requests[name] > high:
            problems.append(f"maximum {name} usage per {kind} is {q}, but request is {o.req(name)}")
    return problems


def _ratio_problems(o: _Observed, item: dict[str, Any], kind: str) -> list[str]:
    problems = []
    for name, q in _d(item.get("maxLimitRequestRatio")).items():
        ratio = parse_quantity(q)
        head = f"{name} max limit to request ratio per {kind} is {q}, but"
        if ratio is None:
            continue
        if not o.requests.get(name):
            problems.append(f"{head} no request is specified or request is 0")
        elif not o.limits.get(name):
            problems.append(f"{head} no limit is specified or limit is 0")
        elif (actual := o.limits[name] / o.requests[name]) > ratio:
            problems.append(f"{head} provided ratio is {actual:.6f}")
    return problems


def _check_amounts(requests: dict[str, Decimal], limits: dict[str, Decimal], item: dict[str, Any], kind: str,
                   shown: dict[str, str] | None = None) -> list[str]:
    """LimitRanger's min, max and ratio checks, worded as Kubernetes words them."""
    o = _Observed(requests, limits, shown or {})
    return _min_problems(o, item, kind) + _max_problems(o, item, kind) + _ratio_problems(o, item, kind)


def admit_pod_limits(pod: dict[str, Any], limit_ranges: list[dict[str, Any]]) -> None:
    """Default a new pod's containers from the namespace's LimitRanges, then check every range."""
    spec = _d(pod.get("spec"))
    containers = [c for c in _l(spec.get("initContainers")) + _l(spec.get("containers")) if isinstance(c, dict)]
    notes = []
    for lr in limit_ranges:
        for item in _l(_d(lr.get("spec")).get("limits")):
            if _d(item).get("type") == "Container":
                for c in _l(spec.get("containers")):
                    if isinstance(c, dict) and (said := _set_defaults(c, item)):
                        notes += [f"{s} for container {c.get('name', '')}" for s in said]
                for c in _l(spec.get("initContainers")):
                    if isinstance(c, dict) and (said := _set_defaults(c, item)):
                        notes += [f"{s} for init container {c.get('name', '')}" for s in said]
    if notes:
        meta = pod.setdefault("metadata", {})
        meta.setdefault("annotations", {})[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
    problems = []
    for lr in limit_ranges:
        for item in _l(_d(lr.get("spec")).get("limits")):
            item = _d(item)
            if item.get("type") == "Container":
                for c in containers:
                    problems += _check_container(c, item, "Container")
            elif item.get("type") == "Pod":
                problems += _check_amounts(pod_amounts(pod, "requests"), pod_amounts(pod, "limits"), item, "Pod")
    if problems:
        name = _d(pod.get("metadata")).get("name") or _d(pod.get("metadata")).get("generateName") or ""
        why = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise _forbidden("pods", "", name, why)


# --------------------------------------------------------------------------------------- ResourceQuota

def _missing_specs(pod: dict[str, Any], hard: dict[str, Any]) -> str:
    """`must specify ...` when a quota tracks cpu or memory and a container leaves it out; '' otherwise."""
    tracked = sorted(set(hard) & set(_MUST_SPECIFY))
    missing: dict[str, list[str]] = {}
    spec = _d(pod.get("spec"))
    for c in _l(spec.get("initContainers")) + _l(spec.get("containers")):
        res = _d(_d(c).get("resources"))
        for quota_name in tracked:
            part, resource = _MUST_SPECIFY[quota_name]
            if resource not in _d(res.get(part)):
                missing.setdefault(quota_name, []).append(str(_d(c).get("name", "")))
    return "; ".join(f"{name} for: {','.join(sorted(set(names)))}" for name, names in sorted(missing.items()))


def _amounts_of(values: dict[str, Any]) -> dict[str, Decimal]:
    """A quota status list read back (an unparseable amount is left out: it counts as unknown)."""
    return {name: amount for name, q in values.items() if (amount := parse_quantity(q)) is not None}


def _pretty(names: list[str], amounts: dict[str, Decimal]) -> str:
    return ",".join(f"{r}={format_quantity(amounts.get(r, Decimal(0)), is_binary(r))}" for r in names)


def _restricted(plural: str, group: str, hard: dict[str, Any]) -> list[str]:
    """The names of a quota's status.hard that this kind's objects are counted in (the evaluator's match)."""
    return sorted(r for r in hard if counted_resource(r) == (plural, group))


def _pertinent(plural: str, group: str, obj: dict[str, Any], quota: dict[str, Any], name: str) -> list[str]:
    """The quota's restricted names for `obj` ([] when it does not count it), after its pre-checks:
    a pod must spell out what the quota tracks, and every restricted name needs a recorded usage."""
    if not quota_matches(quota, plural, group, obj):
        return []
    status = _d(quota.get("status"))
    hard = _d(status.get("hard"))
    restricted = _restricted(plural, group, hard)
    quota_name = _d(quota.get("metadata")).get("name", "")
    if plural == "pods" and not group and (missing := _missing_specs(obj, {r: hard[r] for r in restricted})):
        raise _forbidden(plural, group, name, f"failed quota: {quota_name}: must specify {missing}")
    used = _amounts_of(_d(status.get("used")))
    if any(r not in used for r in restricted):
        raise _forbidden(plural, group, name, f"status unknown for quota: {quota_name}, resources: "
                                              f"{','.join(restricted)}")
    return restricted


def charge_quotas(plural: str, group: str, obj: dict[str, Any],
                  quotas: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The ResourceQuota admission check of a create, against each quota's recorded `status` (its hard amounts
    and usage, as the quota controller or an earlier admission wrote them). Refuses (403) what would take a
    quota past its hard amounts; returns, for each quota the object is charged to, its new `status.used`."""
    name = _d(obj.get("metadata")).get("name") or _d(obj.get("metadata")).get("generateName") or ""
    ordered = sorted(quotas, key=lambda q: str(_d(q.get("metadata")).get("name", "")))
    pertinent = [(q, r) for q in ordered if (r := _pertinent(plural, group, obj, q, name))]
    requested = {r: amount for r, amount in object_usage(plural, group, obj).items() if amount}
    charged: dict[str, dict[str, str]] = {}
    for quota, restricted in pertinent:
        status = _d(quota.get("status"))
        hard, used_text = _d(status.get("hard")), _d(status.get("used"))
        asked = {r: requested[r] for r in restricted if r in requested}
        if not asked:
            continue
        used = _amounts_of(used_text)
        exceeded = sorted(r for r, amount in asked.items()
                          if (cap := parse_quantity(hard[r])) is not None and used.get(r, Decimal(0)) + amount > cap)
        quota_name = str(_d(quota.get("metadata")).get("name", ""))
        if exceeded:
            cap_text = ",".join(f"{r}={_q(hard[r])}" for r in exceeded)
            raise _forbidden(plural, group, name, f"exceeded quota: {quota_name}, requested: "
                                                  f"{_pretty(exceeded, asked)}, used: {_pretty(exceeded, used)}, "
                                                  f"limited: {cap_text}")
        after = {str(k): str(v) for k, v in used_text.items()}
        after.update({r: format_quantity(used.get(r, Decimal(0)) + n, is_binary(r)) for r, n in asked.items()})
        charged[quota_name] = after
    return charged
