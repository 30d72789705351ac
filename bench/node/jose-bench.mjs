// Verify and sign rates of the `jose` package on tokens made by bench/run.py.
// stdin: {"seconds": s, "rounds": r, "cases": [{"alg", "token", "spki", "pkcs8", "kid", "issuer", "audience",
//          "claims"}]}; stdout: {"<alg>": {"verify": per_second, "sign": per_second}, "version": ...}
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { jwtVerify, SignJWT, importSPKI, importPKCS8 } from "jose";

const input = JSON.parse(readFileSync(0, "utf8"));
const pkg = JSON.parse(readFileSync(new URL("./node_modules/jose/package.json", import.meta.url), "utf8"));

async function rate(fn, seconds) {
  await fn();
  let n = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  for (;;) {
    for (let i = 0; i < 64; i++) await fn();
    n += 64;
    const now = performance.now();
    if (now >= deadline) return n / ((now - start) / 1000);
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const out = { version: pkg.version, node: process.version };
for (const c of input.cases) {
  const pub = await importSPKI(c.spki, c.alg);
  const priv = await importPKCS8(c.pkcs8, c.alg);
  const verify = () => jwtVerify(c.token, pub, { issuer: c.issuer, audience: c.audience, algorithms: [c.alg] });
  const sign = () => new SignJWT(c.claims).setProtectedHeader({ alg: c.alg, kid: c.kid }).sign(priv);
  await verify();  // throws if jose does not accept the token
  await rate(verify, Math.min(0.2, input.seconds));  // warm up (JIT) before the measured slices
  await rate(sign, Math.min(0.2, input.seconds));
  const v = [], s = [];
  for (let r = 0; r < input.rounds; r++) {
    v.push(await rate(verify, input.seconds / input.rounds));
    s.push(await rate(sign, input.seconds / input.rounds));
  }
  out[c.alg] = { verify: median(v), sign: median(s) };
}
process.stdout.write(JSON.stringify(out) + "\n");
