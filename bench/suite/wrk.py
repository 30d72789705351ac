"""wrk runs driven by one generated Lua script: fixed or alternating (good/bad) requests, optional think time
per request (to offer a chosen rate), a per-status tally, and a done() that prints the summary and latency
percentiles as one JSON line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from suite.common import cpu_seconds

LUA = r"""
local cfg = %(cfg)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function headers_with(auth)
  local h = {}
  h["Content-Type"] = "application/json"
  h["Accept"] = "application/json"
  if auth and auth ~= "" then h["Authorization"] = "Bearer " .. auth end
  return h
end

function init(args)
  n, good_sent, bad_sent, good_ok, bad_ok, failed = 0, 0, 0, 0, 0, 0
  first_fail = ""
  good_req = wrk.format(cfg.method, cfg.path, headers_with(cfg.token), cfg.body)
  bad_reqs = {}
  for i, b in ipairs(cfg.bad) do
    bad_reqs[i] = wrk.format(cfg.method, cfg.path, headers_with(b.token), b.body)
  end
  filler = wrk.format("GET", "/livez", headers_with(cfg.token), nil)
  math.randomseed(os.time())
end

function request()
  n = n + 1
  if cfg.limit > 0 then
    -- Gate on answers, not on requests made: wrk calls request() again (dropping the last one) while a
    -- connection's TLS handshake is in progress, so a count of calls overstates what was sent.
    if good_ok + failed >= cfg.limit then return filler end
    good_sent = good_sent + 1
    return wrk.format(cfg.method, cfg.path, headers_with(cfg.token), string.format(cfg.body_tpl, n + cfg.offset))
  end
  if cfg.bad_every > 0 and n %% cfg.bad_every == 0 then
    bad_sent = bad_sent + 1
    return bad_reqs[(bad_sent %% #bad_reqs) + 1]
  end
  good_sent = good_sent + 1
  return good_req
end

function response(status, headers, body)
  if cfg.limit > 0 and status == 200 then return end  -- the filler /livez after the last object was sent
  if status == cfg.good_status and (cfg.good_marker == "" or string.find(body, cfg.good_marker, 1, true)) then
    good_ok = good_ok + 1
  elseif cfg.bad_status[tostring(status)] then
    bad_ok = bad_ok + 1
  else
    failed = failed + 1
    if first_fail == "" then
      first_fail = string.gsub(status .. " " .. string.sub(body or "", 1, 300), '[%%c"\\]', " ")
    end
  end
  if cfg.limit > 0 and good_ok + failed >= cfg.limit and not limit_told then
    -- wrk's main thread sleeps for the whole -d; run() sends SIGINT on this line to end it now
    limit_told = true
    io.write("WRKLIMIT\n")
    io.flush()
    wrk.thread:stop()
  end
end

if cfg.delay_ms > 0 then
  function delay()
    local base = math.floor(cfg.delay_ms)
    if math.random() < cfg.delay_ms - base then return base + 1 end
    return base
  end
end

function done(summary, latency, requests)
  local t = {good_sent = 0, bad_sent = 0, good_ok = 0, bad_ok = 0, failed = 0}
  local fail = ""
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
    if fail == "" then fail = th:get("first_fail") end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%%d,"requests":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,' ..
    '"timeout":%%d,"p50":%%d,"p90":%%d,"p99":%%d,"max":%%d,"mean":%%f,' ..
    '"good_sent":%%d,"bad_sent":%%d,"good_ok":%%d,"bad_ok":%%d,"failed":%%d,"first_fail":"%%s"}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    t.good_sent, t.bad_sent, t.good_ok, t.bad_ok, t.failed, fail))
end
"""


def lua_value(v: object) -> str:
    """A Python value as a Lua literal (strings, numbers, bools, lists, dicts with string keys)."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON's escapes (\" \\ \n \t) are Lua's too
    if isinstance(v, list):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{json.dumps(str(k))}] = {lua_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


@dataclass
class Load:
    """What one wrk run sends."""

    method: str = "GET"
    path: str = "/livez"
    token: str = ""
    body: str | None = None
    good_status: int = 200
    good_marker: str = ""
    bad: list[dict[str, str | None]] = field(default_factory=list)  # {"token": ..., "body": ...}
    bad_status: tuple[int, ...] = ()
    bad_every: int = 0  # every n-th request is a bad one (10 -> 10%)
    # Create objects with bodies from body_tpl (%d: a counter from offset+1) until `limit` are answered as good
    # (or failed), then stop; up to connections-1 more may be in flight then, and the server makes those too.
    limit: int = 0
    body_tpl: str = ""
    offset: int = 0

    def script(self, delay_ms: float) -> str:
        cfg = {"method": self.method, "path": self.path, "token": self.token, "body": self.body,
               "good_status": self.good_status, "good_marker": self.good_marker,
               "bad": [{"token": b.get("token") or "", "body": b.get("body")} for b in self.bad],
               "bad_status": {str(s): True for s in self.bad_status}, "bad_every": self.bad_every,
               "limit": self.limit, "body_tpl": self.body_tpl, "offset": self.offset, "delay_ms": delay_ms}
        return LUA % {"cfg": lua_value(cfg)}


@dataclass
class Run:
    rate: float  # completed requests per second (all of them)
    good_rate: float  # good requests answered as expected, per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    raw: dict[str, object]
    server_cpu_us: float  # server CPU (process + helpers) per request
    wrk_cpu: float  # wrk's CPU over the run, in cores (1.0 = one core busy)
    connections: int

    @property
    def failures(self) -> int:
        """Good requests not answered as expected: unexpected answers, more "bad" answers than bad requests sent,
        and good requests unanswered beyond what can be in flight when wrk stops (wrk makes a connection's next
        request before it sends it, so up to two per connection)."""
        r = self.raw
        extra_bad = max(0, int(r["bad_ok"]) - int(r["bad_sent"]))  # type: ignore[call-overload]
        unanswered = max(0, int(r["good_sent"]) - int(r["good_ok"]) - extra_bad  # type: ignore[call-overload]
                         - int(r["failed"]) - 2 * self.connections)  # type: ignore[call-overload]
        errors = sum(int(r[k]) for k in ("connect", "read", "write", "timeout"))  # type: ignore[call-overload]
        return int(r["failed"]) + extra_bad + unanswered + errors  # type: ignore[call-overload]


def _until_limit(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """wrk until its script says its limit is reached (then SIGINT: wrk stops and prints its summary)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("WRKLIMIT"):
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, "".join(lines) + rest, err)


def run(url: str, load: Load, seconds: float, connections: int = 4, delay_ms: float = 0.0,
        server_pid: int | None = None, timeout_s: int = 10) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(load.script(delay_ms))
        script = f.name
    try:
        cpu = cpu_seconds(server_pid) if server_pid else 0.0
        before = os.times()
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s",
                "-s", script, url + load.path]
        out = _until_limit(argv) if load.limit else subprocess.run(argv, capture_output=True, text=True, check=False)
        after = os.times()
        cpu = (cpu_seconds(server_pid) - cpu) if server_pid else 0.0
    finally:
        Path(script).unlink()
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line[len("WRKJSON "):])
    secs = raw["duration_us"] / 1e6
    wrk_cpu = (after.children_user + after.children_system - before.children_user - before.children_system) / secs
    requests = max(1, raw["requests"])
    return Run(rate=raw["requests"] / secs, good_rate=raw["good_ok"] / secs, p50_ms=raw["p50"] / 1000,
               p90_ms=raw["p90"] / 1000, p99_ms=raw["p99"] / 1000, raw=raw, server_cpu_us=cpu / requests * 1e6,
               wrk_cpu=wrk_cpu, connections=connections)


def at_rate(url: str, load: Load, rate: float, seconds: float, server_pid: int | None = None,
            calibrate_s: float = 1.0) -> Run:
    """A closed-loop run that offers about `rate` requests per second: each connection waits a think time
    (wrk's delay(), randomised between whole milliseconds so it averages a fraction) after each answer.
    Enough connections that a cycle is >= 4 ms; one short calibration run measures the service time at
    this load so the think time can be set to cycle - service time."""
    connections = max(2, min(64, int(rate * 0.004) + 1))
    cycle_ms = connections / rate * 1000
    delay = max(0.0, cycle_ms - 0.5)
    probe = run(url, load, calibrate_s, connections, delay, server_pid)
    service_ms = connections / probe.rate * 1000 - delay  # per-request time outside the think time
    delay = max(0.0, cycle_ms - service_ms)
    return run(url, load, seconds, connections, delay, server_pid)
