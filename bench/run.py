"""kubesat's benchmark: every figure beside a reference measured in the same run, as a table and bench/results.json.

Usage: python bench/run.py [--quick] [--only http,tokens,kubectl,scale,crd] [--out bench/results.json]

Sections (see bench/README.md for what each measures and why):
  tokens   in process: kubesat's Verifier and sign() against raw `cryptography`, PyJWT, joserfc, jwcrypto, Node jose
  http     wrk against a real server: /livez, TokenReview, TokenRequest, GET ServiceAccount, SubjectAccessReview
           against the framework floor (a bare ASGI app on the same stack and certificate) and /livez;
           TokenReview latency at half its peak; TokenReview and /livez with 10% malformed or forged tokens
  kubectl  `kubectl create token` and `kubectl auth can-i` per command against `kubectl version --client`
  scale    cold start; RSS, TokenReview latency, a list and a watch of all Pods at 1k/10k(/100k) objects
  agent, runtime  the node agent's volumes, RSS and token rotation; the process runtime's pod start and exec
  workloads  a Deployment of 1,000 replicas (200 with --quick) on one agent: available, rolled, idle CPU
  crd      CustomResourceDefinitions: from a CRD's create to Established and to its first custom resource created
  customresources  10,000 custom resources (50 fields, 5 CEL rules; 2,000 with --quick) against 10,000 ConfigMaps
--quick takes under 3 minutes on a 2-core machine (1k and 10k objects only); the full run about 10-15 minutes.
Each ratio is value / reference value; a target reads "ratio >= 0.7" or "value < 5" (ms).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite import agent, crd, crdload, endpoints, kubectl, runtime, scale, tokens, workloads
from suite.common import BENCH, ROOT, Entry, Floor, Kubesat, Results, bench_identity, fmt

SECTIONS = ("tokens", "http", "kubectl", "scale", "agent", "runtime", "workloads", "crd", "customresources")


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.machine())
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
            f"commit {rev.stdout.strip() or '?'}{' + work tree' if dirty else ''}")


def table(entries: list[Entry]) -> str:
    head = ("figure", "value", "reference", "ref. value", "ratio", "target", "met")
    rows = [(e.name, fmt(e.value, e.unit), e.reference, fmt(e.reference_value, e.unit),
             f"{e.ratio:.2f}x" if e.ratio is not None else "-", e.target or "-",
             "-" if e.met is None else ("yes" if e.met else "NO")) for e in entries]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {1, 3, 4}
    lines, section = [], None

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs)

    lines.append(line(head))
    lines.append("  ".join("-" * w for w in widths))
    for e, r in zip(entries, rows, strict=True):
        if e.section != section:
            section = e.section
            lines.append(f"[{section}]")
        lines.append(line(r).rstrip())
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs, 1k and 10k objects (under 3 minutes)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    ap.add_argument("--out", type=Path, default=BENCH / "results.json")
    args = ap.parse_args()
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    needs = {"wrk": {"http", "scale", "agent", "workloads", "customresources"},
             "kubectl": {"http", "kubectl", "scale", "agent", "runtime", "workloads"}}
    for tool, used_by in needs.items():
        if used_by & set(wanted) and not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install {tool})")
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    about = machine()
    print(f"kubesat bench{' --quick' if args.quick else ''}: {when}; {about}", flush=True)
    res = Results()
    if "tokens" in wanted:
        tokens.run(res, args.quick)
    if "http" in wanted or "kubectl" in wanted:
        with tempfile.TemporaryDirectory(prefix="kubesat-bench-") as d:
            ks = Kubesat(Path(d) / "data")
            floor = Floor(ks.data / "pki")
            try:
                token = bench_identity(ks)
                if "http" in wanted:
                    endpoints.run(res, ks, floor, token, args.quick)
                if "kubectl" in wanted:
                    kubectl.run(res, ks, args.quick)
            finally:
                ks.stop()
                floor.stop()
    if "scale" in wanted:
        scale.run(res, args.quick)
    if "agent" in wanted:
        agent.run(res, args.quick)
    if "runtime" in wanted:
        runtime.run(res, args.quick)
    if "workloads" in wanted:
        workloads.run(res, args.quick)
    if "crd" in wanted:
        crd.run(res, args.quick)
    if "customresources" in wanted:
        crdload.run(res, args.quick)
    took = time.perf_counter() - started
    print()
    print(f"kubesat bench{' --quick' if args.quick else ''}: {when}; {about}; took {took:.0f} s")
    print(table(res.entries))
    for n in res.notes:
        print(f"note: {n}")
    missed = [e.name for e in res.entries if e.met is False]
    met = sum(1 for e in res.entries if e.met)
    print(f"targets: {met} met, {len(missed)} missed" + (f" ({'; '.join(missed)})" if missed else ""))
    args.out.write_text(json.dumps([e.as_json() for e in res.entries], indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
