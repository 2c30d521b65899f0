// Prints the latency of POST /v1/token on a fresh token under local `wrangler dev`: a bounded
// loopback load (wrk, 8 connections, 10 s by default), after one full link through the sandbox.
// Usage: node bench/token.mjs [seconds] [connections]
import { spawnSync } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "../tests/e2e/harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner } from "../tests/e2e/client.mjs";

const seconds = Math.min(Number(process.argv[2] ?? 10), 60);
const connections = Math.min(Number(process.argv[3] ?? 8), 64);

const stack = await startStack();
try {
  const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  const res = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(acme, "bench-user"), body: {} });
  await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "ann@ab123.example" });
  const check = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "bench-user", keap_app: "ab123" } });
  if (check.status !== 200) throw new Error(`token request failed: ${check.text}`);

  const dir = mkdtempSync(join(tmpdir(), "keaplink-bench-"));
  const script = join(dir, "token.lua");
  writeFileSync(script, `
wrk.method = "POST"
wrk.body = '{"user":"bench-user","keap_app":"ab123"}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer ${acme.api_key}"
local non200 = 0
response = function(status) if status ~= 200 then non200 = non200 + 1 end end
done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f requests=%d non_2xx=%d rps=%.1f\\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status, summary.requests / (summary.duration / 1e6)))
end
`);
  const before = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
  const out = spawnSync("wrk", ["-t", String(Math.min(2, connections)), "-c", String(connections), "-d", `${seconds}s`, "-s", script, `${stack.url}/v1/token`], { encoding: "utf8" });
  if (out.status !== 0) throw new Error(`wrk failed: ${out.stderr}`);
  const after = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
  const line = out.stdout.trim().split("\n").at(-1);
  console.log(`POST /v1/token, fresh token, wrangler dev on loopback, ${connections} connections, ${seconds} s`);
  console.log(line);
  console.log(`refresh calls to Keap during the run: ${after - before}`);
} finally {
  await stack.stop();
}
